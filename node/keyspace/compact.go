package keyspace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// The compact tier. A counter that leaves a stripe's map is usually kept in
// memory still, as a packed record: it costs tens of bytes where an Entry
// costs about 240 (a map slot, the struct, a key string and two or three
// heap slices), and the garbage collector never scans it, because the
// records live in chunks outside the Go heap (mmap; see
// compact_alloc_unix.go). A lookup that misses the map tries the tier before
// the key filter and Pebble, and moves the counter back into the map.
//
// Only counters Pebble holds in the same state enter the tier (evictable
// ones), so the tier is a cache of Pebble: a record can be dropped at any
// time, and whatever reads Pebble directly (scans) sees the same state. A
// record leaves when its counter goes back to the map, when the stripe's
// Remove deletes the counter, or, oldest first, when the stripe's tier is
// full. Only the common shape is packed (no reset record, no retired
// generation, a record of at most maxRecord bytes); any other counter is
// evicted to Pebble alone, as before the tier.
//
// A record is
//
//	flags byte (bit 0: dead), uvarint key length, uvarint value length,
//	key: uvarint namespace number, user key bytes,
//	value: uvarint slots, per slot (uvarint node number, P, N),
//	       varint Updated minus the set's base, uvarint seqs, per seq
//	       (uvarint node number, seq).
//
// Namespaces and node ids are numbered by a dictionary shared by the set.
// Records start at multiples of 4 bytes in 64 KiB chunks, at most
// maxChunks of them a stripe. A stripe's index is an open addressing table
// (linear probing, at most 3/4 full) of uint32: the top 8 bits of the key's
// hash, which spare almost every probe a look at a record that is not the
// one, above the record's offset / 4 + 1. The home slot of an entry is
// recomputed from its record's key when the table grows or a deletion
// shifts the following entries back (there are no tombstones). Dead
// records stay in their chunk until the stripe's records are packed again
// (when dead bytes outgrow live ones, or the tier is full).
const (
	chunkShift = 16
	chunkSize  = 1 << chunkShift
	maxChunks  = 1 << (24 + 2 - chunkShift) // offsets / 4 fit in 24 bits: 64 MiB a stripe
	maxRecord  = 512
	tagShift   = 24
	unitMask   = 1<<tagShift - 1
	flagDead   = 1
)

// repackDead is the dead bytes below which a stripe's records are not
// packed again however few are live (a variable for tests).
var repackDead = chunkSize

// dict numbers namespaces and node ids for compact records.
type dict struct {
	ns   numbering[string]
	node numbering[crdt.NodeID]
}

func newDict() *dict { return &dict{} }

// nsLookup returns ns's number, if it has one.
func (d *dict) nsLookup(ns []byte) (uint32, bool) {
	n, ok := d.ns.load().of[string(ns)]
	return n, ok
}

// nsNumber returns ns's number, giving it one.
func (d *dict) nsNumber(ns string) uint32 { return d.ns.number(ns) }

// nodeNumber returns id's number, giving it one.
func (d *dict) nodeNumber(id crdt.NodeID) uint32 { return d.node.number(id) }

// numbering gives keys small numbers in the order they come. It only
// grows (copied on write); readers load it without a lock.
type numbering[K comparable] struct {
	mu  sync.Mutex // serialises writers
	cur atomic.Pointer[numbers[K]]
}

type numbers[K comparable] struct {
	of   map[K]uint32
	keys []K // by number
}

func (m *numbering[K]) load() *numbers[K] {
	if n := m.cur.Load(); n != nil {
		return n
	}
	return &numbers[K]{}
}

