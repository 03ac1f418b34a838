package replica

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/retire"
	"github.com/countmesh/countmesh/store"
)

// fillToken is what a Fill hands to Committed: the node's own changes in
// the commit, to publish once they are durable.
type fillToken struct {
	seq      uint64 // the Fill's sequence
	from, to uint64 // own changes (from, to] are in this commit
	deltas   []change.Delta
	// spaces holds, per sequence space of a sharded namespace's shard
	// (change.Shard.Space of this node), the own changes (from, to] of it
	// in this commit.
	spaces map[crdt.NodeID]*span
}

// span is a run (from, to] of one origin's sequence numbers.
type span struct{ from, to uint64 }

// originFor returns the origin under which this node numbers its change of
// ns/key: its id, or its sequence space of the key's shard when the
// namespace is sharded (docs/scale.md).
func (r *Replica) originFor(ns, key string) crdt.NodeID {
	if r.cfg.Replicas != nil {
		if n := r.cfg.Replicas(ns); n > 0 {
			return change.ShardOf(ns, key, n).Space(r.cfg.ID)
		}
	}
	return r.cfg.ID
}

// nextSpaceSeq numbers the next own change in space, never reusing a
// number the version vector already covers (peers may have returned
// changes this node lost).
func (r *Replica) nextSpaceSeq(tok *fillToken, space crdt.NodeID, vv map[crdt.NodeID]uint64) uint64 {
	sp := tok.spaces[space]
	if sp == nil {
		if tok.spaces == nil {
			tok.spaces = make(map[crdt.NodeID]*span)
		}
		if r.ownSeqs == nil {
			r.ownSeqs = make(map[crdt.NodeID]uint64)
		}
		cur := max(r.ownSeqs[space], vv[space])
		sp = &span{from: cur, to: cur}
		tok.spaces[space] = sp
	}
	sp.to++
	r.ownSeqs[space] = sp.to
	return sp.to
}

// Fill implements store.Source: it writes every dirty counter into one
// operation-log record of b, gives each counter whose own slot changed the
// next own sequence number, and queues the counters for the next
// checkpoint. It runs on the committer goroutine only.
func (r *Replica) Fill(b *store.Batch) (any, error) {
	id := r.cfg.ID
	tok := &fillToken{seq: r.fillSeq.Add(1)}
	vv := r.VersionVector()
	// Peers may have returned own changes this node had lost (restart
	// from an older disk); never reuse their sequence numbers.
	r.ownSeq = max(r.ownSeq, vv[id])
	tok.from = r.ownSeq
	publish := r.publisher.Load() != nil
	enc := r.logEnc
	enc.Reset()
	dirty, _ := r.cfg.Keys.Changed()
	enc.Grow(int(dirty))
	unsaved := r.cfg.Keys.Drain(func(ns, key string, e *keyspace.Entry) {
		if e.Own {
			origin, seq := r.originFor(ns, key), uint64(0)
			if origin == id {
				r.ownSeq++
				seq = r.ownSeq
			} else {
				seq = r.nextSpaceSeq(tok, origin, vv)
			}
			e.RaiseSeq(origin, seq)
			e.Own = false
			if publish {
				tok.deltas = append(tok.deltas, change.Delta{NS: ns, Key: key, Origin: origin, Seq: seq, State: e.C.Delta(true, id)})
			}
		}
		enc.Add(ns, key, store.Record{Counter: e.C, UpdatedMs: e.Updated, Seqs: e.Seqs()})
	})
	tok.to = r.ownSeq
	if unsaved >= r.ckptThreshold() {
		r.ckpt.Kick()
	}
	if enc.Len() > 0 {
		vv[id] = r.ownSeq
		for space, sp := range tok.spaces {
			vv[space] = max(vv[space], sp.to)
		}
		enc.AppendTo(b, store.SortedVV(vv))
	}
	return tok, nil
}

