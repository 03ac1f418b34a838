package wait

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// ErrTimeout is wrapped by Poll's error when the deadline passed.
var ErrTimeout = errors.New("wait: condition not met in time")

// Poll evaluates cond every interval until it holds, ctx ends or d passes,
// and returns how long it took. On failure the error holds the last state
// cond described.
func Poll(ctx context.Context, d, interval time.Duration, cond func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(d)
	for {
		ok, state := cond()
		if ok {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("%w (%v): last seen: %s", ErrTimeout, d, state)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("wait: %w; last seen: %s", ctx.Err(), state)
		case <-time.After(interval):
		}
	}
}

// For polls cond every 10 ms until it holds and fails the test, naming
// what, after d. It returns how long it took.
func For(t testing.TB, d time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	took, err := Poll(context.Background(), d, 10*time.Millisecond, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return took
}

// Until is For for a condition that has no state to describe.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return For(t, d, what, func() (bool, string) { return cond(), "" })
}
