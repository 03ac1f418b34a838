package series

import (
	"context"
	"fmt"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// Counter TTL. A counter of a namespace with a ttl that nobody has changed
// for that long reads 0 at once (idle), and the expiry pass deletes it: a
// delete is an observed reset with the deleted flag, a CRDT operation like
// any other, so it replicates and merges. A peer's increment concurrent with
// the expiry (one that had not seen it) survives it and counts from 0, and a
// peer's stale copy of the old value cannot bring it back: merge keeps the
// reset's floor over the slots it observed.

// Idle reports whether a counter last changed at updatedMs has outlived
// ttl at now.
func Idle(now time.Time, ttl time.Duration, updatedMs int64) bool {
	return ttl > 0 && updatedMs > 0 && now.UnixMilli()-updatedMs >= ttl.Milliseconds()
}

// TTLConfig holds what the expiry of idle counters needs from the node.
type TTLConfig struct {
	ID    crdt.NodeID // this node's slot, which the deletes are made in
	Store *store.Store
	Now   func() time.Time
	// Prepare checks that the node is writable and checkpoints, so that
	// the store's scan sees every counter.
	Prepare func() error
	// Modify applies fn to the existing counter ns/key under its stripe
	// lock as a change of this node's own slot (fn is not called for a
	// counter that does not exist); an error from fn changes nothing.
	Modify func(ns, key string, fn func(e *keyspace.Entry) error) error
	// Jump records a reset's jump for reads as of a time before it
	// (Windows.RecordJump).
	Jump func(ns, key string, delta int64)
	// OnExpired counts the counters deleted.
	OnExpired func(n int)
}

// TTL deletes the counters idle past their namespace's ttl.
type TTL struct{ cfg TTLConfig }

// NewTTL returns the expiry of idle counters of a node.
func NewTTL(cfg TTLConfig) *TTL { return &TTL{cfg: cfg} }

// maxExpirePerPass bounds the deletes of one expiry pass per namespace; the
// next pass takes the rest.
const maxExpirePerPass = 100_000

// NSTTL is a namespace with its ttl.
type NSTTL struct {
	NS  string
	TTL time.Duration
}

// Expire deletes the idle counters (user counters and label series) of
// the namespaces of jobs. It scans those namespaces; time buckets are left
// to retention.
func (x *TTL) Expire(ctx context.Context, jobs []NSTTL) error {
	if len(jobs) == 0 {
		return nil
	}
	if err := x.cfg.Prepare(); err != nil {
		return err
	}
	for _, j := range jobs {
		edge := x.cfg.Now().UnixMilli() - j.TTL.Milliseconds()
		var idle []string
		collect := func(key string, r store.Record) bool {
			if r.UpdatedMs > 0 && r.UpdatedMs <= edge && r.Counter.Live() {
				idle = append(idle, key)
			}
			return len(idle) < maxExpirePerPass && ctx.Err() == nil
		}
		err := x.cfg.Store.ScanRecords(j.NS, string([]byte{keyspace.KindSeries}), "", collect)
		if err == nil {
			err = x.cfg.Store.ScanRecords(j.NS, "", keyspace.FirstUserKey, collect)
		}
		if err != nil {
			return kinderr.New(nodeerr.ErrUnavailable, err, "scan for idle counters: %v", err)
		}
		for _, key := range idle {
			// The hot set may hold a later change than the scan saw.
			var before int64
			err := x.cfg.Modify(j.NS, key, func(e *keyspace.Entry) error {
				if e.Updated > edge || !e.C.Live() {
					return errNotIdle
				}
				before = e.C.Value()
				e.C.SetReset(x.cfg.ID, 0, true)
				return nil
			})
			if err != nil && err != errNotIdle {
				return err
			}
			if err == nil {
				x.cfg.Jump(j.NS, key, JumpOf(before, 0))
			}
		}
		if len(idle) > 0 {
			x.cfg.OnExpired(len(idle))
		}
	}
	return nil
}

// errNotIdle stops the expiry of a counter that changed since the scan.
var errNotIdle = fmt.Errorf("counter changed since the scan")
