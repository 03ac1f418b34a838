package node

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// fillToken is what a Fill hands to Committed: the node's own changes in
// the commit, to publish once they are durable.
type fillToken struct {
	seq      uint64 // the Fill's sequence
	from, to uint64 // own changes (from, to] are in this commit
	deltas   []change.Delta
}

// Fill implements store.Source: it writes every dirty counter into one
// operation-log record of b, gives each counter whose own slot changed the
// next own sequence number, and queues the counters for the next
// checkpoint. It runs on the committer goroutine only.
func (n *Node) Fill(b *store.Batch) (any, error) {
	tok := &fillToken{seq: n.fillSeq.Add(1)}
	vv := n.vvSnapshot()
	// Peers may have returned own changes this node had lost (restart
	// from an older disk); never reuse their sequence numbers.
	n.ownSeq = max(n.ownSeq, vv[n.id])
	tok.from = n.ownSeq
	publish := n.publisher.Load() != nil
	enc := n.logEnc
	enc.Reset()
	unsaved := n.keys.Drain(func(ns, key string, e *keyspace.Entry) {
		if e.Own {
			n.ownSeq++
			e.RaiseSeq(n.id, n.ownSeq)
			e.Own = false
			if publish {
				tok.deltas = append(tok.deltas, change.Delta{NS: ns, Key: key, Origin: n.id, Seq: n.ownSeq, State: e.C.Delta(true, n.id)})
			}
		}
		enc.Add(ns, key, store.Record{Counter: e.C, UpdatedMs: e.Updated, Seqs: e.Seqs()})
	})
	tok.to = n.ownSeq
	if unsaved >= n.ckptThreshold() {
		n.ckpt.Kick()
	}
	if enc.Len() > 0 {
		vv[n.id] = n.ownSeq
		enc.AppendTo(b, store.SortedVV(vv))
	}
	return tok, nil
}

// Committed implements store.Source: the commit is durable, so its own
// changes count in the version vector and may leave the node.
func (n *Node) Committed(token any, err error) {
	if err != nil {
		if !n.failed.CompareAndSwap(nil, &err) {
			return // every generation pending at the failure reports it
		}
		if errors.Is(err, store.ErrDiskFailed) {
			// The store logged the failure at error level, once.
			n.log.Info("the disk failed: the node stops acknowledging writes and reports not ready until restarted")
		} else {
			n.log.Error("commit failed: the node stops acknowledging writes and reports not ready", zap.Error(err))
		}
		return
	}
	tok := token.(*fillToken)
	n.committedSeq.Store(tok.seq)
	if tok.to > tok.from {
		n.vv.Lock()
		n.vv.m[n.id] = max(n.vv.m[n.id], tok.to)
		n.vv.Unlock()
		if p := n.publisher.Load(); p != nil {
			(*p).Publish(change.Batch{
				Ranges: []change.Range{{Origin: n.id, After: tok.from, Upto: tok.to}},
				Deltas: tok.deltas,
			})
		}
	}
}

// vvSnapshot copies the version vector.
func (n *Node) vvSnapshot() map[crdt.NodeID]uint64 {
	n.vv.Lock()
	defer n.vv.Unlock()
	return maps.Clone(n.vv.m)
}

// ckptThreshold is the number of unsaved counters that starts a checkpoint
// early: they cannot be evicted, so they must not outgrow the cache much.
func (n *Node) ckptThreshold() int64 {
	return max(int64(n.cfg.CacheCounters)/4, 16)
}

// ckptSource is the hot set as the store's checkpointer sees it, with the
// node's version vector.
type ckptSource struct {
	*keyspace.Set
	n *Node
}

// VersionVector implements store.Unsaved.
func (c ckptSource) VersionVector() []store.OriginSeq { return store.SortedVV(c.n.vvSnapshot()) }

// Saved implements store.Unsaved.
func (c ckptSource) Saved(num uint64, err error) {
	c.Set.Saved(num, err)
	if err == nil {
		// Ids recorded before the previous checkpoint ended are in the
		// store now (this one wrote whatever that one had not).
		c.n.recent.rotate()
	}
}

// Checkpoint makes Pebble reflect every change made before the call
// (anti-entropy scans Pebble's index). It is safe for concurrent use.
func (n *Node) Checkpoint() error {
	if err := n.ckpt.Checkpoint(); err != nil {
		return kinderr.New(ErrUnavailable, err, "checkpoint: %v", err)
	}
	return nil
}

// recoverLog replays the operation log left by the previous run into the
// hot set and restores the version vector, then checkpoints it, before the
// node serves. The log holds at most one checkpoint interval of changes, so
// this reads no more than it must.
func (n *Node) recoverLog() error {
	start := time.Now()
	saved, records, changes, err := n.store.Recover(func(ns, key string, r store.Record) error {
		ck := keyspace.Composite(nil, ns, key)
		s := n.keys.StripeOf(ck)
		s.Lock()
		defer s.Unlock()
		e, err := n.keys.Lookup(s, ck, ns, key, true)
		if err != nil {
			return err
		}
		e.C.Merge(r.Counter)
		e.Updated = max(e.Updated, r.UpdatedMs)
		for _, os := range r.Seqs {
			e.RaiseSeq(os.Origin, os.Seq)
		}
		n.keys.MarkReplayed(s, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	vv := make(map[crdt.NodeID]uint64)
	store.RaiseVV(vv, saved)
	n.vv.Lock()
	n.vv.m = vv
	n.vv.Unlock()
	n.ownSeq = vv[n.id]
	if err := n.ckpt.Checkpoint(); err != nil {
		return fmt.Errorf("node: checkpoint the replayed log: %w", err)
	}
	// After the checkpoint: the index then holds the replayed changes too.
	if err := n.recoverHeld(); err != nil {
		return fmt.Errorf("node: changes held past the recovered version vector: %w", err)
	}
	n.log.Info("recovered", zap.Int("log_records", records), zap.Int("changes", changes),
		zap.Uint64("own_seq", n.ownSeq), zap.Int("origins", len(vv)), zap.Duration("took", time.Since(start)))
	return nil
}
