package keyspace

import (
	"cmp"
	"hash/maphash"
	mathbits "math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// Entry is one counter in the hot set. Every field is guarded by the lock
// of the stripe that holds the entry.
type Entry struct {
	C       crdt.Counter // merged state
	Updated int64        // unix ms of the last change this node saw; 0 unknown
	Own     bool         // this node changed its own slot since the last Fill

	ck      string // composite key: ns + "\x00" + key
	savedAt uint64 // the checkpoint that last wrote the entry to Pebble
	// seqs holds, per origin, the sequence number of the change that last
	// set that origin's slot; ckSeqs is what the last checkpoint wrote to
	// the (origin, seq) index. Both are replaced, never modified in place,
	// so they may share storage.
	seqs, ckSeqs []store.OriginSeq
	lastUse      uint32 // Set.tick at the last access, for eviction
	dirty        bool   // changed since the last Fill (in Stripe.dirty)
	unsaved      bool   // logged or changed since the last checkpoint (in Stripe.unsaved)
	queued       bool   // in Stripe.clean
	gone         bool   // removed from its stripe (evicted or deleted)
}

// CK returns the entry's composite key.
func (e *Entry) CK() string { return e.ck }

// Seqs returns, per origin, the sequence of the change that last set that
// origin's slot.
func (e *Entry) Seqs() []store.OriginSeq { return e.seqs }

// SeqOf returns the sequence of origin's change that last set its slot, or
// 0.
func (e *Entry) SeqOf(origin crdt.NodeID) uint64 { return store.SeqOf(e.seqs, origin) }

// RaiseSeq records that origin's change seq set its slot. The caller holds
// e's stripe.
func (e *Entry) RaiseSeq(origin crdt.NodeID, seq uint64) {
	// seqs shares its array with ckSeqs from a checkpoint (or a read from
	// the store) until the first raise after it, which copies; ckSeqs is
	// the only other holder of one (the records handed out are encoded
	// before the stripe is unlocked). A raise of a private array is made in
	// place: a hot counter raises its own origin at every commit.
	if len(e.seqs) > 0 && (len(e.ckSeqs) == 0 || &e.seqs[0] != &e.ckSeqs[0]) {
		i, found := slices.BinarySearchFunc(e.seqs, origin, func(s store.OriginSeq, o crdt.NodeID) int {
			return cmp.Compare(s.Origin, o)
		})
		if found {
			e.seqs[i].Seq = max(e.seqs[i].Seq, seq)
			return
		}
	}
	e.seqs = withSeq(e.seqs, origin, seq)
}

// Stripe is one lock stripe of the hot set.
type Stripe struct {
	mu sync.Mutex // guards m, dirty, unsaved and saving, and every entry in m
	m  map[string]*Entry
	// dirty lists the entries changed since the last Fill, in change order.
	dirty []*Entry
	// unsaved lists the entries whose state Pebble does not have yet.
	unsaved []*Entry
	// saving lists the entries the checkpoint in progress writes: Pebble
	// holds their state once it commits, and scans look here until then.
	saving []*Entry
	// clean queues eviction candidates, oldest first: every entry when it
	// is created and again each time a checkpoint saves it. An entry that
	// is gone, changed again, or used in the last tick when its turn
	// comes is skipped (the last one queued again): a CLOCK that costs
	// O(1) per eviction, where sampling the map cost a walk of random
	// entries, most of them not yet evictable while new counters pour in.
	clean     []*Entry
	cleanHead int
	// tier packs counters evicted from m (see compact.go).
	tier compact
	// peak is the most entries m has held since it was last rebuilt: a Go
	// map keeps the room it grew to, so PackIdle rebuilds one that fell to
	// a quarter of it.
	peak  int
	index int     // position in Set.stripes
	_     [8]byte // keep neighbouring stripes' locks off one cache line
}

// Lock locks the stripe.
func (s *Stripe) Lock() { s.mu.Lock() }

// Unlock unlocks the stripe.
func (s *Stripe) Unlock() { s.mu.Unlock() }

// Get returns the entry of ck in memory, or nil. The caller holds s.
func (s *Stripe) Get(ck string) *Entry { return s.m[ck] }

// Remove drops ck from memory, its entry or its packed record. The caller
// holds s, and has checked that an entry in the map is Evictable; a key
// that is not in the map must be removed too before its counter is deleted
// from Pebble, because the compact tier may hold it.
func (s *Stripe) Remove(ck string) {
	if e := s.m[ck]; e != nil {
		e.gone = true
		delete(s.m, ck)
	}
	s.tier.remove(maphash.String(seed, ck), []byte(ck))
}

// Gone reports whether e has left its stripe (evicted or removed): a
// pointer kept across an unlock of the stripe is only still the counter's
// entry while Gone is false. The caller holds e's stripe.
func (e *Entry) Gone() bool { return e.gone }

// Config configures a Set.
type Config struct {
	Store    *store.Store
	Stripes  int // a power of two
	Capacity int // counters in memory before eviction
	// Compact is how many more counters, evicted, stay in memory as
	// packed records (compact.go); 0 keeps none.
	Compact int
	// OnReadThrough and OnEvict, when set, count reads from the store and
	// evictions.
	OnReadThrough, OnEvict func()
}

// Set is the hot set. It is safe for concurrent use.
type Set struct {
	st        *store.Store
	stripes   []Stripe
	stripeCap int // entries per stripe before eviction
	// dirtyStripes has a bit set for every stripe whose dirty list may be
	// non-empty, so that a Drain visits only those.
	dirtyStripes []atomic.Uint64
	tick         atomic.Uint32 // advanced by Tick, for eviction recency
	pending      atomic.Int64  // dirty entries waiting for a Drain
	unsaved      atomic.Int64  // entries waiting for a checkpoint
	saved        atomic.Uint64 // the last checkpoint Pebble holds
	evicted      atomic.Int64  // entries evicted since TakeEvicted
	onRead       func()
	onEvict      func()
	filter       filter // keys Pebble may hold; see seen.go
}

var seed = maphash.MakeSeed()

// New returns an empty hot set.
func New(cfg Config) *Set {
	noop := func() {}
	h := &Set{st: cfg.Store, stripes: make([]Stripe, cfg.Stripes), onRead: cfg.OnReadThrough, onEvict: cfg.OnEvict}
	if h.onRead == nil {
		h.onRead = noop
	}
	if h.onEvict == nil {
		h.onEvict = noop
	}
	h.stripeCap = max(1, (cfg.Capacity+cfg.Stripes-1)/cfg.Stripes)
	// Planned for half as much again as what is on disk, or as what fits in
	// memory up to filterPlanFloor, whichever is more, so that the node can
	// grow a while before the filter adds a layer. Not for the whole
	// of a large cache: a filter costs 1.5 bytes a key it is planned for,
	// resident once keys are added, and a fresh node with room for 12 M
	// counters carried 27 MB of filter for its first million
	// (docs/benchmarks.md, "Memory per counter against Redis").
	var onDisk uint64
	if cfg.Store != nil {
		onDisk = cfg.Store.CounterKeysEstimate()
	}
	inMemory := min(uint64(max(cfg.Capacity, 0)+max(cfg.Compact, 0)), filterPlanFloor)
	h.filter.init(max(onDisk, inMemory) * 3 / 2)
	d := newDict()
	base := time.Now().UnixMilli()
	perStripe := 0
	if cfg.Compact > 0 {
		perStripe = max(1, (cfg.Compact+cfg.Stripes-1)/cfg.Stripes)
	}
	for i := range h.stripes {
		h.stripes[i].m = make(map[string]*Entry)
		h.stripes[i].index = i
		h.stripes[i].tier = compact{d: d, base: base, limit: perStripe}
	}
	h.dirtyStripes = make([]atomic.Uint64, (len(h.stripes)+63)/64)
	return h
}

// NumStripes returns the number of stripes.
func (h *Set) NumStripes() int { return len(h.stripes) }

// Stripe returns stripe i.
func (h *Set) Stripe(i int) *Stripe { return &h.stripes[i] }

// StripeIndex returns the stripe index of a composite key.
func (h *Set) StripeIndex(ck []byte) int {
	return int(maphash.Bytes(seed, anchor(ck)) & uint64(len(h.stripes)-1))
}

// StripeOf returns the stripe of a composite key.
func (h *Set) StripeOf(ck []byte) *Stripe { return &h.stripes[h.StripeIndex(ck)] }

// StripeCap returns how many entries a stripe holds before it evicts.
func (h *Set) StripeCap() int { return h.stripeCap }

// ReleasePacked drops every packed record and gives their chunks back,
// and packs nothing from then on: the chunks live outside the Go heap, so
// a set that is done with must return them (Node.Close calls it).
func (h *Set) ReleasePacked() {
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		s.tier.release()
		s.tier.limit = 0
		s.mu.Unlock()
	}
}

