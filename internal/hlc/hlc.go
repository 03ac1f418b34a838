// Package hlc is a hybrid logical clock: timestamps that follow the wall
// clock in milliseconds but never go backwards and order causally related
// events even when clocks are skewed. A timestamp is the wall time in
// milliseconds shifted left 16 bits, plus a 16-bit logical counter.
package hlc

import (
	"sync"
	"time"
)

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

// Observe moves the clock past a timestamp received from another node.
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
