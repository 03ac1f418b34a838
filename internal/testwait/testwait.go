package testwait

import (
	"testing"
	"time"
)

// For polls cond every 100 µs until it holds, and fails the test when it
// has not within timeout. It returns how long the wait took.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return time.Since(start)
}