// PackedCount returns the counters held as packed records.
func (h *Set) PackedCount() int {
	total := 0
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		total += s.tier.n
		s.mu.Unlock()
	}
	return total
}

// Bound returns the most counters the set holds in memory once every
// stripe has evicted down to its share: entries and packed records.
func (h *Set) Bound() int { return len(h.stripes) * (h.stripeCap + h.stripes[0].tier.limit) }

// Tick advances the coarse clock of eviction recency (once a second) and
// returns it.
func (h *Set) Tick() uint32 { return h.tick.Add(1) }

// Pending returns the entries waiting for a Drain.
func (h *Set) Pending() int64 { return h.pending.Load() }

// UnsavedCount returns the entries waiting for a checkpoint.
func (h *Set) UnsavedCount() int64 { return h.unsaved.Load() }

// Count counts the counters in memory (entries and packed records) of
// namespace ns, or of every namespace when ns is empty.
func (h *Set) Count(ns string) int {
	prefix := ns + "\x00"
	var nsKey []byte
	if ns != "" {
		nsKey = []byte(ns)
	}
	total := 0
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		total += s.tier.count(nsKey)
		if ns == "" {
			total += len(s.m)
		} else {
			for ck := range s.m {
				if strings.HasPrefix(ck, prefix) {
					total++
				}
			}
		}
		s.mu.Unlock()
	}
	return total
}

