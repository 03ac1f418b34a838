package store

import (
	"slices"

	"github.com/countmesh/countmesh/internal/kinderr"
)

// A log record written by package node is a header followed by changed
// counters. The header is a msgpack array [logFormatV2, [origin, seq, ...]]
// holding the node's version vector once the record is applied; each
// counter is three msgpack values: namespace (string), key (string), record
// (the counter encoding of codec.go). Later entries for the same counter
// supersede earlier ones; replaying merges.
const logFormatV2 = 2

// LogEncoder builds one log record. It is not safe for concurrent use.
type LogEncoder struct {
	head, body []byte
	n          int
}

// NewLogEncoder returns an empty encoder.
func NewLogEncoder() *LogEncoder { return &LogEncoder{} }

// Add appends one counter.
func (e *LogEncoder) Add(ns, key string, r Record) {
	e.body = appendRecord(appendString(appendString(e.body, ns), key), r)
	e.n++
}

// Grow makes room for about n more counters, so that a large record is
// not built by growing its buffer again and again (the copies were 11 % of
// the bytes a node allocated under pipelined INCRs of random keys).
func (e *LogEncoder) Grow(n int) {
	e.body = slices.Grow(e.body, n*logBytesPerCounter)
}

// logBytesPerCounter is about what a counter of one slot takes in a log
// record: its namespace and key (about 20 bytes) and its record (about 50).
const logBytesPerCounter = 80

// Len reports the counters added since the last Reset.
func (e *LogEncoder) Len() int { return e.n }

// AppendTo appends the record, with vv as its version vector, to b's
// operation-log record (Batch.AppendLog).
func (e *LogEncoder) AppendTo(b *Batch, vv []OriginSeq) {
	e.writeHead(vv)
	b.AppendLog(e.head)
	b.AppendLog(e.body)
}

// Encode returns the record with vv as its version vector, in a new slice.
func (e *LogEncoder) Encode(vv []OriginSeq) []byte {
	e.writeHead(vv)
	return append(append([]byte(nil), e.head...), e.body...)
}

func (e *LogEncoder) writeHead(vv []OriginSeq) {
	e.head = appendArrayLen(e.head[:0], 2)
	e.head = appendUint(e.head, logFormatV2)
	e.head = appendSeqs(e.head, vv)
}

// logEncoderKeep is the body capacity a LogEncoder keeps however little
// its last record used.
const logEncoderKeep = 64 << 10

// Reset empties the encoder, keeping its buffers, unless the body grew in
// a burst to more than 16 times what the record just encoded needed: then
// it is let go, so that a group commit of a million counters does not pin
// its megabytes for the life of the node (a committer's records are small
// again once the burst is over).
func (e *LogEncoder) Reset() {
	if cap(e.body) > logEncoderKeep && len(e.body) < cap(e.body)/16 {
		e.body = nil
	} else {
		e.body = e.body[:0]
	}
	e.n = 0
}

// DecodeLog calls fn for every counter of a log record, in order, and
// returns the record's version vector. An error wraps ErrCorrupt, or is
// fn's.
func DecodeLog(payload []byte, fn func(ns, key string, r Record) error) ([]OriginSeq, error) {
	d := decoderPool.Get().(*counterDecoder)
	defer func() {
		d.r.Reset(nil)
		decoderPool.Put(d)
	}()
	d.r.Reset(payload)
	d.dec.Reset(&d.r)
	n, err := d.dec.DecodeArrayLen()
	if err != nil || n < 2 {
		return nil, kinderr.New(ErrCorrupt, err, "log record header (%d elements): %v", n, err)
	}
	v, err := d.dec.DecodeUint64()
	if err != nil || v != logFormatV2 {
		return nil, kinderr.New(ErrCorrupt, err, "log record format %d, this build reads %d (%v)", v, logFormatV2, err)
	}
	vv, err := d.decodeSeqs(len(payload))
	if err == nil {
		err = d.skip(n - 2)
	}
	if err != nil {
		return nil, kinderr.New(ErrCorrupt, err, "log record header: %v", err)
	}
	for i := 0; d.r.Len() > 0; i++ {
		if err := d.checkLen(); err != nil {
			return nil, kinderr.New(ErrCorrupt, err, "log entry %d: namespace: %v", i, err)
		}
		ns, err := d.dec.DecodeString()
		if err != nil {
			return nil, kinderr.New(ErrCorrupt, err, "log entry %d: namespace: %v", i, err)
		}
		if err := d.checkLen(); err != nil {
			return nil, kinderr.New(ErrCorrupt, err, "log entry %d: key: %v", i, err)
		}
		key, err := d.dec.DecodeString()
		if err != nil {
			return nil, kinderr.New(ErrCorrupt, err, "log entry %d: key: %v", i, err)
		}
		r, err := d.decode(len(payload))
		if err != nil {
			return nil, kinderr.New(ErrCorrupt, err, "log entry %d (%s/%s): %v", i, ns, key, err)
		}
		if err := fn(ns, key, r); err != nil {
			return nil, err
		}
	}
	return vv, nil
}
