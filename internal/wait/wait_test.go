package wait

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	took, err := Poll(context.Background(), time.Second, time.Millisecond, func() (bool, string) {
		n++
		return n == 3, fmt.Sprint(n)
	})
	if err != nil || n != 3 || took >= time.Second {
		t.Fatalf("Poll = %v, %v after %d calls; want success at the third", took, err, n)
	}

	_, err = Poll(context.Background(), 20*time.Millisecond, time.Millisecond, func() (bool, string) { return false, "still 7" })
	if !errors.Is(err, ErrTimeout) || err.Error() != "wait: condition not met in time (20ms): last seen: still 7" {
		t.Fatalf("Poll past its deadline: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Poll(ctx, time.Hour, time.Hour, func() (bool, string) { return false, "x" })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Poll with a cancelled context: %v", err)
	}
}

// recorder is a testing.TB that records Fatalf instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestUntilFailsNamingTheCondition(t *testing.T) {
	r := &recorder{TB: t}
	Until(r, 10*time.Millisecond, "node n2 caught up", func() bool { return false })
	if !strings.HasPrefix(r.failed, "node n2 caught up: ") || !strings.Contains(r.failed, ErrTimeout.Error()) {
		t.Fatalf("failure message %q does not name the condition and the timeout", r.failed)
	}
	r = &recorder{TB: t}
	Until(r, time.Second, "always", func() bool { return true })
	if r.failed != "" {
		t.Fatalf("a condition that holds failed the test: %q", r.failed)
	}
}
