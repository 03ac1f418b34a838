package store

import (
	"bytes"
	"cmp"
	"math/bits"
	"slices"

	"github.com/countmesh/countmesh/crdt"
)

// checkpointStage holds a checkpoint's writes until they go into its batch,
// in key order.
//
// A checkpoint of many counters is a batch larger than half a memtable,
// which Pebble sorts on its own before it writes it (newFlushableBatch). The
// hot set hands counters out in the order of its hash stripes, so that sort
// did all the work: 11–14 % of the node's CPU under pipelined INCRs of
// random keys, each comparison decoding two keys out of the batch. Here the
// index entries sort as integers and the counter keys as bytes in one
// pointer-free array, and Pebble's sort then finds its input in order (Go's
// pdqsort checks an ordered range in one pass).
//
// Writes to the same key keep the order they were staged in, so the last
// one staged is the one Pebble keeps, as when they went into the batch
// directly.
type checkpointStage struct {
	data     []byte // each counter's key, then its record
	counters []stagedCounter
	index    []stagedIndex
	spare    []stagedIndex // sortIndex's second array
	err      error         // the first refused write; nothing is written then
}

// stagedCounter is a counter key and its record in data. Offsets grow with
// the order of staging, so off also orders writes to the same key.
type stagedCounter struct {
	// abbr is the 8 bytes of the key after the prefix every staged key
	// shares, big endian and padded with zeros: keys whose abbr differ
	// compare as their abbr do, and most comparisons end there.
	abbr       uint64
	off        int
	klen, vlen uint32
}

// stagedIndex is an index entry: a Set of (origin, seq) to the counter key
// at ref in data (without its leading space byte), or a Delete.
type stagedIndex struct {
	origin, seq uint64
	ref         int    // offset of the counter's key in data; -1 for a Delete
	klen        uint32 // length of that key
	ord         uint32 // order of staging
}

// stagedBytesPerCounter is about what a counter of one slot, with its
// update time and index sequence, takes in data: a key of about 20 bytes and
// a record of about 50.
const stagedBytesPerCounter = 80

// newCheckpointStage returns a stage with room for about n counters.
func newCheckpointStage(n int) *checkpointStage {
	st := &checkpointStage{}
	st.reset(n)
	return st
}

// reset empties the stage and makes room for about n counters and a
// quarter more (counters go on changing while the checkpoint collects;
// growing the stage's arrays was 4 % of a node's CPU under pipelined
// INCRs).
func (st *checkpointStage) reset(n int) {
	n += n / 4
	st.err = nil
	if cap(st.counters) < n {
		st.data = make([]byte, 0, n*stagedBytesPerCounter)
		st.counters = make([]stagedCounter, 0, n)
		st.index = make([]stagedIndex, 0, n)
		st.spare = nil
		return
	}
	st.data, st.counters, st.index = st.data[:0], st.counters[:0], st.index[:0]
}

// worthKeeping reports whether the stage's last use took at least a quarter
// of its room: a stage kept for the next checkpoint saves allocating
// (and collecting) its arrays while a burst of writes goes on, and one much
// larger than the checkpoints have become should go.
func (st *checkpointStage) worthKeeping() bool {
	return len(st.counters) >= cap(st.counters)/4
}

// stagedKey is where putRecord staged a counter's key in data.
type stagedKey struct {
	off  int // -1 when the write was refused
	klen uint32
}

// putRecord stages r as the counter ns/key and returns where its key is,
// for putIndex.
func (st *checkpointStage) putRecord(ns, key string, r Record) stagedKey {
	if st.err != nil {
		return stagedKey{off: -1}
	}
	if err := checkNamespace(ns); err != nil {
		st.err = err
		return stagedKey{off: -1}
	}
	off := len(st.data)
	st.data = appendCounterKey(st.data, ns, key)
	klen := len(st.data) - off
	st.data = appendRecord(st.data, r)
	st.counters = append(st.counters, stagedCounter{off: off, klen: uint32(klen), vlen: uint32(len(st.data) - off - klen)})
	return stagedKey{off: off, klen: uint32(klen)}
}

// putIndex stages an index entry from (origin, seq) to the counter whose
// key putRecord staged at k.
func (st *checkpointStage) putIndex(origin crdt.NodeID, seq uint64, k stagedKey) {
	if k.off < 0 {
		return
	}
	st.index = append(st.index, stagedIndex{
		origin: uint64(origin), seq: seq, ref: k.off, klen: k.klen, ord: uint32(len(st.index)),
	})
}

// deleteIndex stages the removal of the index entry (origin, seq).
func (st *checkpointStage) deleteIndex(origin crdt.NodeID, seq uint64) {
	st.index = append(st.index, stagedIndex{origin: uint64(origin), seq: seq, ref: -1, ord: uint32(len(st.index))})
}

