package replica

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
	"go.uber.org/zap"
)

// Released copies (docs/scale.md, "A node's copies"). A node keeps the
// counters of a sharded namespace's shard it does not own only until every
// owner holds their changes: its own writes, and what it holds of other
// writers (a leaving node's hand-over, a shard that moved away). It then
// drops them (DropCopies); before that, each sequence space dropped from
// gets a release mark, the highest sequence number that may be gone. Below
// the mark this node no longer holds every change its vector claims, so
//
//   - anti-entropy never hands a peer changes of the space from below the
//     mark (ReleasedThrough is the exchanger's floor): the owners have them;
//   - a write of one of its own counters of the shard that is not held here
//     first brings this node's slot back from an owner that covers the
//     mark (Restore), since a slot is a running total;
//   - the node answers no read of the shard alone (ShardReleased), and, once
//     it owns the shard, advertises 0 for the space in anti-entropy so that
//     a co-owner hands every change of it back: a range of the space from 0
//     up to the mark clears the mark (noteRefill).
//
// Marks are stored in Pebble under metaReleased.

const metaReleased = "released"

// ReleaseMark is the release mark of one sequence space.
type ReleaseMark struct {
	Shard change.Shard
	Upto  uint64
}

// releaseMarks is the release marks, copied on write.
type releaseMarks struct {
	sync.Mutex                         // serializes changes
	cur        atomic.Pointer[markSet] // read without the lock
	refill     map[crdt.NodeID]uint64  // contiguous changes from 0 received again; guarded by Mutex
}

type markSet struct {
	marks  map[crdt.NodeID]ReleaseMark
	shards map[change.Shard]int // marks per shard
}

func newMarkSet(marks map[crdt.NodeID]ReleaseMark) *markSet {
	ms := &markSet{marks: marks, shards: make(map[change.Shard]int)}
	for _, m := range marks {
		ms.shards[m.Shard]++
	}
	return ms
}

func (r *Replica) markSet() *markSet {
	if ms := r.released.cur.Load(); ms != nil {
		return ms
	}
	return &markSet{}
}

// loadReleased reads the marks the previous run stored.
func (r *Replica) loadReleased() error {
	m := map[crdt.NodeID]ReleaseMark{}
	if _, err := r.cfg.Store.GetMeta(metaReleased, &m); err != nil {
		return fmt.Errorf("node: read release marks: %w", err)
	}
	r.released.cur.Store(newMarkSet(m))
	return nil
}

// ReleasedThrough returns the release mark of space: the highest sequence
// number of it whose counters this node may have dropped (0: none).
func (r *Replica) ReleasedThrough(space crdt.NodeID) uint64 {
	return r.markSet().marks[space].Upto
}

// ReleaseMarks returns a copy of the release marks.
func (r *Replica) ReleaseMarks() map[crdt.NodeID]ReleaseMark {
	return maps.Clone(r.markSet().marks)
}

// ReleasedShards returns the shard of each space with a release mark.
func (r *Replica) ReleasedShards() map[crdt.NodeID]change.Shard {
	ms := r.markSet()
	out := make(map[crdt.NodeID]change.Shard, len(ms.marks))
	for sp, m := range ms.marks {
		out[sp] = m.Shard
	}
	return out
}

// ShardReleased reports whether this node may have dropped changes of
// shard s (a space of it has a release mark).
func (r *Replica) ShardReleased(s change.Shard) bool {
	return r.markSet().shards[s] > 0
}

// RaiseReleased stores the given marks (raised, never lowered), durably,
// before anything under them is dropped.
func (r *Replica) RaiseReleased(raise map[crdt.NodeID]ReleaseMark) error {
	r.released.Lock()
	defer r.released.Unlock()
	next := maps.Clone(r.markSet().marks)
	if next == nil {
		next = map[crdt.NodeID]ReleaseMark{}
	}
	changed := false
	for sp, m := range raise {
		if cur, ok := next[sp]; !ok || m.Upto > cur.Upto {
			next[sp] = m
			changed = true
			delete(r.released.refill, sp) // what came back so far may go again
		}
	}
	if !changed {
		return nil
	}
	return r.storeMarksLocked(next)
}

func (r *Replica) storeMarksLocked(next map[crdt.NodeID]ReleaseMark) error {
	b := r.cfg.Store.NewBatch()
	defer b.Close()
	if err := b.PutMeta(metaReleased, next); err != nil {
		return err
	}
	if err := b.Commit(true); err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "store release marks: %v", err)
	}
	r.released.cur.Store(newMarkSet(next))
	return nil
}

