package keyspace

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// TestCompactMatchesModel drives one stripe's compact tier with random
// puts, takes and removes over keys of two namespaces, with a small limit,
// against a model that keeps the records in the order they were added and
// drops the oldest ones as the tier does when it is full: every take must
// return exactly the state put, and the counts must agree.
func TestCompactMatchesModel(t *testing.T) {
	defer func(d int) { repackDead = d }(repackDead)
	rapid.Check(t, func(t *rapid.T) {
		// Pack again after as little as 256 bytes of dead records, so that
		// short runs repack for dead records too, not only when full.
		repackDead = rapid.SampledFrom([]int{256, 4096, chunkSize}).Draw(t, "repackDead")
		limit := rapid.IntRange(1, 300).Draw(t, "limit")
		c := compact{d: newDict(), base: 1_700_000_000_000, limit: limit}
		defer c.release()
		type rec struct {
			ck string
			r  store.Record
		}
		var model []rec // oldest first
		find := func(ck string) int {
			return slices.IndexFunc(model, func(r rec) bool { return r.ck == ck })
		}
		genCK := rapid.Custom(func(t *rapid.T) string {
			ns := rapid.SampledFrom([]string{"a", "views"}).Draw(t, "ns")
			// Mostly a small key space, so that keys come back; now and then
			// a long key, to fill chunks faster.
			key := fmt.Sprintf("k%d", rapid.IntRange(0, 400).Draw(t, "k"))
			if rapid.IntRange(0, 9).Draw(t, "long") == 0 {
				key += strings.Repeat("x", 200)
			}
			return ns + "\x00" + key
		})
		genEntry := rapid.Custom(func(t *rapid.T) *Entry {
			e := &Entry{Updated: rapid.Int64Range(1_600_000_000_000, 1_800_000_000_000).Draw(t, "upd")}
			for i := range rapid.IntRange(0, 4).Draw(t, "slots") {
				e.C.Slots = append(e.C.Slots, crdt.Slot{Node: crdt.NodeID(uint64(i)*1e15 + crdt.MaxRetiredGen + 3), P: rapid.Uint64().Draw(t, "p"), N: rapid.Uint64Range(0, 1000).Draw(t, "n")})
			}
			for i := range rapid.IntRange(0, 3).Draw(t, "seqs") {
				e.seqs = append(e.seqs, store.OriginSeq{Origin: crdt.NodeID(uint64(i)*1e15 + crdt.MaxRetiredGen + 3), Seq: rapid.Uint64().Draw(t, "seq")})
			}
			return e
		})
		hash := func(ck string) uint64 { return maphash.String(seed, ck) }
		for range rapid.IntRange(1, 600).Draw(t, "ops") {
			ck := genCK.Draw(t, "ck")
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1: // put: the key left the map, so the tier never holds it
				if i := find(ck); i >= 0 {
					if _, ok := c.take(hash(ck), []byte(ck)); !ok {
						t.Fatalf("take %q before put: not found", ck)
					}
					model = slices.Delete(model, i, i+1)
				}
				e := genEntry.Draw(t, "e")
				if len(model) >= limit {
					model = slices.Delete(model, 0, len(model)-(limit-max(limit/8, 1)))
				}
				if !c.put(hash(ck), ck, e) {
					t.Fatalf("put %q refused", ck)
				}
				model = append(model, rec{ck, store.Record{Counter: e.C, UpdatedMs: e.Updated, Seqs: e.seqs}})
			case 2:
				got, ok := c.take(hash(ck), []byte(ck))
				i := find(ck)
				if ok != (i >= 0) {
					t.Fatalf("take %q: found %v, model %v", ck, ok, i >= 0)
				}
				if ok {
					want := model[i].r
					if !slices.Equal(got.Counter.Slots, want.Counter.Slots) || got.UpdatedMs != want.UpdatedMs || !slices.Equal(got.Seqs, want.Seqs) {
						t.Fatalf("take %q: got %+v, want %+v", ck, got, want)
					}
					model = slices.Delete(model, i, i+1)
				}
			case 3:
				c.remove(hash(ck), []byte(ck))
				if i := find(ck); i >= 0 {
					model = slices.Delete(model, i, i+1)
				}
			}
			if c.count(nil) != len(model) {
				t.Fatalf("count %d, model %d", c.count(nil), len(model))
			}
			views := 0
			for _, r := range model {
				if r.ck[0] == 'v' {
					views++
				}
			}
			if got := c.count([]byte("views")); got != views {
				t.Fatalf("count(views) %d, model %d", got, views)
			}
		}
	})
}

