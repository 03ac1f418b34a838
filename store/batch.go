package store

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/countmesh/countmesh/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

var errBatchCommitted = errors.New("store: batch already committed; use a new batch")

// Batch collects writes that commit atomically. Values are encoded when
// added, so the caller may change them afterwards. A Batch is not safe for
// concurrent use; it is committed at most once and must be closed.
type Batch struct {
	s  *Store
	pb *pebble.Batch // nil after Close, or when the store was closed
	sc *scratch      // nil after Close
	n  int
	// log is the operation-log payload, written to the log (not to Pebble)
	// on Commit; nil when the batch has none.
	log []byte
	// err is the first error of a method without an error result
	// (PutCounter, DeleteCounter); Commit returns it and writes nothing.
	err       error
	committed bool
}

// scratch holds the reusable buffers of a Batch.
type scratch struct {
	enc *counterEncoder
	key []byte
	val []byte // an index entry's value (Set copies it into the batch)
}

var scratchPool = sync.Pool{New: func() any { return &scratch{enc: newCounterEncoder()} }}

// NewBatch returns an empty batch. On a closed store the batch's Commit
// returns ErrClosed.
func (s *Store) NewBatch() *Batch { return s.NewBatchSized(0) }

// NewBatchSized is NewBatch with room for about size bytes of writes, so
// that a large batch (a checkpoint's) does not grow by copying.
func (s *Store) NewBatchSized(size int) *Batch {
	b := &Batch{s: s}
	if err := s.readLock(); err != nil {
		b.err = err
		return b
	}
	if size > 0 {
		b.pb = s.db.NewBatchWithSize(size)
	} else {
		b.pb = s.db.NewBatch()
	}
	s.mu.RUnlock()
	b.sc = scratchPool.Get().(*scratch)
	return b
}

// usable reports whether a write may be added.
func (b *Batch) usable() bool { return b.err == nil && b.pb != nil && !b.committed }

// PutCounter writes c as the counter ns/key.
func (b *Batch) PutCounter(ns, key string, c crdt.Counter) {
	b.PutRecord(ns, key, Record{Counter: c})
}

// PutRecord writes r as the counter ns/key.
func (b *Batch) PutRecord(ns, key string, r Record) {
	if !b.usable() {
		return
	}
	if err := checkNamespace(ns); err != nil {
		b.err = err
		return
	}
	b.sc.key = appendCounterKey(b.sc.key[:0], ns, key)
	// Set copies key and value into the batch.
	_ = b.pb.Set(b.sc.key, b.sc.enc.encodeRecord(r), nil)
	b.n++
}

// DeleteCounter removes the counter ns/key. (A user-facing delete is a
// crdt reset with Deleted set, stored with PutCounter; this removes the
// record itself, e.g. once a deleted counter's tombstone is no longer
// needed.)
func (b *Batch) DeleteCounter(ns, key string) {
	if !b.usable() {
		return
	}
	if err := checkNamespace(ns); err != nil {
		b.err = err
		return
	}
	b.sc.key = appendCounterKey(b.sc.key[:0], ns, key)
	_ = b.pb.Delete(b.sc.key, nil)
	b.n++
}

// DeleteCounterRange removes every counter of ns whose key k satisfies
// from <= k < to, with one Pebble range tombstone: the cost does not depend
// on how many counters the range holds (time buckets past their retention
// are dropped this way).
func (b *Batch) DeleteCounterRange(ns, from, to string) {
	if !b.usable() {
		return
	}
	if err := checkNamespace(ns); err != nil {
		b.err = err
		return
	}
	if from >= to {
		return
	}
	_ = b.pb.DeleteRange(appendCounterKey(nil, ns, from), appendCounterKey(nil, ns, to), nil)
	b.n++
}

// PutNamespace writes the msgpack encoding of v as the config of ns.
func (b *Batch) PutNamespace(ns string, v any) error {
	if err := checkNamespace(ns); err != nil {
		return err
	}
	return b.putMsgpack(appendNamespaceKey(b.keyBuf(), ns), v, "namespace "+ns)
}

// PutMeta writes the msgpack encoding of v as the meta value name.
func (b *Batch) PutMeta(name string, v any) error {
	return b.putMsgpack(appendMetaKey(b.keyBuf(), name), v, "meta "+name)
}

