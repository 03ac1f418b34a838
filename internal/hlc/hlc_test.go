package hlc

import (
	"testing"
	"time"
)

func TestClockMonotonicUnderStoppedAndBackwardsTime(t *testing.T) {
	wall := time.UnixMilli(1_000_000)
	c := New(func() time.Time { return wall })
	a := c.Now()
	b := c.Now() // same wall time: logical part grows
	if b <= a {
		t.Fatalf("second timestamp %d not after first %d", b, a)
	}
	wall = wall.Add(-time.Hour) // clock stepped back
	if d := c.Now(); d <= b {
		t.Fatalf("timestamp %d after a backwards step is not after %d", d, b)
	}
	c.Observe(b + 1000)
	if e := c.Now(); e <= b+1000 {
		t.Fatalf("timestamp %d does not follow an observed %d", e, b+1000)
	}
	if got := Time(a); !got.Equal(time.UnixMilli(1_000_000)) {
		t.Fatalf("Time(%d) = %v", a, got)
	}
}