// addTo sorts the staged writes and adds them to b: the index entries
// ('a'), then the counters ('c'), each in key order.
func (st *checkpointStage) addTo(b *Batch) error {
	if st.err != nil {
		return st.err
	}
	st.spare = sortIndex(st.index, st.spare)
	data := st.data
	st.abbreviate()
	slices.SortFunc(st.counters, func(x, y stagedCounter) int {
		if x.abbr != y.abbr {
			return cmp.Compare(x.abbr, y.abbr)
		}
		if c := bytes.Compare(data[x.off:x.off+int(x.klen)], data[y.off:y.off+int(y.klen)]); c != 0 {
			return c
		}
		return cmp.Compare(x.off, y.off)
	})
	for _, e := range st.index {
		if e.ref < 0 {
			b.deleteIndexKey(e.origin, e.seq)
			continue
		}
		// The value is the counter key without its space byte: ns 0x00 key.
		b.setIndexKey(e.origin, e.seq, data[e.ref+1:e.ref+int(e.klen)])
	}
	for _, c := range st.counters {
		k := c.off + int(c.klen)
		b.setRaw(data[c.off:k], data[k:k+int(c.vlen)])
	}
	return b.err
}

// abbreviate sets each staged counter's abbr.
func (st *checkpointStage) abbreviate() {
	if len(st.counters) == 0 {
		return
	}
	key := func(c stagedCounter) []byte { return st.data[c.off : c.off+int(c.klen)] }
	// The prefix every key shares is the shortest prefix each shares with
	// the first.
	first := key(st.counters[0])
	common := len(first)
	for _, c := range st.counters[1:] {
		k := key(c)
		n := min(common, len(k))
		i := 0
		for i < n && k[i] == first[i] {
			i++
		}
		common = i
	}
	for i := range st.counters {
		k := key(st.counters[i])
		var a uint64
		for j := range 8 {
			a <<= 8
			if common+j < len(k) {
				a |= uint64(k[common+j])
			}
		}
		st.counters[i].abbr = a
	}
}

// compareIndex orders index entries as their keys do ('a' origin seq, big
// endian), then in the order they were staged.
func compareIndex(x, y stagedIndex) int {
	if c := cmp.Compare(x.origin, y.origin); c != 0 {
		return c
	}
	if c := cmp.Compare(x.seq, y.seq); c != 0 {
		return c
	}
	return cmp.Compare(x.ord, y.ord)
}

// radixOrigins is the most distinct origins sortIndex sorts by radix.
const radixOrigins = 64

// sortIndex sorts a as compareIndex does. A checkpoint's entries come from
// a handful of origins, so it sorts them by seq with a radix sort (11 bits
// a pass, over the span of the seqs present), then by origin with one
// counting pass; both are stable, which keeps writes to the same key in
// the order they were staged. A comparison sort of them was 9 % of
// BenchmarkCheckpoint's CPU; this one is 2 % (5 % of the checkpoints' own,
// in a profile of `-bench Checkpoint -benchtime 5x`).
//
// spare is room for a second array of a's length, which sortIndex returns
// (grown when it was shorter) for the next sort.
func sortIndex(a, spare []stagedIndex) []stagedIndex {
	if len(a) < 1024 {
		slices.SortFunc(a, compareIndex)
		return spare
	}
	var origins []uint64
	lo, hi := a[0].seq, a[0].seq
	for _, e := range a {
		lo, hi = min(lo, e.seq), max(hi, e.seq)
		if len(origins) == 0 || origins[len(origins)-1] != e.origin {
			if !slices.Contains(origins, e.origin) {
				if len(origins) == radixOrigins {
					slices.SortFunc(a, compareIndex)
					return spare
				}
				origins = append(origins, e.origin)
			}
		}
	}
	slices.Sort(origins)
	const digitBits = 11
	const digits = 1 << digitBits
	if cap(spare) < len(a) {
		spare = make([]stagedIndex, len(a), cap(a))
	}
	src, dst := a, spare[:len(a)]
	var pos [digits]int
	scatter := func(digit func(stagedIndex) int) {
		clear(pos[:])
		for _, e := range src {
			pos[digit(e)]++
		}
		sum := 0
		for d, n := range pos {
			pos[d] = sum
			sum += n
		}
		for _, e := range src {
			d := digit(e)
			dst[pos[d]] = e
			pos[d]++
		}
		src, dst = dst, src
	}
	for shift := 0; shift < bits.Len64(hi-lo); shift += digitBits {
		scatter(func(e stagedIndex) int { return int((e.seq - lo) >> shift & (digits - 1)) })
	}
	if len(origins) > 1 {
		scatter(func(e stagedIndex) int {
			i, _ := slices.BinarySearch(origins, e.origin)
			return i
		})
	}
	if &src[0] != &a[0] {
		copy(a, src)
	}
	return spare
}
