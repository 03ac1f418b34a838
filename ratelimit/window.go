package ratelimit

import (
	"math"
	"time"
)

// counts is a sliding-window counter: the count of the current fixed window
// (id) and of the one before. Windows are aligned to the Unix epoch, so that
// every node names a window the same way (up to clock skew).
type counts struct {
	id         int64 // current window: unix nanoseconds / window
	curr, prev int64
}

// windowAt returns the id of the window holding t and how far into it t is.
func windowAt(t time.Time, w time.Duration) (id int64, elapsed time.Duration) {
	ns := t.UnixNano()
	id = ns / int64(w)
	return id, time.Duration(ns - id*int64(w))
}

// roll moves the counter to window id. A clock that steps back leaves the
// counter where it is (the later window stays current).
func (c *counts) roll(id int64) {
	switch {
	case id <= c.id:
		return
	case id == c.id+1:
		c.prev, c.curr = c.curr, 0
	default:
		c.prev, c.curr = 0, 0
	}
	c.id = id
}

// add adds n to window id when it is the current or the previous one; a
// later id counts in the current window (a peer whose clock is ahead), an
// older one is dropped (it no longer weighs on any estimate).
func (c *counts) add(id, n int64) {
	switch {
	case id >= c.id:
		c.curr = max(c.curr+n, 0)
	case id == c.id-1:
		c.prev = max(c.prev+n, 0)
	}
}

// report returns the counts as (window, count) pairs, for a new owner.
func (c *counts) report() []WindowCount {
	var out []WindowCount
	if c.prev > 0 {
		out = append(out, WindowCount{Window: c.id - 1, Count: c.prev})
	}
	if c.curr > 0 {
		out = append(out, WindowCount{Window: c.id, Count: c.curr})
	}
	return out
}

// estimate is the sliding-window estimate of the units taken in the last
// window length: prev × (1 − elapsed/window) + curr.
func estimate(prev, curr int64, elapsed, w time.Duration) float64 {
	return float64(prev)*(float64(w-elapsed)/float64(w)) + float64(curr)
}

// fits reports whether cost more units keep the estimate within limit.
func fits(est float64, cost, limit int64) bool {
	return est+float64(cost) <= float64(limit)
}

// room is the whole number of units that still fit under limit.
func room(est float64, limit int64) int64 {
	r := math.Floor(float64(limit) - est)
	if r < 0 {
		return 0
	}
	return int64(r)
}

// retryAfter is how long until cost units fit under limit when nothing else
// is taken meanwhile: the previous window's weight falls linearly through
// the current window, and at its end the current count becomes the
// previous one. cost <= limit.
func retryAfter(prev, curr int64, elapsed, w time.Duration, cost, limit int64) time.Duration {
	fw := float64(w)
	if spare := float64(limit - cost - curr); spare >= 0 {
		// prev × (w − e)/w <= spare  ⇔  e >= w − spare × w / prev
		if prev == 0 {
			return 0
		}
		need := fw - spare*fw/float64(prev)
		return ceilDuration(need - float64(elapsed))
	}
	// Not in this window: in the next one the estimate is
	// curr × (w − e')/w, which must fall to limit − cost.
	need := fw - float64(limit-cost)*fw/float64(curr)
	return ceilDuration(float64(w-elapsed) + need)
}

func ceilDuration(ns float64) time.Duration {
	if ns <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(ns))
}