// Evictable reports whether e may leave memory: Pebble must hold its state
// (a checkpoint that has committed wrote it), so that a read-through finds
// it there. The caller holds e's stripe.
func (h *Set) Evictable(e *Entry) bool {
	return !e.dirty && !e.unsaved && e.savedAt <= h.saved.Load()
}

// evictLocked removes entries from a stripe until it holds target, taking
// them from the clean queue (see Stripe.clean). A stripe whose candidates
// are all waiting for a checkpoint stays over its share until the next
// insert or the trim after the checkpoint.
func (h *Set) evictLocked(s *Stripe, target int) {
	tick := h.tick.Load()
	// Enough tries to pass over every candidate once (a second chance
	// each) and then take the victims, but never an endless walk.
	limit := len(s.clean) - s.cleanHead + len(s.m) - target
	before := len(s.m)
	defer func() { h.evicted.Add(int64(before - len(s.m))) }()
	for tries := 0; len(s.m) > target && tries < limit; tries++ {
		e := s.popClean()
		if e == nil {
			return
		}
		if e.gone || !h.Evictable(e) {
			// Gone, or changed since it was queued: the checkpoint that
			// saves it queues it again.
			continue
		}
		if e.lastUse == tick {
			// A second chance for an entry in use; it loses its mark,
			// so the next pass takes it unless it is used again.
			e.lastUse = tick - 1
			s.pushClean(e)
			continue
		}
		e.gone = true
		if s.tier.limit > 0 {
			s.tier.put(maphash.String(seed, e.ck), e.ck, e)
		}
		delete(s.m, e.ck)
		h.onEvict()
	}
}

// pushClean queues e as an eviction candidate. The caller holds s.
func (s *Stripe) pushClean(e *Entry) {
	if !e.queued {
		e.queued = true
		s.clean = append(s.clean, e)
	}
}

// popClean returns the oldest eviction candidate, or nil. The caller holds
// s.
func (s *Stripe) popClean() *Entry {
	if s.cleanHead == len(s.clean) {
		return nil
	}
	e := s.clean[s.cleanHead]
	s.clean[s.cleanHead] = nil
	s.cleanHead++
	e.queued = false
	if s.cleanHead >= 1024 && 2*s.cleanHead >= len(s.clean) {
		n := copy(s.clean, s.clean[s.cleanHead:])
		clear(s.clean[n:])
		s.clean = s.clean[:n]
		s.cleanHead = 0
	}
	return e
}

// Lookup returns the entry of the composite key ck (of ns/key), reading it
// through from the store when it is not in memory. With create, a counter
// that does not exist yet gets a new entry; without, nil is returned for it
// (reads of unknown counters do not fill the cache). To make room it may
// evict other entries of the stripe, never the one it returns. The caller
// holds s.
func (h *Set) Lookup(s *Stripe, ck []byte, ns, key string, create bool) (*Entry, error) {
	return h.LookupEvict(s, ck, ns, key, create, true)
}

