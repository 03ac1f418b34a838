package httpapi

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/node"
)

// mp builds a msgpack body by hand, so that a test can write what an
// encoder of structs would not (duplicate fields, nil, bin strings, the
// wider forms of small lengths).
type mp struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newMP() *mp {
	m := &mp{}
	m.enc = msgpack.NewEncoder(&m.buf)
	m.enc.UseCompactInts(true)
	return m
}

func (m *mp) mapLen(n int) *mp   { must(m.enc.EncodeMapLen(n)); return m }
func (m *mp) arrayLen(n int) *mp { must(m.enc.EncodeArrayLen(n)); return m }
func (m *mp) str(s string) *mp   { must(m.enc.EncodeString(s)); return m }
func (m *mp) int(n int64) *mp    { must(m.enc.EncodeInt(n)); return m }
func (m *mp) raw(b ...byte) *mp  { m.buf.Write(b); return m }
func (m *mp) nil() *mp           { must(m.enc.EncodeNil()); return m }
func (m *mp) bytes() []byte      { return bytes.Clone(m.buf.Bytes()) }

// op writes a map of ns, key and by.
func (m *mp) op(ns, key string, by int64) *mp {
	return m.mapLen(3).str("ns").str(ns).str("key").str(key).str("by").int(by)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func TestDecodeBatchMsgpackSameAsReference(t *testing.T) {
	many := func(n int) []byte {
		m := newMP().mapLen(1).str("ops").arrayLen(n)
		for range n {
			m.mapLen(0)
		}
		return m.bytes()
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		status int  // the reference's answer, 0 for accepted
		fast   bool // decodeBatchMsgpackPlain decodes it
		want   []node.BatchOp
	}{
		{name: "plain", body: newMP().mapLen(2).str("ops").arrayLen(2).op("bench", "k1", 1).
			mapLen(4).str("id").str("x").str("by").int(-5).str("key").str("k2").str("ns").str("bench").
			str("consistency").str("local").bytes(), fast: true,
			want: []node.BatchOp{{NS: "bench", Key: "k1", By: 1}, {NS: "bench", Key: "k2", By: -5, ID: "x"}}},
		{name: "by absent means 1", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("key").str("k").bytes(), fast: true,
			want: []node.BatchOp{{Key: "k", By: 1}}},
		{name: "empty op", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(0).bytes(), fast: true, want: []node.BatchOp{{By: 1}}},
		{name: "empty ops", body: newMP().mapLen(1).str("ops").arrayLen(0).bytes(), fast: true, want: []node.BatchOp{}},
		{name: "no ops", body: newMP().mapLen(1).str("consistency").str("all").bytes(), fast: true},
		{name: "empty map", body: newMP().mapLen(0).bytes(), fast: true},
		{name: "every int width", body: newMP().mapLen(1).str("ops").arrayLen(9).
			mapLen(1).str("by").raw(0xcc, 0xff).mapLen(1).str("by").raw(0xd0, 0x80).
			mapLen(1).str("by").raw(0xcd, 0xff, 0xff).mapLen(1).str("by").raw(0xd1, 0x80, 0).
			mapLen(1).str("by").raw(0xce, 0xff, 0xff, 0xff, 0xff).mapLen(1).str("by").raw(0xd2, 0x80, 0, 0, 0).
			mapLen(1).str("by").raw(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).
			mapLen(1).str("by").raw(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0).mapLen(1).str("by").raw(0xe0).bytes(), fast: true,
			want: []node.BatchOp{{By: 255}, {By: -128}, {By: 65535}, {By: -32768}, {By: 1<<32 - 1}, {By: -1 << 31},
				{By: -1}, {By: -1 << 63}, {By: -32}}},
		{name: "wide lengths", body: newMP().raw(0xde, 0, 1).raw(0xdb, 0, 0, 0, 3).raw([]byte("ops")...).raw(0xdd, 0, 0, 0, 1).
			raw(0xdf, 0, 0, 0, 1).raw(0xda, 0, 3).raw([]byte("key")...).raw(0xd9, 2).raw([]byte("k1")...).bytes(), fast: true,
			want: []node.BatchOp{{Key: "k1", By: 1}}},
		{name: "bytes that are not UTF-8", body: newMP().mapLen(1).str("ops").arrayLen(1).op("a", "k\xff", 1).bytes(), fast: true},
		{name: "by nil is 0", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("by").nil().bytes(),
			want: []node.BatchOp{{By: 0}}},
		{name: "ns nil", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("ns").nil().bytes()},
		{name: "key as bin", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("key").raw(0xc4, 1, 'k').bytes()},
		{name: "field name as bin", body: newMP().mapLen(1).raw(0xc4, 3).raw([]byte("ops")...).arrayLen(0).bytes()},
		{name: "ops nil", body: newMP().mapLen(1).str("ops").nil().bytes()},
		{name: "op nil", body: newMP().mapLen(1).str("ops").arrayLen(1).nil().bytes()},
		{name: "batch nil", body: newMP().nil().bytes()},
		{name: "duplicate op field", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(2).str("key").str("a").str("key").str("b").bytes()},
		{name: "duplicate ops", body: newMP().mapLen(2).str("ops").arrayLen(1).op("a", "b", 2).str("ops").arrayLen(0).bytes()},
		{name: "duplicate consistency", body: newMP().mapLen(2).str("consistency").str("a").str("consistency").str("b").bytes()},
		{name: "by float", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("by").raw(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0).bytes(), status: 400},
		{name: "by string", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("by").str("1").bytes(), status: 400},
		{name: "key number", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("key").int(1).bytes(), status: 400},
		{name: "unknown op field", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("extra").int(1).bytes(), status: 400},
		{name: "unknown batch field", body: newMP().mapLen(1).str("extra").int(1).bytes(), status: 400},
		{name: "field in another case", body: newMP().mapLen(1).str("Ops").arrayLen(0).bytes(), status: 400},
		{name: "ops a map", body: newMP().mapLen(1).str("ops").mapLen(0).bytes(), status: 400},
		{name: "an array body", body: newMP().arrayLen(0).bytes(), status: 400},
		{name: "empty body", body: nil, status: 400},
		{name: "trailing byte", body: newMP().mapLen(0).raw(0xc0).bytes(), status: 400},
		{name: "truncated", body: newMP().mapLen(1).str("ops").arrayLen(2).op("a", "b", 1).bytes(), status: 400},
		{name: "truncated string", body: newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("key").raw(0xa5, 'a').bytes(), status: 400},
		{name: "truncated length", body: newMP().mapLen(1).str("ops").raw(0xdd, 0, 0).bytes(), status: 400},
		{name: "huge declared array", body: newMP().mapLen(1).str("ops").raw(0xdd, 0xff, 0xff, 0xff, 0xff).bytes(), status: 400},
		{name: "deep nesting", body: newMP().mapLen(1).str("extra").raw(bytes.Repeat([]byte{0x91}, 100)...).raw(0xc0).bytes(), status: 400},
		{name: "10,000 ops", body: many(node.MaxBatchOps), fast: true},
		{name: "10,001 ops", body: many(node.MaxBatchOps + 1), status: 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSameAsReference(t, "application/msgpack", tc.body)
			status := 0
			if err != nil {
				status, _ = classify(err)
			}
			if status != tc.status {
				t.Fatalf("the reference answers %d (%v), the case says %d", status, err, tc.status)
			}
			if _, _, ok := decodeBatchMsgpackPlain(tc.body, node.MaxBatchOps); ok != tc.fast {
				t.Fatalf("the fast path decodes the body: %v, want %v", ok, tc.fast)
			}
			if ops, _, _ := decodeBatch("application/msgpack", tc.body); tc.want != nil && !reflect.DeepEqual(ops, tc.want) {
				t.Fatalf("ops %+v, want %+v", ops, tc.want)
			}
		})
	}
}