// TestCompactRefusesOtherShapes: a counter with a reset record or a
// retired generation is not packed (the record has no room for them), so
// its eviction leaves Pebble to hold it.
func TestCompactRefusesOtherShapes(t *testing.T) {
	c := compact{d: newDict(), limit: 10}
	defer c.release()
	ck := "ns\x00k"
	if c.put(maphash.String(seed, ck), ck, &Entry{C: crdt.Counter{Reset: &crdt.Reset{Epoch: 1}}}) {
		t.Error("a counter with a reset was packed")
	}
	if c.put(maphash.String(seed, ck), ck, &Entry{C: crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredID(1), P: 1}}}}) {
		t.Error("a counter of retired generation 1 was packed")
	}
	if (&compact{d: newDict()}).put(maphash.String(seed, ck), ck, &Entry{}) {
		t.Error("a tier of limit 0 packed a counter")
	}
}

// TestCompactKeepsEvictedCountersWithoutPebbleReads: with a map of a few
// entries per stripe and a compact tier large enough, every counter
// evicted by a checkpointed set is read back from the tier, with its
// value, and not from Pebble; a counter removed (as expiry does) before
// Pebble deletes it is gone from the tier too.
func TestCompactKeepsEvictedCountersWithoutPebbleReads(t *testing.T) {
	st := openStore(t, vfs.NewMem())
	var reads, evictions int
	h := New(Config{Store: st, Stripes: 4, Capacity: 16, Compact: 5000,
		OnReadThrough: func() { reads++ }, OnEvict: func() { evictions++ }})
	const n = 3000
	for i := range n {
		write(t, h, "ns", fmt.Sprintf("k%d", i), int64(i%7+1))
		if i%500 == 499 {
			checkpoint(t, st, h)
		}
	}
	checkpoint(t, st, h)
	if evictions < n/2 {
		t.Fatalf("%d evictions, want most of the %d counters evicted", evictions, n)
	}
	if got := h.Count(""); got != n {
		t.Fatalf("%d counters in memory, want all %d", got, n)
	}
	readsBefore := reads
	for i := range n {
		v, ok := read(t, h, "ns", fmt.Sprintf("k%d", i))
		if !ok || v != int64(i%7+1) {
			t.Fatalf("k%d = %d, %v; want %d", i, v, ok, i%7+1)
		}
	}
	if reads != readsBefore {
		t.Errorf("%d Pebble reads for counters the tier holds, want 0", reads-readsBefore)
	}
	// The reads brought every counter back into the map; the trim after a
	// checkpoint packs them again. Remove one that is packed, as expiry
	// does: the tier must not answer for it afterwards.
	checkpoint(t, st, h)
	ck := Composite(nil, "ns", "k5")
	s := h.StripeOf(ck)
	s.Lock()
	if _, _, packed := s.tier.findCK(maphash.Bytes(seed, ck), ck); !packed || s.Get(string(ck)) != nil {
		s.Unlock()
		t.Fatal("k5 is not packed; the test needs it there")
	}
	s.Remove(string(ck))
	s.Unlock()
	b := st.NewBatch()
	b.DeleteCounter("ns", "k5")
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if v, ok := read(t, h, "ns", "k5"); ok {
		t.Errorf("k5 = %d after Remove and delete, want not found", v)
	}
}

// TestCompactFullArenaDropsOldest: a stripe whose records fill the largest
// arena it may have drops its oldest eighth and goes on packing, instead
// of refusing every counter from then on.
func TestCompactFullArenaDropsOldest(t *testing.T) {
	c := compact{d: newDict(), limit: 1 << 30}
	defer c.release()
	long := strings.Repeat("x", 480)
	e := &Entry{C: crdt.Counter{Slots: []crdt.Slot{{Node: crdt.NodeID(crdt.MaxRetiredGen) + 1, P: 2}}}}
	perChunk := chunkSize / 500
	total := maxChunks*perChunk + perChunk
	for i := range total {
		ck := fmt.Sprintf("ns\x00%s%08d", long, i)
		if !c.put(maphash.String(seed, ck), ck, e) {
			t.Fatalf("put %d of %d refused", i, total)
		}
	}
	if len(c.chunks) > maxChunks {
		t.Fatalf("%d chunks, at most %d allowed", len(c.chunks), maxChunks)
	}
	if c.n >= total || c.n < total*3/4 {
		t.Fatalf("%d of %d records kept; want the oldest eighth or so dropped", c.n, total)
	}
	for _, i := range []int{0, total - c.n - 1, total - c.n, total - 1} {
		ck := fmt.Sprintf("ns\x00%s%08d", long, i)
		_, _, found := c.findCK(maphash.String(seed, ck), []byte(ck))
		if want := i >= total-c.n; found != want {
			t.Errorf("record %d found %v, want %v (the newest %d kept)", i, found, want, c.n)
		}
	}
}

