package hlc

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrAhead is returned for a timestamp further ahead of the local wall clock
// than the allowed offset: observing it would drag this clock (and every
// timestamp it issues after) into the future, and a timestamp near the top
// of the range would win every last-writer-wins comparison forever.
var ErrAhead = errors.New("hlc: timestamp too far ahead of the local clock")

// Clock issues hybrid logical timestamps. It is safe for concurrent use.
type Clock struct {
	now func() time.Time

	mu   sync.Mutex // guards last
	last uint64
}

// New returns a clock reading now; nil means time.Now.
func New(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Now returns a timestamp greater than every one issued or observed before.
func (c *Clock) Now() uint64 {
	wall := uint64(c.now().UnixMilli()) << 16
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall > c.last {
		c.last = wall
	} else {
		c.last++
	}
	return c.last
}

// Check returns an error wrapping ErrAhead when the wall-clock part of ts is
// more than maxOffset ahead of this clock's wall time (the bound on clock
// skew between nodes, as CockroachDB's --max-offset). Timestamps behind it
// are always fine.
func (c *Clock) Check(ts uint64, maxOffset time.Duration) error {
	wallMs := c.now().UnixMilli()
	limit := uint64(max(wallMs+maxOffset.Milliseconds(), 0))
	if physical := ts >> 16; physical > limit {
		return fmt.Errorf("%w: its wall time %d ms is %d ms ahead of this node's, more than the allowed offset %s",
			ErrAhead, physical, int64(physical-uint64(max(wallMs, 0))), maxOffset)
	}
	return nil
}

// ObserveWithin observes ts when Check accepts it, and otherwise leaves the
// clock as it is and returns Check's error. Use it for every timestamp that
// comes from the network.
func (c *Clock) ObserveWithin(ts uint64, maxOffset time.Duration) error {
	if err := c.Check(ts, maxOffset); err != nil {
		return err
	}
	c.Observe(ts)
	return nil
}

// Observe moves the clock past a timestamp received from another node. It
// trusts ts; for a timestamp from the network use ObserveWithin.
func (c *Clock) Observe(ts uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts > c.last {
		c.last = ts
	}
}

// Time returns the wall-clock part of a timestamp.
func Time(ts uint64) time.Time {
	return time.UnixMilli(int64(ts >> 16))
}
