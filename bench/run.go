package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// Op sends one request and returns how many operations (increments, reads)
// it carried. It must honour ctx.
type Op func(ctx context.Context) (ops int64, err error)

// RunConfig configures Run.
type RunConfig struct {
	// Rate is the open-loop arrival rate in requests per second. Zero runs a
	// closed loop instead.
	Rate float64
	// Workers is the number of closed-loop workers, or in an open loop the
	// most requests in flight at once (a request scheduled while all are
	// busy waits, and its wait counts in its latency).
	Workers int
	// Warmup runs before the measurement and is not recorded.
	Warmup time.Duration
	// Duration is the measured time.
	Duration time.Duration
	// Grace is how long an open loop lets requests still in flight or
	// queued at the end finish before giving up on them. Closed loops cut
	// in-flight requests at the end.
	Grace time.Duration
	// Progress receives a line per ProgressEvery (default 1s); nil for none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Label starts each progress line.
	Label string
	// SampleEvery, when more than 0, makes Run record a timeline in
	// Result.Timeline: one Sample per SampleEvery, warm-up included.
	SampleEvery time.Duration
}

// DefaultRunConfig is a 10 s closed loop of 4 workers after 1 s of warm-up.
func DefaultRunConfig() RunConfig {
	return RunConfig{Workers: 4, Warmup: time.Second, Duration: 10 * time.Second, Grace: 5 * time.Second,
		ProgressEvery: time.Second}
}

func (c RunConfig) validate() error {
	switch {
	case c.Rate < 0:
		return fmt.Errorf("bench: rate %v is negative", c.Rate)
	case c.Workers <= 0:
		return fmt.Errorf("bench: %d workers; want at least 1", c.Workers)
	case c.Duration <= 0:
		return fmt.Errorf("bench: duration %v; want more than 0", c.Duration)
	case c.Warmup < 0 || c.Grace < 0:
		return errors.New("bench: warm-up and grace must not be negative")
	}
	return nil
}

// Result is the outcome of Run.
type Result struct {
	Snapshot
	// Duration is the measured time.
	Duration time.Duration
	// Recorder holds every measured latency.
	Recorder *Recorder
	// Timeline holds one Sample per RunConfig.SampleEvery, in order;
	// nil when SampleEvery is 0.
	Timeline []Sample
}

// Run drives newOp's Ops for cfg.Warmup plus cfg.Duration and returns the
// measured counts. newOp is called once per worker, so that each worker owns
// its state (key generator, buffers) without locks. Run returns early, with
// what was measured, when ctx is done.
func Run(ctx context.Context, cfg RunConfig, newOp func(worker int) Op) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	rec := NewRecorder()
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)

	stopTimeline := startTimeline(rec, cfg.SampleEvery, start, measureFrom)
	stopProgress := startProgress(cfg, rec, start, measureFrom)
	defer stopProgress()

	if cfg.Rate > 0 {
		openLoop(ctx, cfg, rec, newOp, start, measureFrom, end)
	} else {
		closedLoop(ctx, cfg, rec, newOp, measureFrom, end)
	}
	// The measured window is the whole Duration unless the caller cut the
	// run short.
	measured := cfg.Duration
	if ctx.Err() != nil {
		measured = min(max(time.Since(measureFrom), 0), cfg.Duration)
	}
	timeline := stopTimeline()
	return Result{Snapshot: rec.Total(), Duration: measured, Recorder: rec, Timeline: timeline}, nil
}

// closedLoop runs cfg.Workers workers, each sending its next request when
// the previous one answered, until end. Latency is from send to answer;
// requests are counted by the time they complete.
func closedLoop(ctx context.Context, cfg RunConfig, rec *Recorder, newOp func(int) Op, measureFrom, end time.Time) {
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	wait := goWorkers(cfg.Workers, newOp, func(op Op) {
		for ctx.Err() == nil {
			t0 := time.Now()
			ops, err := op(ctx)
			t1 := time.Now()
			if err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)) {
				return // cut by the end of the run, not a server error
			}
			rec.Record(t1.Sub(t0), ops, err, !t1.Before(measureFrom))
		}
	})
	wait()
}

