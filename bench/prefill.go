package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/countmesh/countmesh/client"
)

// PrefillConfig configures Prefill.
type PrefillConfig struct {
	// NS is the namespace written.
	NS string
	// Keys is how many distinct counters to write: k00000000 to k<Keys-1>,
	// each incremented by 1 once.
	Keys uint64
	// BatchSize is the ops per batch (at most client.MaxBatchOps).
	BatchSize int
	// Workers send batches concurrently.
	Workers int
	// Encoding of the batch bodies.
	Encoding client.Encoding
	// Consistency of the writes; empty is the server's default.
	Consistency client.Consistency
	// Retries is how many times a batch refused with 429 or 503, or lost
	// in transport, is sent again (with growing back-off) before Prefill
	// gives up.
	Retries int
	// Progress receives a line per second; nil for none.
	Progress io.Writer
	// Written, when set, is called after each batch is written with the
	// number of keys it wrote, from the workers (concurrently): for a
	// progress bar.
	Written func(keys int)
}

// DefaultPrefillConfig writes one million keys in batches of 10,000 with
// 4 workers in msgpack.
func DefaultPrefillConfig() PrefillConfig {
	return PrefillConfig{NS: "bench", Keys: 1_000_000, BatchSize: client.MaxBatchOps, Workers: 4,
		Encoding: client.EncodingMsgpack, Retries: 5}
}

func (c PrefillConfig) validate() error {
	switch {
	case c.NS == "":
		return errors.New("bench: prefill namespace is empty")
	case c.BatchSize <= 0 || c.BatchSize > client.MaxBatchOps:
		return fmt.Errorf("bench: prefill batch size %d; want 1 to %d", c.BatchSize, client.MaxBatchOps)
	case c.Workers <= 0:
		return fmt.Errorf("bench: prefill with %d workers; want at least 1", c.Workers)
	case c.Retries < 0:
		return fmt.Errorf("bench: prefill retries %d is negative", c.Retries)
	}
	return nil
}

// Prefill writes cfg.Keys distinct counters once, by batches, and returns
// when all are written, when a batch fails for good, or when ctx is done
// (with the error and what was written so far).
func Prefill(ctx context.Context, c *client.Client, cfg PrefillConfig) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	rec := NewRecorder()
	start := time.Now()
	stopProgress := startProgress(RunConfig{Progress: cfg.Progress, Label: "prefill "}, rec, start, start)
	defer stopProgress()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bs := uint64(cfg.BatchSize)
	chunks := (cfg.Keys + bs - 1) / bs
	var next atomic.Uint64
	var (
		errMu    sync.Mutex // guards firstErr
		firstErr error
	)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := make([]client.Op, 0, cfg.BatchSize)
			for ctx.Err() == nil {
				chunk := next.Add(1) - 1
				if chunk >= chunks {
					return
				}
				lo, hi := chunk*bs, min((chunk+1)*bs, cfg.Keys)
				ops = ops[:0]
				for k := lo; k < hi; k++ {
					ops = append(ops, client.Op{NS: cfg.NS, Key: KeyName(k), By: 1})
				}
				err := sendWithRetry(ctx, c, rec, ops, cfg)
				if err == nil && cfg.Written != nil {
					cfg.Written(len(ops))
				}
				if err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("bench: prefill of keys %d to %d: %w", lo, hi-1, err)
					}
					errMu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	res := Result{Snapshot: rec.Total(), Duration: time.Since(start), Recorder: rec}
	if firstErr != nil {
		return res, firstErr
	}
	if err := ctx.Err(); err != nil && uint64(res.Ops) < cfg.Keys {
		return res, fmt.Errorf("bench: prefill stopped after %d of %d keys: %w", res.Ops, cfg.Keys, err)
	}
	return res, nil
}

// sendWithRetry sends one batch, retrying what a loaded server may refuse.
func sendWithRetry(ctx context.Context, c *client.Client, rec *Recorder, ops []client.Op, cfg PrefillConfig) error {
	body, ct, err := client.EncodeBatch(ops, cfg.Consistency, cfg.Encoding)
	if err != nil {
		return err
	}
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		err := c.Send(ctx, http.MethodPost, "/v1/batch", body, ct)
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		rec.Record(time.Since(t0), int64(len(ops)), err, true)
		if err == nil {
			return nil
		}
		status := client.StatusCode(err)
		retryable := status == 0 || status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
		if !retryable || attempt >= cfg.Retries {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