// LookupEvict is Lookup; without evict it never evicts, for callers that
// hold pointers to other entries of the stripe.
func (h *Set) LookupEvict(s *Stripe, ck []byte, ns, key string, create, evict bool) (*Entry, error) {
	tick := h.tick.Load()
	if e := s.m[string(ck)]; e != nil {
		e.lastUse = tick
		return e, nil
	}
	hash := maphash.Bytes(seed, ck)
	// A packed record is the state Pebble holds, without the read.
	r, packed := s.tier.take(hash, ck)
	switch {
	case packed:
	case !h.filter.absent(hash):
		var found bool
		var err error
		r, found, err = h.st.GetRecord(ns, key)
		if err != nil {
			return nil, err
		}
		h.onRead()
		if !found && !create {
			return nil, nil
		}
	case !create:
		return nil, nil
	}
	// Added before the entry exists, so before any checkpoint can write
	// the key to Pebble.
	h.filter.add(hash)
	if evict && len(s.m) >= h.stripeCap {
		h.evictLocked(s, h.stripeCap-1)
	}
	e := &Entry{ck: string(ck), C: r.Counter, Updated: r.UpdatedMs, seqs: r.Seqs, ckSeqs: r.Seqs, lastUse: tick}
	s.m[e.ck] = e
	s.peak = max(s.peak, len(s.m))
	s.pushClean(e)
	return e, nil
}

// MarkDirty queues e for the next Drain. The caller holds s, e's stripe.
func (h *Set) MarkDirty(s *Stripe, e *Entry) {
	if !e.dirty {
		e.dirty = true
		if len(s.dirty) == 0 {
			i := s.index
			h.dirtyStripes[i/64].Or(1 << (i % 64))
		}
		s.dirty = append(s.dirty, e)
		h.pending.Add(1)
	}
}

// MarkReplayed queues e, merged from the operation log at start, for the
// next checkpoint. The caller holds s, e's stripe.
func (h *Set) MarkReplayed(s *Stripe, e *Entry) {
	if !e.unsaved {
		e.unsaved = true
		s.unsaved = append(s.unsaved, e)
		h.unsaved.Add(1)
	}
}

// Drain hands every dirty entry to fn (under its stripe's lock), in the
// stripes marked dirty, then queues it for the next checkpoint. It returns
// the unsaved count after the drain. The group committer's Fill calls it.
func (h *Set) Drain(fn func(ns, key string, e *Entry)) (unsaved int64) {
	var filled, queued int64
	// A bit is set (under the stripe lock) when a stripe's dirty list
	// becomes non-empty, and cleared here before the list is drained: a
	// change racing with this Drain either is drained now or sets the bit
	// again for the next one.
	for w := range h.dirtyStripes {
		bits := h.dirtyStripes[w].Swap(0)
		for bits != 0 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			bits &= bits - 1
			f, q := h.drainStripe(&h.stripes[i], fn)
			filled += f
			queued += q
		}
	}
	// unsaved first: a checkpoint skips when both read zero, which must
	// not happen while counters move from one to the other.
	unsaved = h.unsaved.Add(queued)
	h.pending.Add(-filled)
	return unsaved
}

