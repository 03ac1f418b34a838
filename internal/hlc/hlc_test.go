package hlc

import (
	"errors"
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

func TestObserveWithinRefusesTimestampsTooFarAhead(t *testing.T) {
	wall := time.UnixMilli(1_000_000)
	const offset = 500 * time.Millisecond
	at := func(ms int64, logical uint64) uint64 { return uint64(ms)<<16 | logical }
	tests := []struct {
		name    string
		ts      uint64
		wantErr bool
	}{
		{"behind", at(999_000, 7), false},
		{"now", at(1_000_000, 0), false},
		{"at the offset, any logical part", at(1_000_500, 0xffff), false},
		{"one ms past the offset", at(1_000_501, 0), true},
		{"max uint64", ^uint64(0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(func() time.Time { return wall })
			before := c.Now()
			err := c.ObserveWithin(tt.ts, offset)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ObserveWithin(%d) = %v, want error %v", tt.ts, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrAhead) {
				t.Fatalf("ObserveWithin(%d) = %v, want it to wrap ErrAhead", tt.ts, err)
			}
			next := c.Now()
			if tt.wantErr && next != before+1 {
				t.Fatalf("a refused timestamp moved the clock: %d after %d", next, before)
			}
			if !tt.wantErr && next <= max(tt.ts, before) {
				t.Fatalf("an accepted timestamp %d was not observed: next %d", tt.ts, next)
			}
		})
	}
}