// noteRefill clears the marks of spaces whose changes came back whole: a
// range of the space contiguous from 0 up to the mark (a co-owner's
// anti-entropy answer to the 0 this node advertised for it). Called after
// the batch holding the ranges is merged and durable.
func (r *Replica) noteRefill(ranges []change.Range) {
	if !r.refills(ranges) {
		return
	}
	var done []crdt.NodeID
	r.released.Lock()
	defer r.released.Unlock()
	ms := r.markSet()
	for _, rg := range ranges {
		m, ok := ms.marks[rg.Origin]
		if !ok {
			continue
		}
		if r.released.refill == nil {
			r.released.refill = make(map[crdt.NodeID]uint64)
		}
		got, started := r.released.refill[rg.Origin]
		if rg.After > 0 && (!started || rg.After > got) {
			continue // not contiguous from 0 with what came back
		}
		got = max(got, rg.Upto)
		r.released.refill[rg.Origin] = got
		if got >= m.Upto {
			done = append(done, rg.Origin)
		}
	}
	if len(done) == 0 {
		return
	}
	next := maps.Clone(r.markSet().marks)
	for _, sp := range done {
		delete(next, sp)
		delete(r.released.refill, sp)
	}
	if err := r.storeMarksLocked(next); err != nil {
		r.cfg.Log.Warn("cannot clear the release marks of refilled spaces; a later exchange retries", zap.Error(err))
		return
	}
	r.cfg.Log.Info("took back every change of sequence spaces this node had released", zap.Int("spaces", len(done)))
}

// refills reports whether a range of ranges is of a space with a release
// mark (a refill, possibly).
func (r *Replica) refills(ranges []change.Range) bool {
	ms := r.markSet()
	if len(ms.marks) == 0 {
		return false
	}
	for _, rg := range ranges {
		if _, ok := ms.marks[rg.Origin]; ok {
			return true
		}
	}
	return false
}

// SpaceShard returns the shard of origin from the first change of it this
// node indexed above after: space is false when origin is a node's id (its
// changes are of namespaces every node holds), held false when nothing of
// it is indexed above after.
func (r *Replica) SpaceShard(origin crdt.NodeID, after uint64) (s change.Shard, space, held bool, err error) {
	var ns, key string
	err = r.cfg.Store.ScanIndex(origin, after, func(_ uint64, n, k string) bool {
		ns, key, held = n, k, true
		return false
	})
	if err != nil || !held {
		return change.Shard{}, false, held, err
	}
	rep := 0
	if r.cfg.Replicas != nil {
		rep = r.cfg.Replicas(ns)
	}
	if rep <= 0 {
		return change.Shard{}, false, true, nil
	}
	s = change.ShardOf(ns, key, rep)
	rec, ok, err := r.cfg.Store.GetRecord(ns, key)
	if err != nil || !ok {
		return change.Shard{}, false, ok, err
	}
	return s, change.CarriesWriter(&rec.Counter, s.Origin(origin)), true, nil
}

// DropCopies drops, of the counters this node indexed under space after
// after, up to through, at most limit: those whose every change it holds
// is covered (at or below covered(origin)) and whose state Pebble holds (a
// counter still to be checkpointed stays). The caller raised the marks of
// every space covered answers for, checkpointed just before, and keeps
// this node's writes of the shard's counters out until it returns. It
// drops nothing once the space's mark is below through (a refill cleared
// it meanwhile). It returns how many it dropped and the seq to continue
// after (through when the scan is done).
func (r *Replica) DropCopies(space crdt.NodeID, after, through uint64, covered func(crdt.NodeID) uint64, limit int) (dropped int, next uint64, err error) {
	// Held throughout: a refill completing now would clear the mark while
	// its counters are dropped again.
	r.released.Lock()
	defer r.released.Unlock()
	if r.markSet().marks[space].Upto < through {
		return 0, through, nil
	}
	var cands []dropCand
	err = r.cfg.Store.ScanIndex(space, after, func(seq uint64, ns, key string) bool {
		if seq > through {
			return false
		}
		cands = append(cands, dropCand{seq: seq, ns: ns, key: key})
		return len(cands) < limit
	})
	if err != nil {
		return 0, after, kinderr.New(nodeerr.ErrUnavailable, err, "scan index: %v", err)
	}
	next = through
	if len(cands) == limit {
		next = cands[len(cands)-1].seq
	}
	var ck []byte
	for i := range cands {
		ck = keyspace.Composite(ck[:0], cands[i].ns, cands[i].key)
		cands[i].stripe = r.cfg.Keys.StripeIndex(ck)
	}
	slices.SortStableFunc(cands, func(a, b dropCand) int { return a.stripe - b.stripe })
	// Stripe by stripe, the deletes committed before the stripe is
	// unlocked: a peer's change read in between would bring the counter
	// back from the record about to go, without its index entries.
	for from := 0; from < len(cands); {
		to := from
		for to < len(cands) && cands[to].stripe == cands[from].stripe {
			to++
		}
		n, err := r.dropStripe(cands[from:to], covered)
		dropped += n
		if err != nil {
			return dropped, after, err
		}
		from = to
	}
	if dropped > 0 {
		delete(r.released.refill, space) // what came back so far may be gone again
	}
	return dropped, next, nil
}