func (h *Set) drainStripe(s *Stripe, fn func(ns, key string, e *Entry)) (filled, queued int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.dirty {
		ns, key := Split(e.ck)
		fn(ns, key, e)
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

// Changed implements store.Unsaved.
func (h *Set) Changed() (dirty, unsaved int64) { return h.pending.Load(), h.unsaved.Load() }

// Collect implements store.Unsaved: it hands out every unsaved counter with
// what the last checkpoint indexed of it, and the counters waiting for the
// committer under their indexed sequences (the index moves when the log
// record that gives them their sequence is checkpointed). The unsaved ones
// stay in their stripe's saving list, visible to scans, until Saved.
func (h *Set) Collect(num uint64, put func(ns, key string, r store.Record, indexed []store.OriginSeq)) {
	var saved int64
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		for _, e := range s.unsaved {
			ns, key := Split(e.ck)
			put(ns, key, store.Record{Counter: e.C, UpdatedMs: e.Updated, Seqs: e.seqs}, e.ckSeqs)
			e.ckSeqs = e.seqs
			e.unsaved = false
			e.savedAt = num
		}
		saved += int64(len(s.unsaved))
		s.saving = append(s.saving[:0], s.unsaved...)
		clear(s.unsaved)
		s.unsaved = s.unsaved[:0]
		for _, e := range s.dirty {
			ns, key := Split(e.ck)
			put(ns, key, store.Record{Counter: e.C, UpdatedMs: e.Updated, Seqs: e.ckSeqs}, e.ckSeqs)
		}
		s.mu.Unlock()
	}
	h.unsaved.Add(-saved)
}

// Saved implements store.Unsaved: it ends the saving lists; when the
// checkpoint failed, their counters are unsaved again, for the next one.
func (h *Set) Saved(num uint64, err error) {
	if err == nil {
		// Before the entries are queued for eviction: one taken from the
		// queue while Pebble's checkpoint number still lagged would look
		// unevictable and leave the queue for good.
		h.saved.Store(num)
	}
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		for _, e := range s.saving {
			if err != nil {
				h.MarkReplayed(s, e)
			} else {
				s.pushClean(e)
			}
		}
		clear(s.saving)
		s.saving = s.saving[:0]
		s.mu.Unlock()
	}
	if err == nil {
		h.trim()
	}
}

// trim evicts from every stripe over its share the entries a checkpoint
// has made evictable. Eviction otherwise happens only when an entry is
// added, so after a burst of new counters that were not yet saved (and
// could not leave) the set would stay over its capacity until the next
// new counter came to each stripe.
func (h *Set) trim() {
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		if len(s.m) > h.stripeCap {
			h.evictLocked(s, h.stripeCap)
		}
		s.mu.Unlock()
	}
}

// PackIdle packs the entries that have not been used for idle ticks and
// that Pebble holds, whatever room the stripes have: the entries are the
// counters in use, the packed records everything else the cache holds. It
// does nothing for a set without a compact tier. Each stripe's clean queue
// is walked once, under the stripe's lock, and loses its departed entries
// on the way (a set that never fills its stripes never pops them).
func (h *Set) PackIdle(idle uint32) {
	if h.stripes[0].tier.limit <= 0 {
		return
	}
	tick := h.tick.Load()
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		packed := 0
		kept := s.clean[:0] // written behind the read position
		for _, e := range s.clean[s.cleanHead:] {
			if e.gone {
				e.queued = false
				continue
			}
			if tick-e.lastUse >= idle && h.Evictable(e) && s.tier.put(maphash.String(seed, e.ck), e.ck, e) {
				e.gone, e.queued = true, false
				delete(s.m, e.ck)
				packed++
				continue
			}
			kept = append(kept, e)
		}
		clear(s.clean[len(kept):])
		s.clean, s.cleanHead = kept, 0
		if s.peak >= 1024 && len(s.m) <= s.peak/4 {
			// After a burst: give back the room of the map and the queue.
			m := make(map[string]*Entry, len(s.m)) // maps.Clone keeps the room
			for ck, e := range s.m {
				m[ck] = e
			}
			s.m = m
			s.clean = slices.Clone(s.clean)
			s.peak = len(s.m)
		}
		s.mu.Unlock()
		for range packed {
			h.onEvict()
		}
		h.evicted.Add(int64(packed))
	}
}

// scratchKeep is the capacity of a stripe's empty change list that
// DropScratch leaves alone.
const scratchKeep = 256

// DropScratch lets go of the room the stripes' change lists grew to in a
// burst: a list of a million new counters' entries, spread over the
// stripes, keeps about 8 MB of pointer arrays after it is drained, and the
// next burst grows them again. Lists in use (not empty) are left as they
// are. The node calls it when a burst is over, before it returns free
// memory to the kernel.
func (h *Set) DropScratch() {
	drop := func(l []*Entry) []*Entry {
		if len(l) == 0 && cap(l) > scratchKeep {
			return nil
		}
		return l
	}
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		s.dirty = drop(s.dirty)
		s.unsaved = drop(s.unsaved)
		s.saving = drop(s.saving)
		s.mu.Unlock()
	}
}

// TakeEvicted returns how many entries were evicted (or packed) since the
// last call.
func (h *Set) TakeEvicted() int64 { return h.evicted.Swap(0) }

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
