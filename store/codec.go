package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/vmihailenco/msgpack/v5"
)

// counterFormatV1 is the version that leads every encoded counter.
//
// Version 1 is a msgpack array, integers in their shortest form:
//
//	[1, [node, p, n, node, p, n, ...]]                     no reset
//	[1, [slots...], [epoch, node, value, deleted, [floor]]] with a reset
//	[1, [slots...], reset-or-nil, updatedMs]              with the time of the last change
//	[1, [slots...], reset-or-nil, updatedMs, [origin, seq, ...]]  with replication sequences
//
// slots and floor are flat triples sorted by node. A decoder skips array
// elements it does not know at the end of the outer array and of the reset
// array, so that fields can be appended within version 1; anything else
// needs a new version number.
const counterFormatV1 = 1

// counterEncoder encodes counters into a reused buffer without reflection.
// It is not safe for concurrent use.
type counterEncoder struct {
	buf []byte
}

func newCounterEncoder() *counterEncoder { return &counterEncoder{} }

// encode returns c's encoding. The result is valid until the next call.
func (e *counterEncoder) encode(c crdt.Counter) []byte {
	return e.encodeRecord(Record{Counter: c})
}

// encodeRecord returns the encoding of r. The result is valid until the
// next call.
func (e *counterEncoder) encodeRecord(r Record) []byte {
	e.buf = appendRecord(e.buf[:0], r)
	return e.buf
}

// encoderPool holds counterEncoders for Batches and EncodeCounter.
var encoderPool = sync.Pool{New: func() any { return newCounterEncoder() }}

// EncodeCounter appends c's stored encoding to dst. Package node may use it
// to size or checksum counters; the store encodes by itself on PutCounter.
func EncodeCounter(dst []byte, c crdt.Counter) []byte {
	e := encoderPool.Get().(*counterEncoder)
	dst = append(dst, e.encode(c)...)
	encoderPool.Put(e)
	return dst
}