// dropCand is a counter DropCopies may drop.
type dropCand struct {
	seq     uint64
	ns, key string
	stripe  int
}

// dropStripe drops, of cands (counters of one stripe), those whose every
// change is covered and whose state Pebble holds, committing the deletes
// under the stripe's lock.
func (r *Replica) dropStripe(cands []dropCand, covered func(crdt.NodeID) uint64) (int, error) {
	var ck []byte
	ck = keyspace.Composite(ck[:0], cands[0].ns, cands[0].key)
	s := r.cfg.Keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	b := r.cfg.Store.NewBatch()
	defer b.Close()
	dropped := 0
	for _, c := range cands {
		ck = keyspace.Composite(ck[:0], c.ns, c.key)
		var seqs []store.OriginSeq
		if e := s.Get(string(ck)); e != nil {
			if !r.cfg.Keys.Evictable(e) {
				continue
			}
			seqs = e.Seqs()
		} else {
			rec, found, err := r.cfg.Store.GetRecord(c.ns, c.key)
			if err != nil {
				return 0, kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
			}
			if !found {
				continue
			}
			seqs = rec.Seqs
		}
		if !coveredAll(seqs, covered) {
			continue
		}
		s.Remove(string(ck)) // the map's entry or the compact tier's record
		b.DeleteCounter(c.ns, c.key)
		for _, os := range seqs {
			b.DeleteIndex(os.Origin, os.Seq)
		}
		dropped++
	}
	if dropped == 0 {
		return 0, nil
	}
	// Not synced: a delete lost in a crash leaves a copy that is still
	// right (the changes it holds are below the marks), only not dropped.
	if err := b.Commit(false); err != nil {
		return 0, kinderr.New(nodeerr.ErrUnavailable, err, "drop released counters: %v", err)
	}
	return dropped, nil
}

// coveredAll reports whether covered covers every change seqs records.
func coveredAll(seqs []store.OriginSeq, covered func(crdt.NodeID) uint64) bool {
	for _, os := range seqs {
		if os.Seq > covered(os.Origin) {
			return false
		}
	}
	return len(seqs) > 0
}

// Held reports whether this node holds a state of ns/key (in memory or in
// Pebble).
func (r *Replica) Held(ns, key string) (bool, error) {
	_, held, err := r.SeqIn(ns, key, 0)
	return held, err
}

// SeqIn returns the sequence number of this node's latest change of ns/key
// in space (0: none held), and whether it holds a state of the counter at
// all. A counter this node released can come back without its own latest
// change (a leaving node's hand-over carries the other writers' changes and
// an older total of this node's slot): only a change of its own space says
// that its slot is current.
func (r *Replica) SeqIn(ns, key string, space crdt.NodeID) (seq uint64, held bool, err error) {
	ck := keyspace.Composite(nil, ns, key)
	s := r.cfg.Keys.StripeOf(ck)
	s.Lock()
	if e := s.Get(string(ck)); e != nil {
		seq = e.SeqOf(space)
		s.Unlock()
		return seq, true, nil
	}
	s.Unlock()
	rec, found, err := r.cfg.Store.GetRecord(ns, key)
	return store.SeqOf(rec.Seqs, space), found, err
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
	if err := r.MergeState(ns, key, &e.C, c); err != nil {
		return err
	}
	r.cfg.Keys.MarkDirty(s, e)
	return nil
}

// OwnSpace returns this node's sequence space of the shard of ns/key in a
// namespace of the given replicas.
func (r *Replica) OwnSpace(ns, key string, replicas int) crdt.NodeID {
	return change.ShardOf(ns, key, replicas).Space(r.cfg.ID)
}
