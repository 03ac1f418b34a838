package bench

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/countmesh/countmesh/client"
)

// Latencies are recorded in microseconds, from 1µs to one hour, with three
// significant digits.
const (
	histMinUS = 1
	histMaxUS = int64(time.Hour / time.Microsecond)
	histSig   = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinUS, histMaxUS, histSig)
}

// Recorder collects the outcome of requests. It is safe for concurrent use.
type Recorder struct {
	mu sync.Mutex // guards the fields below
	// total holds the measured requests, interval every request since the
	// last Interval call (warm-up included), sample every request since the
	// last takeSample call when sampling is set.
	total    stats
	interval stats
	sample   stats
	sampling bool
}

// stats is one set of counts; guarded by Recorder.mu.
type stats struct {
	hist     *hdrhistogram.Histogram // latency of successful requests, µs
	ops      int64                   // operations carried by successful requests
	requests int64                   // requests answered or failed
	errors   map[string]int64        // failed requests by ErrorCode
}

func newStats() stats {
	return stats{hist: newHistogram(), errors: map[string]int64{}}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{total: newStats(), interval: newStats(), sample: newStats()}
}

// Record counts one request that took latency and carried ops operations
// (counted only when err is nil). measured says whether it belongs to the
// measured run (false during warm-up).
func (r *Recorder) Record(latency time.Duration, ops int64, err error, measured bool) {
	us := latency.Microseconds()
	if us < histMinUS {
		us = histMinUS
	}
	if us > histMaxUS {
		us = histMaxUS
	}
	code := ""
	if err != nil {
		code = ErrorCode(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interval.addLocked(us, ops, code)
	if r.sampling {
		r.sample.addLocked(us, ops, code)
	}
	if measured {
		r.total.addLocked(us, ops, code)
	}
}

// RecordUnsent counts a scheduled request that was never sent because the
// run ended first.
func (r *Recorder) RecordUnsent(measured bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interval.addLocked(0, 0, "unsent")
	if r.sampling {
		r.sample.addLocked(0, 0, "unsent")
	}
	if measured {
		r.total.addLocked(0, 0, "unsent")
	}
}

// addLocked counts one request; code "" is a success. Recorder.mu is held.
func (s *stats) addLocked(us, ops int64, code string) {
	s.requests++
	if code != "" {
		s.errors[code]++
		return
	}
	s.ops += ops
	_ = s.hist.RecordValue(us) // us is clamped into the histogram's range
}

// Snapshot is a copy of a Recorder's counts.
type Snapshot struct {
	Ops      int64
	Requests int64
	Errors   map[string]int64
	Latency  Latency
}

// ErrorCount is the number of failed requests.
func (s Snapshot) ErrorCount() int64 {
	var n int64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// Latency holds latency percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func (s *stats) snapshotLocked() Snapshot {
	errs := make(map[string]int64, len(s.errors))
	for k, v := range s.errors {
		errs[k] = v
	}
	return Snapshot{Ops: s.ops, Requests: s.requests, Errors: errs, Latency: latencyOf(s.hist)}
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return math.Round(float64(us)) / 1000 }
	return Latency{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: math.Round(h.Mean()) / 1000,
	}
}

// Total returns the counts of the measured run so far.
func (r *Recorder) Total() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total.snapshotLocked()
}

// Interval returns the counts since the previous Interval call (warm-up
// included) and starts a new interval.
func (r *Recorder) Interval() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.interval.snapshotLocked()
	r.interval.resetLocked()
	return s
}

// resetLocked empties s. Recorder.mu is held.
func (s *stats) resetLocked() {
	s.hist.Reset()
	s.ops, s.requests = 0, 0
	clear(s.errors)
}

// CountAtOrAbove returns how many measured successful requests took at least
// d.
func (r *Recorder) CountAtOrAbove(d time.Duration) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, b := range r.total.hist.Distribution() {
		if b.From >= d.Microseconds() {
			n += b.Count
		}
	}
	return n
}

// ErrorCode classifies a failed request: the HTTP status ("429"), or
// "timeout", "canceled" or "transport" when no answer came.
func ErrorCode(err error) string {
	if s := client.StatusCode(err); s != 0 {
		return strconv.Itoa(s)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "transport"
}
