package keyspace

import (
	"hash/maphash"
	"slices"
	"sync/atomic"
	"time"
)

// seen is one layer of the key filter (below): a Bloom filter of composite
// keys this process has seen stored or created.
//
// It is a blocked Bloom filter: each key sets 5 bits of one 64-bit word, so
// a query reads one cache line; at 12 bits a key (its plan), about 1 % of
// the keys it never saw look seen, at 16 bits fewer. Words are
// updated atomically, so adds and queries need no lock.
type seen struct {
	words      []atomic.Uint64
	bitsPerKey uint64
	added      atomic.Uint64 // keys added (with repeats), for capacity logs
}

const (
	// seenBitsPerKey is the plan of a filter's first layer, grownBitsPerKey
	// that of the layers added as it grows: a lookup of a key never seen
	// is a false positive if any layer takes it for seen, so the layers
	// that make the filter's length pay for being tighter.
	seenBitsPerKey  = 12
	grownBitsPerKey = 16
	seenProbes      = 5
	// filterPlanFloor bounds what a new Set plans its filter for from its
	// capacity alone; past it the filter grows with the keys it takes.
	filterPlanFloor = 1 << 20
)

// newSeen returns a filter planned for capacity keys at bitsPerKey bits a
// key.
func newSeen(capacity, bitsPerKey uint64) *seen {
	words := min(max(uint64(1024), (capacity*bitsPerKey+63)/64), 1<<32-1)
	return &seen{words: make([]atomic.Uint64, words), bitsPerKey: bitsPerKey}
}

// bitsOf returns the word index and the bit mask of a key's hash: the low
// 32 bits pick the word (scaled to the filter's size, which need not be a
// power of two), the high 32 the bit positions, 6 bits each.
func (f *seen) bitsOf(h uint64) (int, uint64) {
	w := int(uint64(uint32(h)) * uint64(len(f.words)) >> 32)
	h >>= 32
	var m uint64
	for range seenProbes {
		m |= 1 << (h & 63)
		h >>= 6
	}
	return w, m
}

func (f *seen) add(h uint64) {
	w, m := f.bitsOf(h)
	if f.words[w].Load()&m != m {
		f.words[w].Or(m)
	}
	f.added.Add(1)
}

// has reports whether the key of hash h may have been added.
func (f *seen) has(h uint64) bool {
	w, m := f.bitsOf(h)
	return f.words[w].Load()&m == m
}

// capacity returns the number of keys the filter was planned for.
func (f *seen) capacity() uint64 { return uint64(len(f.words)) * 64 / f.bitsPerKey }

// filter is the Set's key filter: every composite key this process has seen
// stored or created, that is the keys Pebble held when the filter was built
// (one scan, in the background, after start) and every key that got a
// hot-set entry since. Once the scan is complete, a key the filter has
// never seen is not in Pebble, so the hot set creates its entry without a
// Pebble point read: writing a counter never seen costs what writing a
// cached one does.
//
// Every record Pebble holds is written by a checkpoint from a hot-set entry,
// and every entry is created by LookupEvict, which adds its key first; the
// keys already on disk at start are added by the scan. So, once complete,
// the filter has no false negatives; false positives only cost the point
// read that every lookup paid before.
//
// It grows in layers (a scalable Bloom filter): adds go to the newest
// layer, and a key is seen when any layer has seen it. When the newest
// holds more keys than it was planned for, RunFilter adds a layer planned
// for as many keys as all the layers before it, so the plan doubles. Layers
// are never removed or rebuilt, so growing needs no scan of Pebble: a
// rebuild from a scan at each doubling used to read the whole store again
// (109 s for 100 M keys) and left its blocks in Pebble's cache, 200 MB of
// resident memory after 10,000,000 new counters (docs/benchmarks.md,
// "The key filter grows in layers"). The price is in the misses: a lookup
// of a key never seen reads one word of each layer, and each full layer
// adds its false positives (about 1 % for the first, less for the layers
// added, which are planned tighter for that: 4 % for seven layers in
// TestFilterGrowsWithoutReadingPebble); a node that grew from the floor to
// 100 M keys holds 8 layers. A restart scans Pebble into a single
// layer planned for what it holds.
type filter struct {
	layers   atomic.Pointer[[]*seen] // oldest first, never empty; replaced whole, never changed
	complete atomic.Bool             // the start's scan is done
	grow     chan struct{}           // asks RunFilter for a new layer
}

func (f *filter) init(capacity uint64) {
	f.layers.Store(&[]*seen{newSeen(capacity, seenBitsPerKey)})
	f.complete.Store(false)
	f.grow = make(chan struct{}, 1)
}

