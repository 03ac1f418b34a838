package keyspace

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// seen is a Bloom filter of every composite key this process has seen
// stored or created: the keys Pebble held when the filter was built (one
// scan, in the background, after start), and every key that got a hot-set
// entry since the filter was created. Once the scan is complete, a key the
// filter has never seen is not in Pebble, so the hot set creates its entry
// without a Pebble point read: writing a counter never seen costs what
// writing a cached one does.
//
// Every record Pebble holds is written by a checkpoint from a hot-set entry,
// and every entry is created by LookupEvict, which adds its key first; the
// keys already on disk at start are added by the scan. So, once complete,
// the filter has no false negatives; false positives (a few per cent when
// it holds its planned capacity, more beyond it) only cost the point read
// that every lookup paid before.
//
// It is a blocked Bloom filter: each key sets 5 bits of one 64-bit word, so
// a query reads one cache line; at 12 bits a key (its plan), about 1 % of
// the keys it never saw look seen. Words are updated atomically, so adds and
// queries need no lock.
type seen struct {
	words    []atomic.Uint64
	complete atomic.Bool
	added    atomic.Uint64 // keys added (with repeats), for capacity logs
}

const (
	seenBitsPerKey = 12
	seenProbes     = 5
	// filterPlanFloor bounds what a new Set plans its filter for from its
	// capacity alone; past it the filter grows with the keys it takes.
	filterPlanFloor = 1 << 20
)

// newSeen returns a filter planned for capacity keys.
func newSeen(capacity uint64) *seen {
	words := min(max(uint64(1024), capacity*seenBitsPerKey/64), 1<<32-1)
	return &seen{words: make([]atomic.Uint64, words)}
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

// absent reports whether the key of hash h is surely not in Pebble: the
// filter is complete and has never seen it.
func (f *seen) absent(h uint64) bool {
	if !f.complete.Load() {
		return false
	}
	w, m := f.bitsOf(h)
	return f.words[w].Load()&m != m
}

// capacity returns the number of keys the filter was planned for.
func (f *seen) capacity() uint64 { return uint64(len(f.words)) * 64 / seenBitsPerKey }

// filter is the Set's key filter: the current seen, and the bigger one
// being built when the current holds more keys than it was planned for.
type filter struct {
	cur  atomic.Pointer[seen]
	next atomic.Pointer[seen] // nil unless a bigger filter is being built
	grow chan struct{}        // asks RunFilter for a bigger filter
}

func (f *filter) init(capacity uint64) {
	f.cur.Store(newSeen(capacity))
	f.grow = make(chan struct{}, 1)
}

func (f *filter) absent(h uint64) bool { return f.cur.Load().absent(h) }

// add adds a key's hash to the current filter and to the one being built.
// The caller holds the key's stripe (see RunFilter). It reads next before
// cur: RunFilter stores cur before it clears next, so an add that finds
// next cleared finds the new cur; read the other way round, an add could
// take the old cur, then find next cleared by a swap in between, and leave
// the key out of the filter in use.
func (f *filter) add(h uint64) {
	if nx := f.next.Load(); nx != nil {
		nx.add(h)
	}
	cur := f.cur.Load()
	cur.add(h)
	if cur.added.Load() > cur.capacity() {
		select {
		case f.grow <- struct{}{}:
		default:
		}
	}
}

// RunFilter builds the key filter: it adds every counter key Pebble holds
// to it, then marks it complete, from which point a lookup of a key the
// filter has never seen skips the Pebble point read. Then, whenever the
// filter has taken more keys than it was planned for, it builds one planned
// for twice as many and swaps it in. It returns when stop is closed; built,
// when set, is called after each build ends with the keys it scanned, the
// keys the filter is planned for, whether the build completed (false when
// stop ended it), and the error that ended it, if any (the filter in use
// is then kept: an incomplete first one keeps every lookup reading Pebble,
// a full one only costs more false positives). The node runs it in the
// background from its start.
func (h *Set) RunFilter(stop <-chan struct{}, built func(scanned, planned uint64, took time.Duration, complete bool, err error)) {
	if built == nil {
		built = func(uint64, uint64, time.Duration, bool, error) {}
	}
	t0 := time.Now()
	f := h.filter.cur.Load()
	n, err := h.scanInto(f, stop)
	if err != nil || stopped(stop) {
		built(n, f.capacity(), time.Since(t0), false, err)
		return
	}
	f.complete.Store(true)
	built(n, f.capacity(), time.Since(t0), true, nil)
	for {
		select {
		case <-stop:
			return
		case <-h.filter.grow:
		}
		cur := h.filter.cur.Load()
		if cur.added.Load() <= cur.capacity() {
			continue
		}
		t0 = time.Now()
		nx := newSeen(2 * max(cur.added.Load(), h.st.CounterKeysEstimate()))
		h.filter.next.Store(nx)
		// Every key created from now on is added to nx (add reads next
		// under the key's stripe lock, after this store). The ones created
		// before are in memory, added here, or were evicted, which needs
		// Pebble to hold them before the scan below starts.
		for i := range h.stripes {
			s := &h.stripes[i]
			s.mu.Lock()
			for ck := range s.m {
				nx.add(maphash.String(seed, ck))
			}
			s.mu.Unlock()
		}
		n, err := h.scanInto(nx, stop)
		if err != nil || stopped(stop) {
			h.filter.next.Store(nil)
			built(n, nx.capacity(), time.Since(t0), false, err)
			if err == nil {
				return
			}
			continue
		}
		nx.complete.Store(true)
		h.filter.cur.Store(nx)
		h.filter.next.Store(nil)
		built(n, nx.capacity(), time.Since(t0), true, nil)
	}
}

// scanInto adds every counter key Pebble holds to f, in chunks, and stops
// early when stop is closed. It returns the keys scanned.
func (h *Set) scanInto(f *seen, stop <-chan struct{}) (keys uint64, err error) {
	err = h.st.ScanCounterKeys(100_000, func(ck []byte) bool {
		keys++
		if keys%100_000 == 0 && stopped(stop) {
			return false
		}
		f.add(maphash.Bytes(seed, ck))
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

// FilterStats returns the keys the key filter in use was planned for and
// how many adds it took.
func (h *Set) FilterStats() (planned, added uint64) {
	f := h.filter.cur.Load()
	return f.capacity(), f.added.Load()
}

// FilterComplete reports whether the key filter in use is complete.
func (h *Set) FilterComplete() bool { return h.filter.cur.Load().complete.Load() }

// ForgetFilterForTest marks the key filter in use incomplete again, so that
// every lookup reads Pebble as before the filter: for benchmarks that
// compare the two.
func (h *Set) ForgetFilterForTest() { h.filter.cur.Load().complete.Store(false) }
