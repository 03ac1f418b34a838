package node

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// entry is one counter in the hot set. Every field is guarded by the lock of
// the stripe that holds the entry.
type entry struct {
	ck      string       // composite key: ns + "\x00" + key
	c       crdt.Counter // merged state
	updated int64        // unix ms of the last change this node saw; 0 unknown
	savedAt uint64       // the checkpoint that last wrote the entry to Pebble
	// seqs holds, per origin, the sequence number of the change that last
	// set that origin's slot; ckSeqs is what the last checkpoint wrote to
	// the (origin, seq) index. Both are replaced, never modified in place,
	// so they may share storage.
	seqs, ckSeqs []store.OriginSeq
	lastUse      uint32 // n.tick at the last access, for eviction
	dirty        bool   // changed since the last Fill (in stripe.dirty)
	unsaved      bool   // logged or changed since the last checkpoint (in stripe.unsaved)
	own          bool   // this node changed its own slot since the last Fill
}

// stripe is one lock stripe of the hot set.
type stripe struct {
	mu sync.Mutex // guards m, dirty, unsaved and saving, and every entry in m
	m  map[string]*entry
	// dirty lists the entries changed since the last Fill, in change order.
	dirty []*entry
	// unsaved lists the entries whose state Pebble does not have yet.
	unsaved []*entry
	// saving lists the entries the checkpoint in progress writes: Pebble
	// holds their state once it commits, and scans look here until then.
	saving []*entry
	index  int     // position in Node.stripes
	_      [8]byte // keep neighbouring stripes' locks off one cache line
}

var seed = maphash.MakeSeed()

// compositeKey appends ns, 0x00 and key to buf; keys never contain control
// characters, so the separator is unambiguous.
func compositeKey(buf []byte, ns, key string) []byte {
	buf = append(buf, ns...)
	buf = append(buf, 0)
	return append(buf, key...)
}

// splitKey undoes compositeKey.
func splitKey(ck string) (ns, key string) {
	for i := 0; i < len(ck); i++ {
		if ck[i] == 0 {
			return ck[:i], ck[i+1:]
		}
	}
	return ck, ""
}

// stripeOf returns the stripe index of a composite key.
func (n *Node) stripeOf(ck []byte) int {
	return int(maphash.Bytes(seed, anchor(ck)) & uint64(len(n.stripes)-1))
}

// evictableLocked reports whether e may leave memory: Pebble must hold its
// state (a checkpoint that has committed wrote it), so that a read-through
// finds it there.
func (n *Node) evictableLocked(e *entry) bool {
	return !e.dirty && !e.unsaved && e.savedAt <= n.ckptDone.Load()
}

// evictLocked removes entries from a stripe until it holds target, choosing among a few sampled entries the least recently used one
// that is durable (sampled LRU, as Redis does). A stripe whose sampled
// entries are all waiting for the committer stays over its share until the
// next insert.
func (n *Node) evictLocked(s *stripe, target int) {
	for len(s.m) > target {
		var victim *entry
		sampled := 0
		for _, e := range s.m {
			if n.evictableLocked(e) && (victim == nil || int32(e.lastUse-victim.lastUse) < 0) {
				victim = e
			}
			sampled++
			if sampled == 5 {
				break
			}
		}
		if victim == nil {
			return
		}
		delete(s.m, victim.ck)
		n.metrics.evictions.Inc()
	}
}

// lookupLocked returns the entry for the composite key ck, reading it through
// from the store when it is not in memory. With create, a counter that does
// not exist yet gets a new entry; without, nil is returned for it (reads of
// unknown counters do not fill the cache). To make room it may evict other
// entries of the stripe, never the one it returns.
func (n *Node) lookupLocked(s *stripe, ck []byte, ns, key string, create bool) (*entry, error) {
	return n.lookupEvictLocked(s, ck, ns, key, create, true)
}

// lookupEvictLocked is lookupLocked; without evict it never evicts, for
// callers that hold pointers to other entries of the stripe.
func (n *Node) lookupEvictLocked(s *stripe, ck []byte, ns, key string, create, evict bool) (*entry, error) {
	tick := n.tick.Load()
	if e := s.m[string(ck)]; e != nil {
		e.lastUse = tick
		return e, nil
	}
	r, found, err := n.store.GetRecord(ns, key)
	if err != nil {
		return nil, err
	}
	n.metrics.readThrough.Inc()
	if !found && !create {
		return nil, nil
	}
	if evict && len(s.m) >= n.stripeCap {
		n.evictLocked(s, n.stripeCap-1)
	}
	e := &entry{ck: string(ck), c: r.Counter, updated: r.UpdatedMs, seqs: r.Seqs, ckSeqs: r.Seqs, lastUse: tick}
	s.m[e.ck] = e
	return e, nil
}

// markDirtyLocked queues e for the next Fill.
func (n *Node) markDirtyLocked(s *stripe, e *entry) {
	if !e.dirty {
		e.dirty = true
		if len(s.dirty) == 0 {
			i := s.index
			n.dirtyStripes[i/64].Or(1 << (i % 64))
		}
		s.dirty = append(s.dirty, e)
		n.pending.Add(1)
	}
}

// withSeq returns seqs with origin's sequence raised to seq, as a new slice
// when anything changes (callers share these slices).
func withSeq(seqs []store.OriginSeq, origin crdt.NodeID, seq uint64) []store.OriginSeq {
	i, found := slices.BinarySearchFunc(seqs, origin, func(s store.OriginSeq, o crdt.NodeID) int {
		return cmp.Compare(s.Origin, o)
	})
	if found {
		if seqs[i].Seq >= seq {
			return seqs
		}
		out := slices.Clone(seqs)
		out[i].Seq = seq
		return out
	}
	out := make([]store.OriginSeq, 0, len(seqs)+1)
	out = append(out, seqs[:i]...)
	out = append(out, store.OriginSeq{Origin: origin, Seq: seq})
	return append(out, seqs[i:]...)
}

// seqOf returns origin's sequence in seqs, or 0.
func seqOf(seqs []store.OriginSeq, origin crdt.NodeID) uint64 {
	for _, s := range seqs {
		if s.Origin == origin {
			return s.Seq
		}
	}
	return 0
}