// absent reports whether the key of hash h is surely not in Pebble: the
// filter is complete and no layer has seen it.
func (f *filter) absent(h uint64) bool {
	if !f.complete.Load() {
		return false
	}
	for _, l := range *f.layers.Load() {
		if l.has(h) {
			return false
		}
	}
	return true
}

// add adds a key's hash to the newest layer, and asks for a new one when
// that layer holds more keys than it was planned for. An add that loaded
// the layers just before a new one was added lands in the layer before it,
// which stays: the key is seen either way.
func (f *filter) add(h uint64) {
	ls := *f.layers.Load()
	last := ls[len(ls)-1]
	last.add(h)
	if last.added.Load() > last.capacity() {
		select {
		case f.grow <- struct{}{}:
		default:
		}
	}
}

// growIfFull adds a layer planned for as many keys as all the others when
// the newest holds more than it was planned for. Only RunFilter's
// goroutine calls it. It returns the layers and the keys planned for, and
// whether it grew.
func (f *filter) growIfFull() (layers int, planned uint64, grew bool) {
	ls := *f.layers.Load()
	planned = f.planned(ls)
	last := ls[len(ls)-1]
	if last.added.Load() <= last.capacity() {
		return len(ls), planned, false
	}
	nls := append(slices.Clip(ls), newSeen(planned, grownBitsPerKey))
	f.layers.Store(&nls)
	return len(nls), f.planned(nls), true
}

// planned returns the keys the layers were planned for, together.
func (*filter) planned(ls []*seen) uint64 {
	var n uint64
	for _, l := range ls {
		n += l.capacity()
	}
	return n
}

// RunFilter builds the key filter: it adds every counter key Pebble holds
// to it, then marks it complete, from which point a lookup of a key the
// filter has never seen skips the Pebble point read. built, when set, is
// called when the build ends with the keys it scanned, the keys the filter
// is planned for, whether the build completed (false when stop ended it),
// and the error that ended it, if any (an incomplete filter keeps every
// lookup reading Pebble). Then, until stop is closed, it adds a layer
// whenever the newest is full (also during the scan), and calls grew, when
// set, with the layers and the keys they are planned for. The node runs it
// in the background from its start.
func (h *Set) RunFilter(stop <-chan struct{},
	built func(scanned, planned uint64, took time.Duration, complete bool, err error),
	grew func(layers int, planned uint64)) {
	if built == nil {
		built = func(uint64, uint64, time.Duration, bool, error) {}
	}
	if grew == nil {
		grew = func(int, uint64) {}
	}
	growIfFull := func() {
		if layers, planned, ok := h.filter.growIfFull(); ok {
			grew(layers, planned)
		}
	}
	t0 := time.Now()
	n, err := h.scanInto(stop, growIfFull)
	growIfFull()
	planned := h.filter.planned(*h.filter.layers.Load())
	if err != nil || stopped(stop) {
		built(n, planned, time.Since(t0), false, err)
		return
	}
	h.filter.complete.Store(true)
	built(n, planned, time.Since(t0), true, nil)
	for {
		select {
		case <-stop:
			return
		case <-h.filter.grow:
			growIfFull()
		}
	}
}

// scanInto adds every counter key Pebble holds to the filter, in chunks,
// calling every (which may add a layer) and stopping early when stop is
// closed every 100,000 keys. It returns the keys scanned.
func (h *Set) scanInto(stop <-chan struct{}, every func()) (keys uint64, err error) {
	err = h.st.ScanCounterKeys(100_000, func(ck []byte) bool {
		keys++
		if keys%100_000 == 0 {
			if stopped(stop) {
				return false
			}
			every()
		}
		h.filter.add(maphash.Bytes(seed, ck))
		return true
	})
	return keys, err
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// FilterStats returns the keys the key filter's layers were planned for,
// how many adds they took, and how many layers there are.
func (h *Set) FilterStats() (planned, added uint64, layers int) {
	ls := *h.filter.layers.Load()
	for _, l := range ls {
		added += l.added.Load()
	}
	return h.filter.planned(ls), added, len(ls)
}

// FilterComplete reports whether the key filter is complete.
func (h *Set) FilterComplete() bool { return h.filter.complete.Load() }

// ForgetFilterForTest marks the key filter incomplete again, so that every
// lookup reads Pebble as before the filter: for benchmarks that compare the
// two.
func (h *Set) ForgetFilterForTest() { h.filter.complete.Store(false) }