func (m *numbering[K]) number(k K) uint32 {
	if n, ok := m.load().of[k]; ok {
		return n
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.load()
	if n, ok := cur.of[k]; ok {
		return n
	}
	next := &numbers[K]{of: make(map[K]uint32, len(cur.of)+1), keys: append(cur.keys[:len(cur.keys):len(cur.keys)], k)}
	for key, n := range cur.of {
		next.of[key] = n
	}
	n := uint32(len(cur.keys))
	next.of[k] = n
	m.cur.Store(next)
	return n
}

// compact is one stripe's compact tier. The stripe's lock guards it.
type compact struct {
	d     *dict
	base  int64 // unix ms; Updated is stored relative to it
	limit int   // most records held; 0 keeps none
	index []uint32
	n     int // records in the index
	// chunks hold the records in the order they were added; used is what
	// the last one holds.
	chunks     [][]byte
	used       int
	live, dead int // bytes of live and dead records
}

var errCompactCorrupt = errors.New("compact record does not decode")

// put packs e's state under ck, and reports whether it did. The caller
// holds the stripe, and e is evictable: Pebble holds this very state.
func (c *compact) put(hash uint64, ck string, e *Entry) bool {
	if c.limit <= 0 || e.C.Reset != nil || e.C.Gen() != 0 {
		return false
	}
	i := strings.IndexByte(ck, 0)
	if i < 0 {
		return false
	}
	nsNum := c.d.nsNumber(ck[:i])
	var kbuf, vbuf [maxRecord]byte
	key := binary.AppendUvarint(kbuf[:0], uint64(nsNum))
	key = append(key, ck[i+1:]...)
	val, ok := c.encodeValue(vbuf[:0], e)
	if !ok {
		return false
	}
	size := 1 + uvarintLen(uint64(len(key))) + uvarintLen(uint64(len(val))) + len(key) + len(val)
	if size > maxRecord || len(key) > maxRecord {
		return false
	}
	if slot, _, found := c.find(hash, key); found {
		c.kill(slot) // not expected: a counter in the map has no record
	}
	if c.n >= c.limit || (len(c.chunks) >= maxChunks && c.used+size > chunkSize) {
		c.repack(c.n - max(c.n/8, 1))
	}
	if (c.n+1)*4 > len(c.index)*3 {
		c.grow()
	}
	if len(c.chunks) == 0 || c.used+size > chunkSize {
		if len(c.chunks) >= maxChunks {
			return false
		}
		ch := allocChunk()
		if ch == nil {
			return false
		}
		c.chunks = append(c.chunks, ch)
		c.used = 0
	}
	off := uint64(len(c.chunks)-1)<<chunkShift | uint64(c.used)
	rec := c.chunks[len(c.chunks)-1][c.used : c.used+size]
	rec[0] = 0
	w := 1 + binary.PutUvarint(rec[1:], uint64(len(key)))
	w += binary.PutUvarint(rec[w:], uint64(len(val)))
	w += copy(rec[w:], key)
	copy(rec[w:], val)
	c.used += (size + 3) &^ 3
	c.live += size
	c.insert(hash, off)
	return true
}

// take returns the state packed under ck and removes the record; found is
// false when the tier does not hold ck. The caller holds the stripe.
func (c *compact) take(hash uint64, ck []byte) (r store.Record, found bool) {
	slot, off, ok := c.findCK(hash, ck)
	if !ok {
		return r, false
	}
	_, val := c.record(off)
	r, err := c.decodeValue(val)
	c.kill(slot)
	if err != nil {
		return store.Record{}, false // read from Pebble instead
	}
	return r, true
}

// remove drops the record of ck, if any. The caller holds the stripe.
func (c *compact) remove(hash uint64, ck []byte) {
	if slot, _, ok := c.findCK(hash, ck); ok {
		c.kill(slot)
	}
}

// findCK is find for a composite key.
func (c *compact) findCK(hash uint64, ck []byte) (slot int, off uint64, found bool) {
	if c.n == 0 {
		return 0, 0, false
	}
	i := bytes.IndexByte(ck, 0)
	if i < 0 {
		return 0, 0, false
	}
	nsNum, ok := c.d.nsLookup(ck[:i])
	if !ok {
		return 0, 0, false
	}
	var kbuf [maxRecord]byte
	if len(ck) > maxRecord {
		return 0, 0, false
	}
	key := binary.AppendUvarint(kbuf[:0], uint64(nsNum))
	key = append(key, ck[i+1:]...)
	return c.find(hash, key)
}

// find returns the index slot and offset of the record of the packed key.
func (c *compact) find(hash uint64, key []byte) (slot int, off uint64, found bool) {
	if c.n == 0 {
		return 0, 0, false
	}
	mask := len(c.index) - 1
	tag := uint32(hash >> 56)
	for i := int(hash) & mask; ; i = (i + 1) & mask {
		e := c.index[i]
		if e == 0 {
			return 0, 0, false
		}
		if e>>tagShift == tag {
			off := offOf(e)
			if k, _ := c.record(off); bytes.Equal(k, key) {
				return i, off, true
			}
		}
	}
}

// offOf returns the record offset of an index entry.
func offOf(e uint32) uint64 { return uint64(e&unitMask-1) << 2 }

// homeOf returns the slot an index entry's key hashes to.
func (c *compact) homeOf(e uint32, mask int) int {
	key, _ := c.record(offOf(e))
	return int(c.hashKey(key)) & mask
}

// hashKey returns the hash of the composite key a packed key stands for:
// the hash the set computes of it (maphash.Bytes of ns, 0, key).
func (c *compact) hashKey(key []byte) uint64 {
	nsNum, n := binary.Uvarint(key)
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(c.d.ns.load().keys[nsNum])
	h.WriteByte(0)
	h.Write(key[n:])
	return h.Sum64()
}

// record returns the key and value of the record at off: slices of chunk
// memory, valid while the caller holds the stripe and adds nothing.
func (c *compact) record(off uint64) (key, val []byte) {
	b := c.chunks[off>>chunkShift][off&(chunkSize-1):]
	klen, n := binary.Uvarint(b[1:])
	vlen, m := binary.Uvarint(b[1+n:])
	h := 1 + n + m
	return b[h : h+int(klen)], b[h+int(klen) : h+int(klen)+int(vlen)]
}

// recordSize returns the bytes of the record at the start of b.
func recordSize(b []byte) int {
	klen, n := binary.Uvarint(b[1:])
	vlen, m := binary.Uvarint(b[1+n:])
	return 1 + n + m + int(klen) + int(vlen)
}

// kill marks the record in index slot i dead and deletes the slot.
func (c *compact) kill(i int) {
	off := offOf(c.index[i])
	b := c.chunks[off>>chunkShift][off&(chunkSize-1):]
	b[0] |= flagDead
	size := recordSize(b)
	c.live -= size
	c.dead += size
	c.deleteSlot(i)
	c.n--
	if c.n == 0 {
		c.release()
	} else if c.dead > c.live && c.dead >= repackDead {
		c.repack(c.n)
	}
}

// insert adds offset off under hash; the table has room.
func (c *compact) insert(hash, off uint64) {
	mask := len(c.index) - 1
	i := int(hash) & mask
	for c.index[i] != 0 {
		i = (i + 1) & mask
	}
	c.index[i] = uint32(hash>>56)<<tagShift | uint32(off>>2+1)
	c.n++
}

// deleteSlot empties slot i, moving back the entries after it that would
// no longer be found (linear probing without tombstones).
func (c *compact) deleteSlot(i int) {
	mask := len(c.index) - 1
	for {
		c.index[i] = 0
		j := i
		for {
			j = (j + 1) & mask
			e := c.index[j]
			if e == 0 {
				return
			}
			home := c.homeOf(e, mask)
			if (j-home)&mask >= (j-i)&mask {
				c.index[i] = e
				i = j
				break
			}
		}
	}
}

// grow doubles the index (or makes the first one).
func (c *compact) grow() {
	size := max(2*len(c.index), 64)
	old := c.index
	c.index = make([]uint32, size)
	mask := size - 1
	for _, e := range old {
		if e == 0 {
			continue
		}
		i := c.homeOf(e, mask)
		for c.index[i] != 0 {
			i = (i + 1) & mask
		}
		c.index[i] = e
	}
}

// repack writes the live records again into fresh chunks, in the order
// they were added, keeping at most keep of them (the newest), and frees
// the old chunks: it drops dead records and, when the tier is full, the
// oldest ones.
func (c *compact) repack(keep int) {
	drop := max(c.n-keep, 0)
	old := c.chunks
	c.chunks, c.used, c.live, c.dead, c.n = nil, 0, 0, 0, 0
	size := 64
	for size*3 < max(keep, 1)*4 {
		size *= 2
	}
	c.index = make([]uint32, size)
	for _, ch := range old {
		for pos := 0; pos < len(ch); {
			size := recordSize(ch[pos:])
			if size <= 3 { // the zero tail of a chunk (a record has a key)
				break
			}
			rec := ch[pos : pos+size]
			pos += (size + 3) &^ 3
			if rec[0]&flagDead != 0 {
				continue
			}
			if drop > 0 {
				drop--
				continue
			}
			if len(c.chunks) == 0 || c.used+size > chunkSize {
				nc := allocChunk()
				if nc == nil {
					continue // dropped: Pebble still holds it
				}
				c.chunks = append(c.chunks, nc)
				c.used = 0
			}
			off := uint64(len(c.chunks)-1)<<chunkShift | uint64(c.used)
			copy(c.chunks[len(c.chunks)-1][c.used:], rec)
			c.used += (size + 3) &^ 3
			c.live += size
			key, _ := c.record(off)
			c.insert(c.hashKey(key), off)
		}
	}
	for _, ch := range old {
		freeChunk(ch)
	}
}

// release frees every chunk of an empty tier.
func (c *compact) release() {
	for _, ch := range c.chunks {
		freeChunk(ch)
	}
	c.chunks, c.used, c.live, c.dead, c.n = nil, 0, 0, 0, 0
	c.index = nil
}

// count returns the records of namespace ns, or all of them for nil.
func (c *compact) count(ns []byte) int {
	if ns == nil || c.n == 0 {
		return c.n
	}
	nsNum, ok := c.d.nsLookup(ns)
	if !ok {
		return 0
	}
	total := 0
	for _, e := range c.index {
		if e == 0 {
			continue
		}
		if key, _ := c.record(offOf(e)); len(key) > 0 {
			if v, _ := binary.Uvarint(key); v == uint64(nsNum) {
				total++
			}
		}
	}
	return total
}

func (c *compact) encodeValue(dst []byte, e *Entry) ([]byte, bool) {
	if len(e.C.Slots) > 16 || len(e.seqs) > 16 {
		return nil, false
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.C.Slots)))
	for _, s := range e.C.Slots {
		dst = binary.AppendUvarint(dst, uint64(c.d.nodeNumber(s.Node)))
		dst = binary.AppendUvarint(dst, s.P)
		dst = binary.AppendUvarint(dst, s.N)
	}
	dst = binary.AppendVarint(dst, e.Updated-c.base)
	dst = binary.AppendUvarint(dst, uint64(len(e.seqs)))
	for _, s := range e.seqs {
		dst = binary.AppendUvarint(dst, uint64(c.d.nodeNumber(s.Origin)))
		dst = binary.AppendUvarint(dst, s.Seq)
	}
	return dst, len(dst) <= maxRecord
}

