package replica

import (
	"fmt"
	"maps"
	"sync"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// Released copies (docs/scale.md, "A writer's copies"). A node that writes
// a counter of a sharded namespace it does not own keeps it only until
// every owner holds the change: it then drops its copy (DropCopies), and
// the sequence space of its changes to that shard gets a release mark, the
// highest sequence number dropped. Past the mark nothing changes; below it
// this node no longer holds every change its vector claims, so
//
//   - anti-entropy never hands a peer changes of the space from below the
//     mark (ReleasedThrough is the exchanger's floor): the owners have them;
//   - a write of a counter of the shard that is not held here first brings
//     this node's slot back from an owner that covers the mark (Restore),
//     since a slot is a running total and a fresh one would count from 0.
//
// Marks are stored in Pebble under metaReleased and only grow.

const metaReleased = "released"

// releaseMarks is the release mark of each own sequence space.
type releaseMarks struct {
	sync.RWMutex
	m map[crdt.NodeID]uint64
}

// loadReleased reads the marks the previous run stored.
func (r *Replica) loadReleased() error {
	m := map[crdt.NodeID]uint64{}
	if _, err := r.cfg.Store.GetMeta(metaReleased, &m); err != nil {
		return fmt.Errorf("node: read release marks: %w", err)
	}
	r.released.Lock()
	r.released.m = m
	r.released.Unlock()
	return nil
}

// ReleasedThrough returns the release mark of space: the highest sequence
// number of it whose counters this node may have dropped (0: none).
func (r *Replica) ReleasedThrough(space crdt.NodeID) uint64 {
	r.released.RLock()
	defer r.released.RUnlock()
	return r.released.m[space]
}

// Released returns a copy of every release mark.
func (r *Replica) Released() map[crdt.NodeID]uint64 {
	r.released.RLock()
	defer r.released.RUnlock()
	return maps.Clone(r.released.m)
}

// raiseReleased stores the mark of space at seq, durably, before anything
// under it is dropped.
func (r *Replica) raiseReleased(space crdt.NodeID, seq uint64) error {
	r.released.Lock()
	defer r.released.Unlock()
	if r.released.m[space] >= seq {
		return nil
	}
	next := maps.Clone(r.released.m)
	if next == nil {
		next = map[crdt.NodeID]uint64{}
	}
	next[space] = seq
	b := r.cfg.Store.NewBatch()
	defer b.Close()
	if err := b.PutMeta(metaReleased, next); err != nil {
		return err
	}
	if err := b.Commit(true); err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "store release mark: %v", err)
	}
	r.released.m = next
	return nil
}

// DropCopies drops the counters whose changes this node holds only in
// space (one of its own sequence spaces) up to through, at most limit of
// them, once every owner of the space's shard holds through (the caller
// asked them). A counter still to be checkpointed, or holding a change of
// another origin or past through, stays. It raises the space's release mark
// first and returns how many counters it dropped and whether it went all
// the way to through. The caller checkpointed just before, and keeps this
// node's writes of the space's counters out until it returns.
func (r *Replica) DropCopies(space crdt.NodeID, through uint64, limit int) (dropped int, done bool, err error) {
	mark := r.ReleasedThrough(space)
	if through <= mark {
		return 0, true, nil
	}
	type cand struct {
		seq     uint64
		ns, key string
	}
	var cands []cand
	err = r.cfg.Store.ScanIndex(space, mark, func(seq uint64, ns, key string) bool {
		if seq > through {
			return false
		}
		cands = append(cands, cand{seq, ns, key})
		return len(cands) < limit
	})
	if err != nil {
		return 0, false, kinderr.New(nodeerr.ErrUnavailable, err, "scan index: %v", err)
	}
	upto := through
	if len(cands) == limit {
		upto = cands[len(cands)-1].seq
	}
	if err := r.raiseReleased(space, upto); err != nil {
		return 0, false, err
	}
	b := r.cfg.Store.NewBatch()
	defer b.Close()
	var ck []byte
	for _, c := range cands {
		ck = keyspace.Composite(ck[:0], c.ns, c.key)
		s := r.cfg.Keys.StripeOf(ck)
		s.Lock()
		var seqs []store.OriginSeq
		if e := s.Get(string(ck)); e != nil {
			if !r.cfg.Keys.Evictable(e) {
				s.Unlock()
				continue
			}
			seqs = e.Seqs()
		} else {
			rec, found, err := r.cfg.Store.GetRecord(c.ns, c.key)
			if err != nil {
				s.Unlock()
				return dropped, false, kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
			}
			if !found {
				s.Unlock()
				continue
			}
			seqs = rec.Seqs
		}
		if !onlyIn(seqs, space, through) {
			s.Unlock()
			continue
		}
		s.Remove(string(ck)) // the map's entry or the compact tier's record
		s.Unlock()
		b.DeleteCounter(c.ns, c.key)
		for _, os := range seqs {
			b.DeleteIndex(os.Origin, os.Seq)
		}
		dropped++
	}
	// Not synced: a delete lost in a crash leaves a copy that is still
	// right (the changes it holds are below the mark), only not dropped.
	if err := b.Commit(false); err != nil {
		return 0, false, kinderr.New(nodeerr.ErrUnavailable, err, "drop released counters: %v", err)
	}
	return dropped, upto == through, nil
}

// onlyIn reports whether every change seqs records is of space, at or
// below through.
func onlyIn(seqs []store.OriginSeq, space crdt.NodeID, through uint64) bool {
	for _, os := range seqs {
		if os.Origin != space || os.Seq > through {
			return false
		}
	}
	return len(seqs) > 0
}

// Held reports whether this node holds a state of ns/key (in memory or in
// Pebble).
func (r *Replica) Held(ns, key string) (bool, error) {
	ck := keyspace.Composite(nil, ns, key)
	s := r.cfg.Keys.StripeOf(ck)
	s.Lock()
	e := s.Get(string(ck))
	s.Unlock()
	if e != nil {
		return true, nil
	}
	_, found, err := r.cfg.Store.GetRecord(ns, key)
	return found, err
}

// Restore merges c, an owner's state of ns/key, into this node's: a write
// of a counter this node released brings its own slot back first. The
// caller checked c (CheckFetchedState). It is made durable with the write
// that follows it.
func (r *Replica) Restore(ns, key string, c crdt.Counter) error {
	ck := keyspace.Composite(nil, ns, key)
	s := r.cfg.Keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := r.cfg.Keys.Lookup(s, ck, ns, key, true)
	if err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
	}
	e.C.Merge(c)
	r.cfg.Keys.MarkDirty(s, e)
	return nil
}

// OwnSpace returns this node's sequence space of the shard of ns/key in a
// namespace of the given replicas.
func (r *Replica) OwnSpace(ns, key string, replicas int) crdt.NodeID {
	return change.ShardOf(ns, key, replicas).Space(r.cfg.ID)
}
