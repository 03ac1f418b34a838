package store

import (
	"encoding/binary"
	"math"

	"github.com/countmesh/countmesh/crdt"
)

// The write path encodes every changed counter into the log at each group
// commit, and the checkpoint encodes it again; through msgpack.Encoder (a
// bytes.Buffer write per byte, an interface call per value) that was 7 % of
// countd's CPU under batch ingest. These append the same bytes, in the
// smallest form, as msgpack.Encoder's EncodeUint, EncodeInt,
// EncodeArrayLen, EncodeString, EncodeNil and EncodeBool do by default;
// TestAppendRecordMatchesEncoder holds them to it. Decoding stays with the
// library.

func appendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), n)
}

func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendUint(b, uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendString(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 256:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// appendRecord appends the encoding of one record (codec.go), leaving out
// trailing fields that are empty.
func appendRecord(b []byte, r Record) []byte {
	c := r.Counter
	n := 2
	if c.Reset != nil {
		n = 3
	}
	if r.UpdatedMs != 0 {
		n = 4
	}
	if len(r.Seqs) > 0 {
		n = 5
	}
	b = appendArrayLen(b, n)
	b = appendUint(b, counterFormatV1)
	b = appendSlots(b, c.Slots)
	if rs := c.Reset; rs != nil {
		b = appendArrayLen(b, 5)
		b = appendUint(b, rs.Epoch)
		b = appendUint(b, uint64(rs.Node))
		b = appendInt(b, rs.Value)
		b = appendBool(b, rs.Deleted)
		b = appendSlots(b, rs.Floor)
	} else if n > 2 {
		b = append(b, 0xc0) // nil
	}
	if n > 3 {
		b = appendInt(b, r.UpdatedMs)
	}
	if n > 4 {
		b = appendSeqs(b, r.Seqs)
	}
	return b
}

func appendSeqs(b []byte, seqs []OriginSeq) []byte {
	b = appendArrayLen(b, 2*len(seqs))
	for _, s := range seqs {
		b = appendUint(b, uint64(s.Origin))
		b = appendUint(b, s.Seq)
	}
	return b
}

func appendSlots(b []byte, slots []crdt.Slot) []byte {
	b = appendArrayLen(b, 3*len(slots))
	for _, s := range slots {
		b = appendUint(b, uint64(s.Node))
		b = appendUint(b, s.P)
		b = appendUint(b, s.N)
	}
	return b
}
