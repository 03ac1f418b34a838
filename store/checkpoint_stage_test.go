package store

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"

	"github.com/countmesh/countmesh/crdt"
)

// TestSortIndexIsAStableSortByKey checks the radix sort of index entries
// against a stable comparison sort by (origin, seq), on shapes that take
// each of its paths: short inputs, one origin or many (more than it sorts
// by radix), seqs in a narrow span with many repeats, or spread over all
// 64 bits.
func TestSortIndexIsAStableSortByKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 100, 1023, 1024, 5000, 40_000} {
		for _, origins := range []int{1, 3, radixOrigins, radixOrigins + 1} {
			for _, span := range []uint64{1, 50, 1 << 20, math.MaxUint64} {
				t.Run(fmt.Sprintf("n=%d/origins=%d/span=%d", n, origins, span), func(t *testing.T) {
					os := make([]uint64, origins)
					for i := range os {
						os[i] = rng.Uint64()
					}
					os[0] = 0 // the smallest origin there is
					base := rng.Uint64N(1 << 40)
					a := make([]stagedIndex, n)
					for i := range a {
						seq := rng.Uint64N(span)
						if span == math.MaxUint64 {
							seq = rng.Uint64()
						} else {
							seq += base
						}
						a[i] = stagedIndex{origin: os[rng.IntN(origins)], seq: seq, ord: uint32(i)}
					}
					want := slices.Clone(a)
					slices.SortStableFunc(want, func(x, y stagedIndex) int {
						if x.origin != y.origin {
							return cmpU64(x.origin, y.origin)
						}
						return cmpU64(x.seq, y.seq)
					})
					shuffled := slices.Clone(a)
					spare := sortIndex(a, nil)
					check := func(a []stagedIndex) {
						t.Helper()
						for i := range a {
							if a[i] != want[i] {
								t.Fatalf("at %d of %d: got %+v, want %+v", i, n, a[i], want[i])
							}
						}
					}
					check(a)
					// Again, with the spare array the first sort left (its
					// contents are that sort's leftovers).
					sortIndex(shuffled, spare)
					check(shuffled)
				})
			}
		}
	}
}

func cmpU64(x, y uint64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// stageOp is one write a checkpoint stages: a counter's record and its
// index entry, or an index entry's removal.
type stageOp struct {
	del        bool
	ns, key    string
	value      uint64
	origin     crdt.NodeID
	seq        uint64
	withRecord bool // a put stages the counter's record before its index entry
}

// TestCheckpointStageWritesWhatTheBatchWould checks that staging a
// checkpoint's writes and adding them sorted leaves Pebble holding what
// adding them to the batch in the order given did, including writes to the
// same key (the last one staged wins), and that the batch receives its keys
// in order.
func TestCheckpointStageWritesWhatTheBatchWould(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		origins := []crdt.NodeID{1, 2, crdt.NodeIDFromName("countd-9"), math.MaxUint64}
		ops := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) stageOp {
			return stageOp{
				del:        rapid.IntRange(0, 3).Draw(t, "del") == 0,
				ns:         rapid.SampledFrom([]string{"a", "ab", "b", "counter"}).Draw(t, "ns"),
				key:        rapid.SampledFrom([]string{"", "x", "x\x00", "xy", "\xff", "000001", "000010", "0000000123456789"}).Draw(t, "key"),
				value:      rapid.Uint64Range(1, 1000).Draw(t, "value"),
				origin:     rapid.SampledFrom(origins).Draw(t, "origin"),
				seq:        rapid.Uint64Range(1, 20).Draw(t, "seq"),
				withRecord: rapid.Bool().Draw(t, "withRecord"),
			}
		}), 0, 300).Draw(t, "ops")

		direct := openStageTest(t)
		b := direct.NewBatch()
		defer b.Close()
		staged := openStageTest(t)
		sb := staged.NewBatch()
		defer sb.Close()
		st := newCheckpointStage(len(ops))
		var last stagedKey
		have := false // a record was staged: a put may add another index entry to it
		for _, op := range ops {
			r := Record{Counter: crdt.Counter{Slots: []crdt.Slot{{Node: op.origin, P: op.value}}}, Seqs: []OriginSeq{{Origin: op.origin, Seq: op.seq}}}
			switch {
			case op.del:
				b.DeleteIndex(op.origin, op.seq)
				st.deleteIndex(op.origin, op.seq)
			case op.withRecord || !have:
				b.PutRecord(op.ns, op.key, r)
				b.PutIndex(op.origin, op.seq, op.ns, op.key)
				last, have = st.putRecord(op.ns, op.key, r), true
				st.putIndex(op.origin, op.seq, last)
			default:
				// Another index entry for the counter staged last.
				k := stagedName(st, last)
				b.PutIndex(op.origin, op.seq, k[0], k[1])
				st.putIndex(op.origin, op.seq, last)
			}
		}
		if err := st.addTo(sb); err != nil {
			t.Fatal(err)
		}
		var prev []byte
		rd := sb.pb.Reader()
		for {
			_, k, _, ok, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if bytes.Compare(prev, k) > 0 {
				t.Fatalf("the batch got %q after %q", k, prev)
			}
			prev = append(prev[:0], k...)
		}
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		if err := sb.Commit(true); err != nil {
			t.Fatal(err)
		}
		want, got := dumpPebble(t, direct), dumpPebble(t, staged)
		if !slices.Equal(got, want) {
			t.Fatalf("staged writes left\n%q\nthe batch in order left\n%q", got, want)
		}
	})
}

// stagedName returns the namespace and key of the counter staged at k.
func stagedName(st *checkpointStage, k stagedKey) [2]string {
	ck := st.data[k.off+1 : k.off+int(k.klen)]
	i := bytes.IndexByte(ck, sep)
	return [2]string{string(ck[:i]), string(ck[i+1:])}
}

func openStageTest(t *rapid.T) *Store {
	cfg := DefaultConfig()
	cfg.Dir = "db"
	cfg.FS = vfs.NewMem()
	cfg.CacheSize = 1 << 20
	cfg.MemTableSize = 1 << 20
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dumpPebble returns every key and value Pebble holds, in order.
func dumpPebble(t *rapid.T, s *Store) []string {
	it, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var kv []string
	for it.First(); it.Valid(); it.Next() {
		kv = append(kv, fmt.Sprintf("%q=%q", it.Key(), it.Value()))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestCheckpointStageRefusesABadNamespace checks that a namespace the key
// layout cannot hold fails the checkpoint's batch, as PutRecord does.
func TestCheckpointStageRefusesABadNamespace(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	b := s.NewBatch()
	defer b.Close()
	st := newCheckpointStage(2)
	k := st.putRecord("ok", "a", Record{})
	st.putIndex(1, 1, k)
	if k := st.putRecord("bad\x00ns", "b", Record{}); k.off >= 0 {
		t.Fatalf("putRecord of a namespace with a NUL staged it at %d", k.off)
	}
	if err := st.addTo(b); err == nil {
		t.Fatal("addTo returned no error after a refused namespace")
	}
	if b.Len() != 0 {
		t.Fatalf("the batch holds %d writes after a refused stage", b.Len())
	}
}
