package node

import (
	"errors"
	"fmt"
	"maps"
	mathbits "math/bits"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
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
	var filled, queued int64
	// Visit the stripes marked dirty. A bit is set (under the stripe lock)
	// when a stripe's dirty list becomes non-empty, and cleared here before
	// the list is drained: a change racing with this Fill either is drained
	// now or sets the bit again for the next one.
	for w := range n.dirtyStripes {
		bits := n.dirtyStripes[w].Swap(0)
		for bits != 0 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			bits &= bits - 1
			f, q := n.fillStripe(&n.stripes[i], tok, publish, enc)
			filled += f
			queued += q
		}
	}
	tok.to = n.ownSeq
	// unsaved first: a checkpoint skips when both read zero, which must not
	// happen while counters move from one to the other.
	if queued > 0 && n.unsaved.Add(queued) >= n.ckptThreshold() {
		n.kickCheckpoint()
	}
	n.pending.Add(-filled)
	if enc.Len() > 0 {
		vv[n.id] = n.ownSeq
		enc.AppendTo(b, vvList(vv))
	}
	return tok, nil
}

// fillStripe moves one stripe's dirty counters into the log record.
func (n *Node) fillStripe(s *stripe, tok *fillToken, publish bool, enc *store.LogEncoder) (filled, queued int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.dirty {
		ns, key := splitKey(e.ck)
		if e.own {
			n.ownSeq++
			e.seqs = withSeq(e.seqs, n.id, n.ownSeq)
			e.own = false
			if publish {
				tok.deltas = append(tok.deltas, change.Delta{NS: ns, Key: key, Origin: n.id, Seq: n.ownSeq, State: e.c.Delta(true, n.id)})
			}
		}
		enc.Add(ns, key, store.Record{Counter: e.c, UpdatedMs: e.updated, Seqs: e.seqs})
		e.dirty = false
		if !e.unsaved {
			e.unsaved = true
			s.unsaved = append(s.unsaved, e)
			queued++
		}
	}
	filled = int64(len(s.dirty))
	clear(s.dirty)
	s.dirty = s.dirty[:0]
	return filled, queued
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

// vvList is a version vector as a sorted list.
func vvList(vv map[crdt.NodeID]uint64) []store.OriginSeq {
	out := make([]store.OriginSeq, 0, len(vv))
	for o, s := range vv {
		out = append(out, store.OriginSeq{Origin: o, Seq: s})
	}
	slices.SortFunc(out, func(a, b store.OriginSeq) int {
		switch {
		case a.Origin < b.Origin:
			return -1
		case a.Origin > b.Origin:
			return 1
		}
		return 0
	})
	return out
}

// mergeVV raises vv to every entry of list.
func mergeVV(vv map[crdt.NodeID]uint64, list []store.OriginSeq) {
	for _, s := range list {
		vv[s.Origin] = max(vv[s.Origin], s.Seq)
	}
}

// ckptThreshold is the number of unsaved counters that starts a checkpoint
// early: they cannot be evicted, so they must not outgrow the cache much.
func (n *Node) ckptThreshold() int64 {
	return max(int64(n.cfg.CacheCounters)/4, 16)
}

func (n *Node) kickCheckpoint() {
	select {
	case n.ckptKick <- struct{}{}:
	default:
	}
}

// checkpointLoop writes unsaved counters to Pebble every CheckpointInterval,
// or sooner when the log or the unsaved set grows large.
func (n *Node) checkpointLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.CheckpointInterval / 4)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-n.done:
			return
		case <-n.ckptKick:
		case <-t.C:
			if time.Since(last) < n.cfg.CheckpointInterval && n.store.LogBytes() < n.cfg.CheckpointLogBytes {
				continue
			}
		}
		last = time.Now()
		if err := n.checkpoint(); err != nil {
			if errors.Is(err, store.ErrDiskFailed) {
				// Nothing can be written until a restart; the store
				// logged the failure once.
				n.log.Info("checkpoints stop: the disk failed", zap.Error(err))
				return
			}
			n.log.Error("checkpoint failed; the operation log keeps every change, and the checkpoint will be retried", zap.Error(err))
		}
	}
}

// metaVV is the meta key of the version vector a checkpoint covers.
const metaVV = "vv"

