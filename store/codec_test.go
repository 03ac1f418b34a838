package store

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/countmesh/countmesh/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

func TestEncodedSize(t *testing.T) {
	node := crdt.NodeIDFromName("node-1") // a 64-bit hash: 9 bytes in msgpack
	oneSlot := func(p, n uint64) crdt.Counter {
		return crdt.Counter{Slots: []crdt.Slot{{Node: node, P: p, N: n}}}
	}
	threeSlots := crdt.Counter{Slots: []crdt.Slot{{Node: 1, P: 1000}, {Node: node, P: 70000}, {Node: math.MaxUint64, P: 5, N: 5}}}
	reset := oneSlot(10, 0)
	reset.SetReset(node, 0, false)
	tests := []struct {
		name string
		c    crdt.Counter
		want int
	}{
		{"zero", crdt.Counter{}, 3},
		// array(2) + version + array(3) + node(9) + p(1) + n(1)
		{"one slot, small", oneSlot(5, 0), 14},
		{"one slot, p=1e6", oneSlot(1e6, 0), 18},
		{"one slot, p=n=2^40", oneSlot(1<<40, 1<<40), 30},
		{"three slots", threeSlots, 1 + 1 + 1 + (1 + 3 + 1) + (9 + 5 + 1) + (9 + 1 + 1)},
		// + array(5) epoch node(9) value deleted floor(1+9+1+1)
		{"one slot with reset", reset, 14 + 1 + 1 + 9 + 1 + 1 + 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EncodeCounter(nil, tt.c)
			if len(got) != tt.want {
				t.Errorf("encoded %d bytes (% x), want %d", len(got), got, tt.want)
			}
		})
	}
}

// The encoding is plain msgpack: any msgpack reader sees the documented
// arrays of integers.
func TestEncodingIsMsgpack(t *testing.T) {
	c := crdt.Counter{Slots: []crdt.Slot{{Node: 7, P: 3, N: 1}, {Node: 9, P: 1 << 33}}}
	c.SetReset(7, -5, true)
	var got []any
	if err := msgpack.Unmarshal(EncodeCounter(nil, c), &got); err != nil {
		t.Fatal(err)
	}
	want := []any{
		uint64(1),
		[]any{uint64(7), uint64(3), uint64(1), uint64(9), uint64(1 << 33), uint64(0)},
		[]any{uint64(1), uint64(7), int64(-5), true, []any{uint64(7), uint64(3), uint64(1), uint64(9), uint64(1 << 33), uint64(0)}},
	}
	if fmt.Sprint(normalize(got)) != fmt.Sprint(want) {
		t.Fatalf("msgpack view %v, want %v", got, want)
	}
}

// normalize widens msgpack's smallest integer types so that values compare.
func normalize(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalize(x[i])
		}
		return out
	case int8, int16, int32, int64:
		n := reflect.ValueOf(x).Int()
		if n >= 0 {
			return uint64(n)
		}
		return n
	case uint8, uint16, uint32, uint64:
		return reflect.ValueOf(x).Uint()
	}
	return v
}

