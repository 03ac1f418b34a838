package testwait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestForWaitsUntilTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	For(t, 5*time.Second, "the third poll", func() bool { return calls.Add(1) >= 3 })
	if got := calls.Load(); got != 3 {
		t.Fatalf("cond was called %d times, want 3 (until it held, not after)", got)
	}
}