// FuzzDecodeBatchMsgpackPlain checks decodeBatch on msgpack bodies against
// the reference (same answers, same refusals), and that a batch of the
// plain shape (the reference's answer written back) takes the fast path.
func FuzzDecodeBatchMsgpackPlain(f *testing.F) {
	f.Add(newMP().mapLen(2).str("ops").arrayLen(2).op("bench", "k1", 1).mapLen(2).str("id").str("x").str("by").int(-300).
		str("consistency").str("local").bytes())
	f.Add(newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("by").nil().bytes())
	f.Add(newMP().mapLen(1).str("ops").arrayLen(1).mapLen(1).str("by").raw(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).bytes())
	f.Add(newMP().mapLen(2).str("ops").arrayLen(1).op("a", "b", 2).str("ops").arrayLen(0).bytes())
	f.Add(newMP().mapLen(1).str("ops").raw(0xdd, 0, 0, 0, 3).mapLen(0).bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkSameAsReference(t, "application/msgpack", body) != nil {
			return
		}
		ops, consistency, _ := decodeBatchMsgpackStd(body)
		plain := newMP().mapLen(2).str("ops").arrayLen(len(ops))
		for _, op := range ops {
			plain.mapLen(4).str("ns").str(op.NS).str("key").str(op.Key).str("by").int(op.By).str("id").str(op.ID)
		}
		plain.str("consistency").str(consistency)
		got, gotConsistency, ok := decodeBatchMsgpackPlain(plain.bytes(), node.MaxBatchOps)
		if !ok || !reflect.DeepEqual(got, ops) && len(got)+len(ops) > 0 || gotConsistency != consistency {
			t.Fatalf("the plain form of %+v %q: fast path %v, %+v %q", ops, consistency, ok, got, gotConsistency)
		}
	})
}

// TestDecodeBatchMsgpackPlainCopies checks that the decoded strings do not
// share the body's memory.
func TestDecodeBatchMsgpackPlainCopies(t *testing.T) {
	body := newMP().mapLen(2).str("ops").arrayLen(2).op("bench", "k1", 1).op("bench", "k2", 1).str("consistency").str("local").bytes()
	ops, consistency, ok := decodeBatchMsgpackPlain(body, node.MaxBatchOps)
	if !ok {
		t.Fatal("not decoded")
	}
	copy(body, strings.Repeat("x", len(body)))
	if ops[0].NS != "bench" || ops[1].NS != "bench" || ops[0].Key != "k1" || ops[1].Key != "k2" || consistency != "local" {
		t.Fatalf("the ops changed with the body: %+v %q", ops, consistency)
	}
}
