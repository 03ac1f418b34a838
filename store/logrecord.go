package store

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/crdt"
)

// A log record written by package node is a sequence of changed counters,
// each three msgpack values: namespace (string), key (string), record (the
// counter encoding of codec.go, with the time of the last change). Later
// entries for the same counter supersede earlier ones; replaying merges.

// LogEncoder builds one log record. It is not safe for concurrent use.
type LogEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
	n   int
}

// NewLogEncoder returns an empty encoder.
func NewLogEncoder() *LogEncoder {
	e := &LogEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}

// Add appends one counter.
func (e *LogEncoder) Add(ns, key string, c crdt.Counter, updatedMs int64) {
	_ = e.enc.EncodeString(ns)
	_ = e.enc.EncodeString(key)
	encodeRecordTo(e.enc, c, updatedMs)
	e.n++
}

// Len reports the counters added since the last Reset.
func (e *LogEncoder) Len() int { return e.n }

// Bytes returns the record; valid until the next Add or Reset.
func (e *LogEncoder) Bytes() []byte { return e.buf.Bytes() }

// Reset empties the encoder, keeping its buffer.
func (e *LogEncoder) Reset() {
	e.buf.Reset()
	e.n = 0
}

// DecodeLog calls fn for every counter of a log record, in order. An error
// wraps ErrCorrupt, or is fn's.
func DecodeLog(payload []byte, fn func(ns, key string, r Record) error) error {
	d := decoderPool.Get().(*counterDecoder)
	defer func() {
		d.r.Reset(nil)
		decoderPool.Put(d)
	}()
	d.r.Reset(payload)
	d.dec.ResetReader(&d.r)
	for i := 0; d.r.Len() > 0; i++ {
		ns, err := d.dec.DecodeString()
		if err != nil {
			return fmt.Errorf("%w: log entry %d: namespace: %w", ErrCorrupt, i, err)
		}
		key, err := d.dec.DecodeString()
		if err != nil {
			return fmt.Errorf("%w: log entry %d: key: %w", ErrCorrupt, i, err)
		}
		r, err := d.decode(len(payload))
		if err != nil {
			return fmt.Errorf("%w: log entry %d (%s/%s): %w", ErrCorrupt, i, ns, key, err)
		}
		if err := fn(ns, key, r); err != nil {
			return err
		}
	}
	return nil
}
