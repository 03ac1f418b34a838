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
// sample.
func (r *Recorder) takeSample() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sample.snapshotLocked()
	r.sample.resetLocked()
	return s
}

// startTimeline records a Sample per every until the returned function is
// called; that function takes the last, partial sample (unless it is short
// and empty) and returns the timeline. rec must not be in use yet.
func startTimeline(rec *Recorder, every time.Duration, start, measureFrom time.Time) (stop func() []Sample) {
	if every <= 0 {
		return func() []Sample { return nil }
	}
	rec.sampling = true
	var samples []Sample // owned by the goroutine until stopped is closed
	last := start
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
				snap, now := rec.takeSample(), time.Now()
				samples = append(samples, Sample{From: last.Sub(start), To: now.Sub(start),
					Warmup: last.Before(measureFrom), Snapshot: snap})
				last = now
			}
		}
	}()
	return func() []Sample {
		close(done)
		<-stopped
		now := time.Now()
		if tail := rec.takeSample(); tail.Requests > 0 || now.Sub(last) >= every/2 {
			samples = append(samples, Sample{From: last.Sub(start), To: now.Sub(start),
				Warmup: last.Before(measureFrom), Snapshot: tail})
		}
		return samples
	}
}