// A later encoder may append fields; this decoder must skip them.
func TestDecodeSkipsAppendedFields(t *testing.T) {
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	var buf []byte
	w := &sliceWriter{&buf}
	enc.Reset(w)
	_ = enc.EncodeArrayLen(6)
	_ = enc.EncodeUint(1)
	_ = enc.EncodeArrayLen(3)
	for _, v := range []uint64{5, 6, 7} {
		_ = enc.EncodeUint(v)
	}
	_ = enc.EncodeArrayLen(6) // reset with one extra field
	_ = enc.EncodeUint(2)
	_ = enc.EncodeUint(5)
	_ = enc.EncodeInt(-1)
	_ = enc.EncodeBool(false)
	_ = enc.EncodeArrayLen(0)
	_ = enc.EncodeString("future reset field")
	_ = enc.EncodeInt(1234)   // updatedMs
	_ = enc.EncodeArrayLen(2) // seqs
	_ = enc.EncodeUint(5)
	_ = enc.EncodeUint(77)
	_ = enc.Encode(map[string]int{"future": 1}) // extra outer field
	rec, err := DecodeRecord(buf)
	if err != nil {
		t.Fatal(err)
	}
	if rec.UpdatedMs != 1234 || len(rec.Seqs) != 1 || rec.Seqs[0] != (OriginSeq{Origin: 5, Seq: 77}) {
		t.Fatalf("UpdatedMs = %d, Seqs = %v; want 1234, [{5 77}]", rec.UpdatedMs, rec.Seqs)
	}
	got := rec.Counter
	want := crdt.Counter{Slots: []crdt.Slot{{Node: 5, P: 6, N: 7}}, Reset: &crdt.Reset{Epoch: 2, Node: 5, Value: -1}}
	if !got.Equal(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

func TestDecodeCorrupt(t *testing.T) {
	good := EncodeCounter(nil, crdt.Counter{Slots: []crdt.Slot{{Node: 1, P: 2}}})
	tests := map[string][]byte{
		"empty":           {},
		"truncated":       good[:len(good)-1],
		"trailing bytes":  append(append([]byte(nil), good...), 0),
		"not an array":    {0x05},
		"short array":     {0x91, 0x01},
		"version 2":       {0x92, 0x02, 0x90},
		"slots not x3":    {0x92, 0x01, 0x92, 0x01, 0x02},
		"huge slot count": {0x92, 0x01, 0xdd, 0x7f, 0xff, 0xff, 0xff},
		"unsorted slots":  {0x92, 0x01, 0x96, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00},
		"duplicate node":  {0x92, 0x01, 0x96, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00},
		"short reset":     {0x93, 0x01, 0x90, 0x91, 0x01},
		"string slot":     {0x92, 0x01, 0x93, 0xa1, 'x', 0x00, 0x00},
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeCounter(data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeCounter(% x) = %v, want ErrCorrupt", data, err)
			}
		})
	}
}

func FuzzDecodeCounter(f *testing.F) {
	for _, c := range sampleCounters() {
		f.Add(EncodeCounter(nil, c))
	}
	f.Add([]byte{0x92, 0x01, 0x90})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCounter(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := DecodeCounter(EncodeCounter(nil, c))
		if err != nil || !again.Equal(c) {
			t.Fatalf("re-encoding %+v: %+v, %v", c, again, err)
		}
	})
}

// TestDiskBytesPerCounter measures what counters cost on disk, keys
// included, once flushed to sstables: the numbers doc.go quotes.
func TestDiskBytesPerCounter(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2x50k counters; skipped in -short")
	}
	nodes := []crdt.NodeID{crdt.NodeIDFromName("countd-1"), crdt.NodeIDFromName("countd-2"), crdt.NodeIDFromName("countd-3")}
	tests := []struct {
		name  string
		key   func(i int, rng *rand.Rand) string
		slots int
	}{
		// Keys that share prefixes (page paths); one slot.
		{"page keys, one slot", func(i int, _ *rand.Rand) string { return fmt.Sprintf("page/%08d", i*7919%1_000_000) }, 1},
		// Random keys, incompressible; every counter written by three nodes.
		{"random keys, three slots", func(_ int, rng *rand.Rand) string { return fmt.Sprintf("user:%016x", rng.Uint64()) }, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, vfs.NewMem(), "db")
			const n = 50_000
			rng := rand.New(rand.NewPCG(1, 2))
			var keyBytes, valueBytes int
			for i := 0; i < n; {
				b := s.NewBatch()
				for j := 0; j < 1000; j, i = j+1, i+1 {
					var c crdt.Counter
					for _, node := range nodes[:tt.slots] {
						c.Add(node, rng.Int64N(10_000)+1)
					}
					key := tt.key(i, rng)
					keyBytes += len(key)
					valueBytes += len(EncodeCounter(nil, c))
					b.PutCounter("pageviews", key, c)
				}
				if err := b.Commit(false); err != nil {
					t.Fatal(err)
				}
				b.Close()
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			tables := s.db.Metrics().Table.Local.LiveSize
			perCounter := float64(tables) / n
			t.Logf("%d counters: key %d bytes + %d of layout, value %d bytes; sstables %.1f bytes per counter",
				n, keyBytes/n, 1+len("pageviews")+1, valueBytes/n, perCounter)
			if perCounter >= 100 {
				t.Fatalf("%.1f bytes per counter on disk, want < 100", perCounter)
			}
		})
	}
}
