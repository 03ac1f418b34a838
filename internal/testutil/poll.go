package testutil

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Interval is how often Eventually and EventuallyState evaluate their
// condition.
const Interval = 10 * time.Millisecond

// ErrTimeout is what Poll returns when the condition did not hold in time.
var ErrTimeout = errors.New("testutil: condition not met in time")

// Poll evaluates cond every interval until it holds, ctx ends or timeout
// passes, and returns how long that took. The error wraps ErrTimeout (or
// ctx's error) and ends with the state cond last described.
func Poll(ctx context.Context, timeout, interval time.Duration, cond func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("%w (%v): %s", ErrTimeout, timeout, state)
		}
		t.Reset(interval)
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%w: %s", ctx.Err(), state)
		case <-t.C:
		}
	}
}

// Eventually fails t unless cond holds within timeout, evaluating it every
// Interval; it returns how long cond took to hold. msgAndArgs, when given,
// is a format and its arguments naming what was awaited.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) time.Duration {
	t.Helper()
	return EventuallyState(t, timeout, func() (bool, string) { return cond(), "" }, msgAndArgs...)
}

// EventuallyState is Eventually for a condition that also describes the
// state it saw, which the failure message quotes.
func EventuallyState(t testing.TB, timeout time.Duration, cond func() (bool, string), msgAndArgs ...any) time.Duration {
	t.Helper()
	took, err := Poll(context.Background(), timeout, Interval, cond)
	if err != nil {
		t.Fatalf("%s: %v", what(msgAndArgs), err)
	}
	return took
}

func what(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return "waiting"
	}
	if format, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(format, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}
