package node

import (
	"context"
	"fmt"
	"time"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/series"
	"github.com/countmesh/countmesh/store"
)

// Counter TTL. A counter of a namespace with a ttl that nobody has changed
// for that long reads 0 at once (idle), and the expiry pass deletes it: a
// delete is an observed reset with the deleted flag, a CRDT operation like
// any other, so it replicates and merges. A peer's increment concurrent with
// the expiry (one that had not seen it) survives it and counts from 0, and a
// peer's stale copy of the old value cannot bring it back: merge keeps the
// reset's floor over the slots it observed.

// idle reports whether a counter last changed at updatedMs has outlived
// ttl.
func (n *Node) idle(ttl time.Duration, updatedMs int64) bool {
	return ttl > 0 && updatedMs > 0 && n.cfg.Now().UnixMilli()-updatedMs >= ttl.Milliseconds()
}

// nsDuration is a namespace with one of its durations.
type nsDuration struct {
	ns string
	d  time.Duration
}

// maxExpirePerPass bounds the deletes of one expiry pass per namespace; the
// next pass takes the rest.
const maxExpirePerPass = 100_000

// expireIdle deletes the idle counters (user counters and label series) of
// every namespace with a ttl. It scans those namespaces; time buckets are
// left to retention.
func (n *Node) expireIdle(ctx context.Context) error {
	jobs := n.ns.with(func(rt *nsRuntime) time.Duration { return rt.ttl })
	if len(jobs) == 0 {
		return nil
	}
	if err := n.checkWritable(0); err != nil {
		return err
	}
	if err := n.Checkpoint(); err != nil {
		return err
	}
	for _, j := range jobs {
		edge := n.cfg.Now().UnixMilli() - j.d.Milliseconds()
		var idle []string
		collect := func(key string, r store.Record) bool {
			if r.UpdatedMs > 0 && r.UpdatedMs <= edge && r.Counter.Live() {
				idle = append(idle, key)
			}
			return len(idle) < maxExpirePerPass && ctx.Err() == nil
		}
		err := n.store.ScanRecords(j.ns, string([]byte{keyspace.KindSeries}), "", collect)
		if err == nil {
			err = n.store.ScanRecords(j.ns, "", keyspace.FirstUserKey, collect)
		}
		if err != nil {
			return kinderr.New(ErrUnavailable, err, "scan for idle counters: %v", err)
		}
		for _, key := range idle {
			// The hot set may hold a later change than the scan saw.
			var before int64
			err := n.modify(j.ns, key, false, func(e *keyspace.Entry) error {
				if e.Updated > edge || !e.C.Live() {
					return errNotIdle
				}
				before = e.C.Value()
				e.C.SetReset(n.id, 0, true)
				return nil
			})
			if err != nil && err != errNotIdle {
				return err
			}
			if err == nil {
				n.windows.RecordJump(j.ns, key, series.JumpOf(before, 0))
			}
		}
		if len(idle) > 0 {
			n.metrics.expired.Add(float64(len(idle)))
		}
	}
	return nil
}

// errNotIdle stops the expiry of a counter that changed since the scan.
var errNotIdle = fmt.Errorf("counter changed since the scan")