func (b *Batch) keyBuf() []byte {
	if b.sc == nil {
		return nil
	}
	return b.sc.key[:0]
}

func (b *Batch) putMsgpack(key []byte, v any, what string) error {
	if !b.usable() {
		if b.err != nil {
			return b.err
		}
		if b.committed {
			return errBatchCommitted
		}
		return ErrClosed
	}
	b.sc.key = key
	data, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", what, err)
	}
	_ = b.pb.Set(key, data, nil)
	b.n++
	return nil
}

// PutIndex records that origin's change seq set a slot of ns/key.
func (b *Batch) PutIndex(origin crdt.NodeID, seq uint64, ns, key string) {
	if !b.usable() {
		return
	}
	b.sc.val = append(append(append(b.sc.val[:0], ns...), sep), key...)
	b.setIndexKey(uint64(origin), seq, b.sc.val)
}

// setIndexKey sets the index entry (origin, seq) to nsKey (ns 0x00 key).
func (b *Batch) setIndexKey(origin, seq uint64, nsKey []byte) {
	if !b.usable() {
		return
	}
	b.sc.key = appendIndexKey(b.keyBuf(), origin, seq)
	_ = b.pb.Set(b.sc.key, nsKey, nil)
	b.n++
}

// DeleteIndex removes an index entry superseded by a later change.
func (b *Batch) DeleteIndex(origin crdt.NodeID, seq uint64) {
	b.deleteIndexKey(uint64(origin), seq)
}

func (b *Batch) deleteIndexKey(origin, seq uint64) {
	if !b.usable() {
		return
	}
	b.sc.key = appendIndexKey(b.keyBuf(), origin, seq)
	_ = b.pb.Delete(b.sc.key, nil)
	b.n++
}

// setRaw sets key, already in the store's layout, to value.
func (b *Batch) setRaw(key, value []byte) {
	if !b.usable() {
		return
	}
	_ = b.pb.Set(key, value, nil) // Set copies both
	b.n++
}

// memtableBytes estimates what the batch's Pebble writes take in a
// memtable: their bytes, and a skiplist node of the greatest height each,
// as Pebble counts them when it decides whether a batch is large
// (arenaskl.MaxNodeSize: 195 bytes besides the key and value), never less.
// Read it before Commit: committing a large batch hands its data to Pebble.
func (b *Batch) memtableBytes() int {
	if b.pb == nil {
		return 0
	}
	return b.pb.Len() + int(b.pb.Count())*memtableNodeBytes
}

// memtableNodeBytes bounds a skiplist node's size in a Pebble memtable,
// besides its key and value.
const memtableNodeBytes = 200

// Len returns the number of writes in the batch (an operation-log record
// counts as one).
func (b *Batch) Len() int {
	if b.log != nil {
		return b.n + 1
	}
	return b.n
}

// AppendLog sets the batch's operation-log record (see ReplayLog): Commit
// appends it to the log instead of writing it to Pebble. A batch holds one
// record at most; appending again extends it. The payload is copied.
func (b *Batch) AppendLog(payload []byte) {
	if !b.usable() {
		return
	}
	if b.log == nil {
		b.log = make([]byte, 0, len(payload))
	}
	b.log = append(b.log, payload...)
}

// Commit applies the batch atomically. With sync it returns after the WAL
// holding the batch is fsynced; without, the batch is visible to reads at
// once and reaches the disk with a later fsync (a sync commit, a Committer's
// WAL sync, or Close). A batch commits at most once.
func (b *Batch) Commit(sync bool) error {
	switch {
	case b.err != nil:
		return b.err
	case b.committed:
		return errBatchCommitted
	case b.pb == nil:
		return ErrClosed
	}
	b.committed = true
	if b.n > 0 || b.log == nil {
		if err := b.s.apply(b.pb, sync); err != nil {
			return err
		}
	}
	if b.log != nil {
		return b.s.appendLog(b.log, sync)
	}
	return nil
}

// Close releases the batch; a batch not committed is dropped. Close is
// idempotent.
func (b *Batch) Close() {
	if b.pb != nil {
		_ = b.pb.Close()
		b.pb = nil
	}
	if b.sc != nil {
		if cap(b.sc.key) <= 4096 && cap(b.sc.val) <= 4096 && cap(b.sc.enc.buf) <= 64<<10 {
			scratchPool.Put(b.sc)
		}
		b.sc = nil
	}
}
