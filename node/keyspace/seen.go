package keyspace

import (
	"math/bits"
	"sync/atomic"
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
// It is a blocked Bloom filter: each key sets k bits of one 64-bit word, so
// a query reads one cache line. Words are updated atomically, so adds and
// queries need no lock.
type seen struct {
	words    []atomic.Uint64
	mask     uint64
	complete atomic.Bool
	added    atomic.Uint64 // keys added (with repeats), for capacity logs
}

const (
	seenBitsPerKey = 16
	seenProbes     = 5
)

// newSeen returns a filter planned for capacity keys.
func newSeen(capacity uint64) *seen {
	words := max(uint64(1024), capacity*seenBitsPerKey/64)
	words = 1 << bits.Len64(words-1) // a power of two
	return &seen{words: make([]atomic.Uint64, words), mask: words - 1}
}

// bitsOf returns the word index and the bit mask of a key's hash.
func (f *seen) bitsOf(h uint64) (int, uint64) {
	w := int(h & f.mask)
	// The remaining bits pick the k bit positions, 6 bits each.
	h = bits.RotateLeft64(h, -32) ^ (h >> 13)
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