// checkpoint writes the state of every counter changed since the last
// checkpoint to Pebble, with its (origin, seq) index entries and the version
// vector, in one synced batch, then drops the log segments that state
// covers. Counters still waiting for the committer are written too (their
// state is at least what the log will hold), so that after a checkpoint
// Pebble reflects every change made before it began.
func (n *Node) checkpoint() error {
	n.ckptMu.Lock()
	defer n.ckptMu.Unlock()
	if n.unsaved.Load() == 0 && n.pending.Load() == 0 && n.ckptSeq > 0 {
		// Nothing changed since the last checkpoint: List and every
		// anti-entropy scan ask for one, and most find nothing to do.
		return nil
	}
	start := time.Now()
	vv := n.vvSnapshot() // durable before anything collected below
	// Every record appended before the rotation is in a segment below cut,
	// and every counter it holds was queued (unsaved) before it was
	// appended, so the collection below covers it.
	cut, err := n.store.RotateLog()
	if err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	n.ckptSeq++
	num := n.ckptSeq
	b := n.store.NewBatch()
	defer b.Close()
	var saved int64
	for i := range n.stripes {
		s := &n.stripes[i]
		s.mu.Lock()
		for _, e := range s.unsaved {
			ns, key := splitKey(e.ck)
			b.PutRecord(ns, key, store.Record{Counter: e.c, UpdatedMs: e.updated, Seqs: e.seqs})
			for _, os := range e.seqs {
				old := seqOf(e.ckSeqs, os.Origin)
				if old == os.Seq {
					continue
				}
				if old != 0 {
					b.DeleteIndex(os.Origin, old)
				}
				b.PutIndex(os.Origin, os.Seq, ns, key)
			}
			e.ckSeqs = e.seqs
			e.unsaved = false
			e.savedAt = num
		}
		saved += int64(len(s.unsaved))
		s.saving = append(s.saving[:0], s.unsaved...)
		clear(s.unsaved)
		s.unsaved = s.unsaved[:0]
		for _, e := range s.dirty {
			ns, key := splitKey(e.ck)
			b.PutRecord(ns, key, store.Record{Counter: e.c, UpdatedMs: e.updated, Seqs: e.ckSeqs})
		}
		s.mu.Unlock()
	}
	n.unsaved.Add(-saved)
	err = b.PutMeta(metaVV, vvList(vv))
	if err == nil {
		err = b.Commit(true)
	}
	n.endSaving(err != nil)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	n.ckptDone.Store(num)
	// Ids recorded before the previous checkpoint ended are in the store
	// now (this one wrote whatever that one had not).
	n.recent.rotate()
	if err := n.store.DropLogBefore(cut); err != nil {
		return fmt.Errorf("drop checkpointed log: %w", err)
	}
	n.metrics.checkpoints.Inc()
	n.metrics.checkpointSeconds.Observe(time.Since(start).Seconds())
	n.log.Debug("checkpoint", zap.Uint64("num", num), zap.Int64("counters", saved), zap.Duration("took", time.Since(start)))
	return nil
}

// endSaving ends a checkpoint's saving lists; when it failed, their entries
// are unsaved again, for the next checkpoint to write.
func (n *Node) endSaving(failed bool) {
	for i := range n.stripes {
		s := &n.stripes[i]
		s.mu.Lock()
		if failed {
			for _, e := range s.saving {
				if !e.unsaved {
					e.unsaved = true
					s.unsaved = append(s.unsaved, e)
					n.unsaved.Add(1)
				}
			}
		}
		clear(s.saving)
		s.saving = s.saving[:0]
		s.mu.Unlock()
	}
}

// Checkpoint makes Pebble reflect every change made before the call (List
// and anti-entropy scan Pebble). It is safe for concurrent use.
func (n *Node) Checkpoint() error {
	if err := n.checkpoint(); err != nil {
		return fmt.Errorf("%w: checkpoint: %v", ErrUnavailable, err)
	}
	return nil
}

// recoverLog restores the version vector and replays the operation log left
// by the previous run into the hot set, then checkpoints it, before the node
// serves. The log holds at most one checkpoint interval of changes, so this
// reads no more than it must.
func (n *Node) recoverLog() error {
	start := time.Now()
	var saved []store.OriginSeq
	if _, err := n.store.GetMeta(metaVV, &saved); err != nil {
		return fmt.Errorf("node: read version vector: %w", err)
	}
	vv := make(map[crdt.NodeID]uint64)
	mergeVV(vv, saved)
	var counters int
	records, err := n.store.ReplayLog(func(payload []byte) error {
		recVV, err := store.DecodeLog(payload, func(ns, key string, r store.Record) error {
			ck := compositeKey(nil, ns, key)
			s := &n.stripes[n.stripeOf(ck)]
			s.mu.Lock()
			defer s.mu.Unlock()
			e, err := n.lookupLocked(s, ck, ns, key, true)
			if err != nil {
				return err
			}
			e.c.Merge(r.Counter)
			e.updated = max(e.updated, r.UpdatedMs)
			for _, os := range r.Seqs {
				e.seqs = withSeq(e.seqs, os.Origin, os.Seq)
			}
			if !e.unsaved {
				e.unsaved = true
				s.unsaved = append(s.unsaved, e)
				n.unsaved.Add(1)
			}
			counters++
			return nil
		})
		mergeVV(vv, recVV)
		return err
	})
	if err != nil {
		return fmt.Errorf("node: replay operation log: %w", err)
	}
	n.vv.Lock()
	n.vv.m = vv
	n.vv.Unlock()
	n.ownSeq = vv[n.id]
	if err := n.checkpoint(); err != nil {
		return fmt.Errorf("node: checkpoint the replayed log: %w", err)
	}
	n.log.Info("recovered", zap.Int("log_records", records), zap.Int("changes", counters),
		zap.Uint64("own_seq", n.ownSeq), zap.Int("origins", len(vv)), zap.Duration("took", time.Since(start)))
	return nil
}