// Committed implements store.Source: the commit is durable, so its own
// changes count in the version vector and may leave the node.
func (r *Replica) Committed(token any, err error) {
	if err != nil {
		if !r.failed.CompareAndSwap(nil, &err) {
			return // every generation pending at the failure reports it
		}
		if errors.Is(err, store.ErrDiskFailed) {
			// The store logged the failure at error level, once.
			r.cfg.Log.Info("the disk failed: the node stops acknowledging writes and reports not ready until restarted")
		} else {
			r.cfg.Log.Error("commit failed: the node stops acknowledging writes and reports not ready", zap.Error(err))
		}
		return
	}
	tok := token.(*fillToken)
	r.committedSeq.Store(tok.seq)
	if tok.to > tok.from || len(tok.spaces) > 0 {
		var ranges []change.Range
		r.vv.Lock()
		if tok.to > tok.from {
			r.vv.m[r.cfg.ID] = max(r.vv.m[r.cfg.ID], tok.to)
			ranges = append(ranges, change.Range{Origin: r.cfg.ID, After: tok.from, Upto: tok.to})
		}
		for space, sp := range tok.spaces {
			r.vv.m[space] = max(r.vv.m[space], sp.to)
			ranges = append(ranges, change.Range{Origin: space, After: sp.from, Upto: sp.to})
		}
		r.vv.Unlock()
		if p := r.publisher.Load(); p != nil {
			slices.SortFunc(ranges, func(a, b change.Range) int { return cmp.Compare(a.Origin, b.Origin) })
			(*p).Publish(change.Batch{Ranges: ranges, Deltas: tok.deltas})
		}
	}
}

// ckptThreshold is the number of unsaved counters that starts a checkpoint
// early: they cannot be evicted, so they must not outgrow the cache much.
func (r *Replica) ckptThreshold() int64 {
	return max(r.cfg.CheckpointUnsaved, 16)
}

// ckptSource is the hot set as the store's checkpointer sees it, with the
// replica's version vector.
type ckptSource struct {
	*keyspace.Set
	r *Replica
}

// VersionVector implements store.Unsaved.
func (c ckptSource) VersionVector() []store.OriginSeq { return store.SortedVV(c.r.VersionVector()) }

// Saved implements store.Unsaved.
func (c ckptSource) Saved(num uint64, err error) {
	c.Set.Saved(num, err)
	if err == nil {
		// Ids recorded before the previous checkpoint ended are in the
		// store now (this one wrote whatever that one had not).
		c.r.cfg.Saved()
	}
}

// Recover replays the operation log left by the previous run into the hot
// set and restores the version vector, then checkpoints it, before the node
// serves. The log holds at most one checkpoint interval of changes, so this
// reads no more than it must.
func (r *Replica) Recover() error {
	start := time.Now()
	if err := r.loadReleased(); err != nil {
		return err
	}
	keys := r.cfg.Keys
	saved, records, changes, err := r.cfg.Store.Recover(func(ns, key string, rec store.Record) error {
		ck := keyspace.Composite(nil, ns, key)
		s := keys.StripeOf(ck)
		s.Lock()
		defer s.Unlock()
		e, err := keys.Lookup(s, ck, ns, key, true)
		if err != nil {
			return err
		}
		if err := retire.Merge(&e.C, rec.Counter, r.retiredIDs()); err != nil {
			return fmt.Errorf("%s/%q: %w", ns, key, err)
		}
		e.Updated = max(e.Updated, rec.UpdatedMs)
		for _, os := range rec.Seqs {
			e.RaiseSeq(os.Origin, os.Seq)
		}
		keys.MarkReplayed(s, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	vv := make(map[crdt.NodeID]uint64)
	store.RaiseVV(vv, saved)
	r.vv.Lock()
	r.vv.m = vv
	r.vv.Unlock()
	r.ownSeq = vv[r.cfg.ID]
	if err := r.ckpt.Checkpoint(); err != nil {
		return fmt.Errorf("node: checkpoint the replayed log: %w", err)
	}
	// After the checkpoint: the index then holds the replayed changes too.
	if err := r.recoverHeld(); err != nil {
		return fmt.Errorf("node: changes held past the recovered version vector: %w", err)
	}
	r.cfg.Log.Info("recovered", zap.Int("log_records", records), zap.Int("changes", changes),
		zap.Uint64("own_seq", r.ownSeq), zap.Int("origins", len(vv)), zap.Duration("took", time.Since(start)))
	return nil
}
