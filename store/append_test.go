package store

import (
	"bytes"
	"math"
	"testing"

	"github.com/countmesh/countmesh/crdt"
	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"
)

// encodeRecordWithEncoder is how records were encoded before appendRecord:
// through msgpack.Encoder. It is the reference appendRecord must match byte
// for byte, so that a log or checkpoint written by this binary is the one an
// older binary wrote.
func encodeRecordWithEncoder(enc *msgpack.Encoder, r Record) {
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
	_ = enc.EncodeArrayLen(n)
	_ = enc.EncodeUint(counterFormatV1)
	slots := func(ss []crdt.Slot) {
		_ = enc.EncodeArrayLen(3 * len(ss))
		for _, s := range ss {
			_ = enc.EncodeUint(uint64(s.Node))
			_ = enc.EncodeUint(s.P)
			_ = enc.EncodeUint(s.N)
		}
	}
	slots(c.Slots)
	if rs := c.Reset; rs != nil {
		_ = enc.EncodeArrayLen(5)
		_ = enc.EncodeUint(rs.Epoch)
		_ = enc.EncodeUint(uint64(rs.Node))
		_ = enc.EncodeInt(rs.Value)
		_ = enc.EncodeBool(rs.Deleted)
		slots(rs.Floor)
	} else if n > 2 {
		_ = enc.EncodeNil()
	}
	if n > 3 {
		_ = enc.EncodeInt(r.UpdatedMs)
	}
	if n > 4 {
		_ = enc.EncodeArrayLen(2 * len(r.Seqs))
		for _, s := range r.Seqs {
			_ = enc.EncodeUint(uint64(s.Origin))
			_ = enc.EncodeUint(s.Seq)
		}
	}
}

// edgy draws integers near every boundary of msgpack's integer forms.
func edgyUint(t *rapid.T, label string) uint64 {
	edges := []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64, math.MaxUint64}
	return rapid.OneOf(rapid.SampledFrom(edges), rapid.Uint64(), rapid.Uint64Range(0, 300)).Draw(t, label)
}

func edgyInt(t *rapid.T, label string) int64 {
	edges := []int64{0, -1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64, 127, 128, math.MaxInt64}
	return rapid.OneOf(rapid.SampledFrom(edges), rapid.Int64(), rapid.Int64Range(-300, 300)).Draw(t, label)
}

func drawSlots(t *rapid.T, label string) []crdt.Slot {
	n := rapid.OneOf(rapid.IntRange(0, 6), rapid.IntRange(5, 6000)).Draw(t, label+" n")
	out := make([]crdt.Slot, n)
	for i := range out {
		if i < 8 {
			out[i] = crdt.Slot{Node: crdt.NodeID(edgyUint(t, "node")), P: edgyUint(t, "p"), N: edgyUint(t, "n")}
		} else {
			out[i] = crdt.Slot{Node: crdt.NodeID(i), P: uint64(i), N: uint64(i) << 20}
		}
	}
	return out
}

// TestAppendRecordMatchesEncoder: appendRecord, the log encoder's strings
// and the log head produce exactly msgpack.Encoder's bytes, integers at
// every boundary of their forms, arrays past 15 and 65,535 elements, and
// strings of every length class included.
func TestAppendRecordMatchesEncoder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := Record{Counter: crdt.Counter{Slots: drawSlots(t, "slots")}}
		if rapid.Bool().Draw(t, "reset") {
			r.Counter.Reset = &crdt.Reset{
				Epoch: edgyUint(t, "epoch"), Node: crdt.NodeID(edgyUint(t, "rnode")),
				Value: edgyInt(t, "value"), Deleted: rapid.Bool().Draw(t, "deleted"),
				Floor: drawSlots(t, "floor"),
			}
		}
		if rapid.Bool().Draw(t, "updated") {
			r.UpdatedMs = edgyInt(t, "updatedMs")
		}
		for range rapid.IntRange(0, 20).Draw(t, "seqs") {
			r.Seqs = append(r.Seqs, OriginSeq{Origin: crdt.NodeID(edgyUint(t, "origin")), Seq: edgyUint(t, "seq")})
		}
		var want bytes.Buffer
		encodeRecordWithEncoder(msgpack.NewEncoder(&want), r)
		if got := appendRecord([]byte("x"), r); !bytes.Equal(got[1:], want.Bytes()) || got[0] != 'x' {
			t.Fatalf("appendRecord differs from msgpack.Encoder:\n got %x\nwant %x", got[1:], want.Bytes())
		}

		s := rapid.SampledFrom([]int{0, 1, 31, 32, 255, 256, 65535, 65536}).Draw(t, "string length")
		str := string(bytes.Repeat([]byte{'k'}, s))
		want.Reset()
		_ = msgpack.NewEncoder(&want).EncodeString(str)
		if got := appendString(nil, str); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("appendString of %d bytes: got %x…, want %x…", s, got[:min(8, len(got))], want.Bytes()[:min(8, want.Len())])
		}
	})
}

// TestLogEncoderRoundTrip: what LogEncoder writes, DecodeLog reads back.
func TestLogEncoderRoundTrip(t *testing.T) {
	e := NewLogEncoder()
	recs := []Record{
		{Counter: crdt.Counter{Slots: []crdt.Slot{{Node: 7, P: 300, N: 2}}}, UpdatedMs: 1700000000000, Seqs: []OriginSeq{{Origin: 7, Seq: 70000}}},
		{Counter: crdt.Counter{Slots: []crdt.Slot{{Node: math.MaxUint64, P: math.MaxUint64}}, Reset: &crdt.Reset{Epoch: 3, Node: 9, Value: -40, Floor: []crdt.Slot{{Node: 1, P: 1}}}}},
	}
	keys := []string{"a", string(bytes.Repeat([]byte{'z'}, 300))}
	for round := range 2 { // the second round reuses the buffers after Reset
		e.Reset()
		for i, r := range recs {
			e.Add("ns", keys[i], r)
		}
		vv := []OriginSeq{{Origin: 7, Seq: uint64(70000 + round)}, {Origin: 9, Seq: 1}}
		var got []Record
		gotVV, err := DecodeLog(e.Encode(vv), func(ns, key string, r Record) error {
			if ns != "ns" || key != keys[len(got)] {
				t.Fatalf("counter %d is %s/%.10s", len(got), ns, key)
			}
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(gotVV) != 2 || gotVV[0] != vv[0] || gotVV[1] != vv[1] {
			t.Fatalf("version vector %v, want %v", gotVV, vv)
		}
		if len(got) != len(recs) || got[0].UpdatedMs != recs[0].UpdatedMs || got[1].Counter.Value() != recs[1].Counter.Value() ||
			got[0].Seqs[0] != recs[0].Seqs[0] || got[1].Counter.Reset.Value != -40 {
			t.Fatalf("round %d: decoded %+v", round, got)
		}
	}
}