// goWorkers starts n workers, worker w running work with newOp(w), and
// returns a function that waits for all of them to return.
func goWorkers(n int, newOp func(int) Op, work func(Op)) (wait func()) {
	var wg sync.WaitGroup
	for w := range n {
		op := newOp(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(op)
		}()
	}
	return wg.Wait
}

// openLoop schedules request i at start + i/Rate whatever the answers, and
// measures each latency from that scheduled time, so that time a request
// spends waiting for a stalled server or a free worker is counted.
//
// One correction: Go timers on Linux wake up to about 1ms late, which would
// add up to 1ms of the generator's own lateness to every request. A request
// that fell due while the dispatcher overslept in its timer is therefore
// measured from the wake-up instead. Lateness that builds up while the
// dispatcher is blocked because every worker is busy and the queue is full
// (the server's doing) is never excused.
func openLoop(ctx context.Context, cfg RunConfig, rec *Recorder, newOp func(int) Op, start, measureFrom, end time.Time) {
	// Requests still running at end+Grace are abandoned.
	hardCtx, cancel := context.WithDeadline(ctx, end.Add(cfg.Grace))
	defer cancel()

	type scheduled struct {
		intended time.Time // the scheduled send time
		origin   time.Time // latency is measured from here: intended, or the dispatcher's late wake-up
	}
	queue := make(chan scheduled, 1<<16)
	wait := goWorkers(cfg.Workers, newOp, func(op Op) {
		for req := range queue {
			measured := !req.intended.Before(measureFrom)
			if hardCtx.Err() != nil {
				rec.RecordUnsent(measured)
				continue
			}
			ops, err := op(hardCtx)
			rec.Record(time.Since(req.origin), ops, err, measured)
		}
	})

	interval := float64(time.Second) / cfg.Rate
	total := int64(math.Ceil(float64(end.Sub(start)) / interval))
	at := func(i int64) time.Time { return start.Add(time.Duration(float64(i) * interval)) }
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// woke is the dispatcher's last wake-up from its timer; requests due
	// before it were held back only by the timer's lateness. Zero after the
	// dispatcher blocked on a full queue.
	var woke time.Time
	i := int64(0)
	for ; i < total; i++ {
		req := scheduled{intended: at(i)}
		if d := time.Until(req.intended); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-hardCtx.Done():
			}
			woke = time.Now()
		}
		if hardCtx.Err() != nil {
			break
		}
		req.origin = req.intended
		if req.origin.Before(woke) {
			req.origin = woke
		}
		select {
		case queue <- req:
			continue
		default:
		}
		woke = time.Time{} // from here on, lateness is the server's
		select {
		case queue <- req:
			continue
		case <-hardCtx.Done():
		}
		break
	}
	// What the schedule still held when the run was cut is unsent (unless
	// the caller cancelled the whole run).
	for ; i < total && ctx.Err() == nil; i++ {
		rec.RecordUnsent(!at(i).Before(measureFrom))
	}
	close(queue)
	wait()
}

// startProgress prints one line per cfg.ProgressEvery until the returned
// function is called.
func startProgress(cfg RunConfig, rec *Recorder, start, measureFrom time.Time) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		last := start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				s := rec.Interval()
				secs := now.Sub(last).Seconds()
				phase := "run"
				if last.Before(measureFrom) {
					phase = "warmup"
				}
				last = now
				fmt.Fprintf(cfg.Progress, "%s[%6.1fs %s] ops/s=%.0f req/s=%.0f p50=%.3fms p99=%.3fms max=%.3fms errors=%d\n",
					cfg.Label, now.Sub(start).Seconds(), phase, float64(s.Ops)/secs, float64(s.Requests)/secs,
					s.Latency.P50, s.Latency.P99, s.Latency.Max, s.ErrorCount())
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