// TestPackIdlePacksOnlyIdleSavedEntries: PackIdle packs the entries idle
// for the given ticks that Pebble holds, keeps the ones used since, and the
// ones not yet saved, and leaves the clean queues holding only entries still
// in the map; the packed counters read back without a Pebble read.
func TestPackIdlePacksOnlyIdleSavedEntries(t *testing.T) {
	st := openStore(t, vfs.NewMem())
	reads := 0
	h := New(Config{Store: st, Stripes: 4, Capacity: 6000, Compact: 10000, OnReadThrough: func() { reads++ }})
	entries := func() int {
		total := 0
		for i := range h.NumStripes() {
			s := h.Stripe(i)
			s.Lock()
			total += len(s.m)
			if queued := len(s.clean) - s.cleanHead; queued > len(s.m) {
				t.Errorf("stripe %d queues %d entries for %d in its map", i, queued, len(s.m))
			}
			s.Unlock()
		}
		return total
	}
	for i := range 300 {
		write(t, h, "ns", fmt.Sprintf("k%d", i), int64(i+1))
	}
	for i := range 5000 { // a burst, for the map and queue to give back
		write(t, h, "burst", fmt.Sprintf("b%d", i), 1)
	}
	checkpoint(t, st, h)
	write(t, h, "ns", "k8", 1000) // changed, not saved: stays, though idle
	for range 10 {
		h.Tick()
	}
	read(t, h, "ns", "k7") // used: stays
	h.PackIdle(10)
	reads = 0 // the writes read Pebble (no key filter here)
	if got := entries(); got != 2 {
		t.Fatalf("%d entries after PackIdle, want 2 (k7 used, k8 unsaved)", got)
	}
	if got, want := h.PackedCount(), 5300-2; got != want {
		t.Fatalf("%d counters packed, want %d", got, want)
	}
	if got := h.Count("ns"); got != 300 {
		t.Fatalf("%d counters of ns in memory, want 300", got)
	}
	for i := range h.NumStripes() {
		if s := h.Stripe(i); s.peak > 1024 || cap(s.clean) > 64 {
			t.Errorf("stripe %d: map rebuilt at a peak of %d, queue room %d; want both small after the burst", i, s.peak, cap(s.clean))
		}
	}
	for i := range 300 {
		want := int64(i + 1)
		if i == 8 {
			want += 1000
		}
		if v, ok := read(t, h, "ns", fmt.Sprintf("k%d", i)); !ok || v != want {
			t.Fatalf("k%d = %d, %v; want %d", i, v, ok, want)
		}
	}
	if reads != 0 {
		t.Errorf("%d Pebble reads, want 0", reads)
	}
	h.ReleasePacked()
	if got := h.PackedCount(); got != 0 {
		t.Fatalf("%d counters packed after ReleasePacked, want 0", got)
	}
	if v, ok := read(t, h, "burst", "b1"); !ok || v != 1 {
		t.Fatalf("burst/b1 = %d, %v after ReleasePacked; want 1 read from Pebble", v, ok)
	}
	// Without a compact tier, PackIdle keeps everything in the map.
	h2 := New(Config{Store: st, Stripes: 4, Capacity: 1000})
	for i := range 10 {
		write(t, h2, "ns2", fmt.Sprintf("k%d", i), 1)
	}
	checkpoint(t, st, h2)
	for range 20 {
		h2.Tick()
	}
	h2.PackIdle(10)
	if got := h2.Count("ns2"); got != 10 {
		t.Fatalf("a set without a tier holds %d counters after PackIdle, want 10", got)
	}
}
