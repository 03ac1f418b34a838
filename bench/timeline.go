package bench

import "time"

// Sample is what a run did in one interval of its timeline (see
// RunConfig.SampleEvery). Requests are counted in the interval in which they
// completed (or, for unsent ones, were given up).
type Sample struct {
	// From and To bound the interval, as offsets from the start of the run
	// (warm-up included).
	From, To time.Duration
	// Warmup says that the interval began before the measured time.
	Warmup bool
	Snapshot
}

// OpsPerS is the rate of operations of successful requests in the interval.
func (s Sample) OpsPerS() float64 { return s.rate(s.Ops) }

// ErrorsPerS is the rate of failed requests in the interval.
func (s Sample) ErrorsPerS() float64 { return s.rate(s.ErrorCount()) }

func (s Sample) rate(n int64) float64 {
	secs := (s.To - s.From).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

// takeSample returns the counts since the previous call and starts a new
// sample; the caller owns the returned stats.
func (r *Recorder) takeSample() stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sample
	r.sample = newStats()
	return s
}

// merge adds o's counts to s; s is not shared.
func (s *stats) merge(o stats) {
	_ = s.hist.Merge(o.hist) // same range and precision: nothing is dropped
	s.ops += o.ops
	s.requests += o.requests
	for k, v := range o.errors {
		s.errors[k] += v
	}
}

// startTimeline records a Sample per every until the returned function is
// called; that function takes the last, partial sample and returns the
// timeline. A partial sample shorter than every/2 is folded into the one
// before (or dropped if it counted nothing and is the only one), as a rate
// over a few milliseconds of late answers would mean little. rec must not be
// in use yet.
func startTimeline(rec *Recorder, every time.Duration, start, measureFrom time.Time) (stop func() []Sample) {
	if every <= 0 {
		return func() []Sample { return nil }
	}
	rec.sampling = true
	// Owned by the goroutine until stopped is closed: the samples so far,
	// the counts of the last one, and when it ended.
	var samples []Sample
	var lastStats stats
	last := start
	add := func(st stats, now time.Time) {
		samples = append(samples, Sample{From: last.Sub(start), To: now.Sub(start),
			Warmup: last.Before(measureFrom), Snapshot: st.snapshotLocked()})
		lastStats, last = st, now
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// The time of the cut, not of the tick: a busy scheduler may
				// run this late.
				st := rec.takeSample()
				add(st, time.Now())
			}
		}
	}()
	return func() []Sample {
		close(done)
		<-stopped
		tail, now := rec.takeSample(), time.Now()
		switch {
		case now.Sub(last) >= every/2:
			add(tail, now)
		case len(samples) > 0:
			lastStats.merge(tail)
			s := &samples[len(samples)-1]
			s.To, s.Snapshot = now.Sub(start), lastStats.snapshotLocked()
		case tail.requests > 0:
			add(tail, now)
		}
		return samples
	}
}
