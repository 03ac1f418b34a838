package testutil

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	took, err := Poll(context.Background(), 5*time.Second, time.Millisecond, func() (bool, string) {
		return n.Add(1) == 3, "not yet"
	})
	if err != nil || n.Load() != 3 || took >= 5*time.Second {
		t.Fatalf("Poll = %v, %v after %d calls; want nil after 3", took, err, n.Load())
	}
}

func TestPollTimesOutWithTheLastState(t *testing.T) {
	_, err := Poll(context.Background(), 20*time.Millisecond, time.Millisecond, func() (bool, string) { return false, "value 7" })
	if !errors.Is(err, ErrTimeout) || !strings.HasSuffix(err.Error(), "value 7") {
		t.Fatalf("Poll = %v, want ErrTimeout ending with the last state", err)
	}
}

func TestPollStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Poll(ctx, time.Minute, time.Millisecond, func() (bool, string) { return false, "" })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Poll = %v, want context.Canceled", err)
	}
}

// recorder is a testing.TB that records Fatalf instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = strings.TrimSpace(strings.ReplaceAll(format, "%s: %v", "")) + "|" + args[0].(string)
}

func TestEventuallyFailsNamingTheCondition(t *testing.T) {
	r := &recorder{TB: t}
	Eventually(r, 10*time.Millisecond, func() bool { return false }, "node %s caught up", "n2")
	if !strings.Contains(r.failed, "node n2 caught up") {
		t.Fatalf("failure message %q does not name the condition", r.failed)
	}
	r = &recorder{TB: t}
	Eventually(r, time.Second, func() bool { return true })
	if r.failed != "" {
		t.Fatalf("a condition that holds failed the test: %q", r.failed)
	}
}