// decodeValue decodes a packed value into fresh memory.
func (c *compact) decodeValue(b []byte) (store.Record, error) {
	var r store.Record
	nodes := c.d.node.load().keys
	next := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	node := func() (crdt.NodeID, bool) {
		i := next()
		if i >= uint64(len(nodes)) {
			return 0, false
		}
		return nodes[i], true
	}
	ns := next()
	if ns > 16 || b == nil {
		return r, errCompactCorrupt
	}
	if ns > 0 {
		r.Counter.Slots = make([]crdt.Slot, ns)
		for i := range r.Counter.Slots {
			id, ok := node()
			if !ok {
				return r, errCompactCorrupt
			}
			r.Counter.Slots[i] = crdt.Slot{Node: id, P: next(), N: next()}
		}
	}
	upd, n := binary.Varint(b)
	if n <= 0 {
		return r, errCompactCorrupt
	}
	b = b[n:]
	r.UpdatedMs = upd + c.base
	nseq := next()
	if nseq > 16 || b == nil {
		return r, errCompactCorrupt
	}
	if nseq > 0 {
		r.Seqs = make([]store.OriginSeq, nseq)
		for i := range r.Seqs {
			id, ok := node()
			if !ok {
				return r, errCompactCorrupt
			}
			r.Seqs[i] = store.OriginSeq{Origin: id, Seq: next()}
		}
	}
	if b == nil || len(b) != 0 {
		return store.Record{}, errCompactCorrupt
	}
	return r, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