// counterDecoder decodes counters without reflection.
type counterDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var decoderPool = sync.Pool{New: func() any {
	d := &counterDecoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

// DecodeCounter decodes a counter encoded by EncodeCounter (or stored by
// PutCounter). The result shares no memory with data. An error wraps
// ErrCorrupt.
func DecodeCounter(data []byte) (crdt.Counter, error) {
	r, err := DecodeRecord(data)
	return r.Counter, err
}

// Record is a stored counter with the time of its last change and, per
// origin node, the sequence number of the change that last set that node's
// slot (replication's (origin, seq) index points at it).
type Record struct {
	Counter   crdt.Counter
	UpdatedMs int64       // unix milliseconds; 0 when unknown
	Seqs      []OriginSeq // sorted by Origin
}

// OriginSeq is one origin's sequence number.
type OriginSeq struct {
	Origin crdt.NodeID
	Seq    uint64
}

// DecodeRecord decodes a record stored by PutRecord or PutCounter. The
// result shares no memory with data. An error wraps ErrCorrupt.
func DecodeRecord(data []byte) (Record, error) {
	d := decoderPool.Get().(*counterDecoder)
	d.r.Reset(data)
	d.dec.Reset(&d.r)
	r, err := d.decode(len(data))
	if err == nil && d.r.Len() != 0 {
		err = fmt.Errorf("%d trailing bytes", d.r.Len())
	}
	d.r.Reset(nil)
	decoderPool.Put(d)
	if err != nil {
		return Record{}, kinderr.New(ErrCorrupt, err, "counter: %v", err)
	}
	return r, nil
}

func (d *counterDecoder) decode(size int) (Record, error) {
	var r Record
	c := &r.Counter
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		return r, err
	}
	if n < 2 {
		return r, fmt.Errorf("outer array of %d elements, want at least 2", n)
	}
	v, err := d.dec.DecodeUint64()
	if err != nil {
		return r, err
	}
	if v != counterFormatV1 {
		return r, fmt.Errorf("unknown format version %d (this build reads %d); upgrade", v, counterFormatV1)
	}
	if c.Slots, err = d.decodeSlots(size); err != nil {
		return r, err
	}
	if n >= 3 {
		if c.Reset, err = d.decodeReset(size); err != nil {
			return r, err
		}
	}
	if n >= 4 {
		if r.UpdatedMs, err = d.dec.DecodeInt64(); err != nil {
			return r, err
		}
	}
	if n >= 5 {
		if r.Seqs, err = d.decodeSeqs(size); err != nil {
			return r, err
		}
	}
	return r, d.skip(n - 5)
}

// decodeSeqs reads a flat [origin, seq, ...] array.
func (d *counterDecoder) decodeSeqs(size int) ([]OriginSeq, error) {
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	if n%2 != 0 || n > size {
		return nil, fmt.Errorf("sequence array of %d elements in %d bytes", n, size)
	}
	seqs := make([]OriginSeq, n/2)
	for i := range seqs {
		o, err := d.dec.DecodeUint64()
		if err != nil {
			return nil, err
		}
		seqs[i].Origin = crdt.NodeID(o)
		if seqs[i].Seq, err = d.dec.DecodeUint64(); err != nil {
			return nil, err
		}
	}
	return seqs, nil
}

func (d *counterDecoder) decodeReset(size int) (*crdt.Reset, error) {
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if n == -1 { // nil: no reset
		return nil, nil
	}
	if n < 5 {
		return nil, fmt.Errorf("reset array of %d elements, want at least 5", n)
	}
	r := &crdt.Reset{}
	if r.Epoch, err = d.dec.DecodeUint64(); err != nil {
		return nil, err
	}
	node, err := d.dec.DecodeUint64()
	if err != nil {
		return nil, err
	}
	r.Node = crdt.NodeID(node)
	if r.Value, err = d.dec.DecodeInt64(); err != nil {
		return nil, err
	}
	if r.Deleted, err = d.dec.DecodeBool(); err != nil {
		return nil, err
	}
	if r.Floor, err = d.decodeSlots(size); err != nil {
		return nil, err
	}
	return r, d.skip(n - 5)
}

// decodeSlots reads a flat triple array; size bounds the allocation so that
// a corrupt length cannot ask for more memory than the input could hold.
func (d *counterDecoder) decodeSlots(size int) ([]crdt.Slot, error) {
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	if n%3 != 0 || n > size {
		return nil, fmt.Errorf("slot array of %d elements in %d bytes", n, size)
	}
	slots := make([]crdt.Slot, n/3)
	for i := range slots {
		node, err := d.dec.DecodeUint64()
		if err != nil {
			return nil, err
		}
		s := &slots[i]
		s.Node = crdt.NodeID(node)
		if s.P, err = d.dec.DecodeUint64(); err != nil {
			return nil, err
		}
		if s.N, err = d.dec.DecodeUint64(); err != nil {
			return nil, err
		}
		if i > 0 && slots[i-1].Node >= s.Node {
			return nil, fmt.Errorf("slots not sorted by node at %d", i)
		}
	}
	return slots, nil
}

// skip discards n trailing elements written by a newer encoder.
func (d *counterDecoder) skip(n int) error {
	for ; n > 0; n-- {
		if err := d.checkLen(); err != nil {
			return err
		}
		if err := d.dec.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// checkLen fails when the next value is a string, binary or extension value
// declared longer than the bytes left. msgpack would otherwise read it a
// megabyte at a time into the decoder's buffer before finding out, and keep
// the grown buffer in the pooled decoder: a few bytes of input made every
// later decode slower (found by FuzzDecodeLog). Values nested in a skipped
// array or map are not checked.
func (d *counterDecoder) checkLen() error {
	c, err := d.dec.PeekCode()
	if err != nil {
		return err
	}
	var hdr int
	switch c {
	case 0xd9, 0xc4, 0xc7: // str8, bin8, ext8
		hdr = 1
	case 0xda, 0xc5, 0xc8: // str16, bin16, ext16
		hdr = 2
	case 0xdb, 0xc6, 0xc9: // str32, bin32, ext32
		hdr = 4
	default:
		return nil
	}
	var b [4]byte
	pos := d.r.Size() - int64(d.r.Len())
	if n, _ := d.r.ReadAt(b[4-hdr:], pos+1); n < hdr {
		return io.ErrUnexpectedEOF
	}
	if n := int64(binary.BigEndian.Uint32(b[:])); n > int64(d.r.Len()-1-hdr) {
		return fmt.Errorf("value of %d bytes with %d left", n, d.r.Len()-1-hdr)
	}
	return nil
}
