package keyspace

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// ckptSource is the Set as a checkpoint source, with an empty version
// vector.
type ckptSource struct{ *Set }

func (ckptSource) VersionVector() []store.OriginSeq { return nil }

const testNode crdt.NodeID = 7

// write adds by to ns/key through h, as the write path does, creating the
// counter when needed.
func write(t *testing.T, h *Set, ns, key string, by int64) {
	t.Helper()
	ck := Composite(nil, ns, key)
	s := h.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := h.Lookup(s, ck, ns, key, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.C.Add(testNode, by); err != nil {
		t.Fatal(err)
	}
	h.MarkDirty(s, e)
}

// read returns the value of ns/key through h and whether it exists.
func read(t *testing.T, h *Set, ns, key string) (int64, bool) {
	t.Helper()
	ck := Composite(nil, ns, key)
	s := h.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := h.Lookup(s, ck, ns, key, false)
	if err != nil {
		t.Fatal(err)
	}
	if e == nil {
		return 0, false
	}
	return e.C.Value(), true
}

func openStore(t *testing.T, fs vfs.FS) *store.Store {
	t.Helper()
	st, err := store.Open(store.Config{Dir: "d", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.ReplayLog(func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return st
}

func checkpoint(t *testing.T, st *store.Store, h *Set) {
	t.Helper()
	h.Drain(func(string, string, *Entry) {})
	if err := st.NewCheckpointer(store.CheckpointConfig{}, ckptSource{h}).Checkpoint(); err != nil {
		t.Fatal(err)
	}
}

// TestFilterSkipsReadsOfNewKeysAndLosesNone: once the filter of keys on
// disk is built, every counter Pebble holds is still found (no false
// negative, which would restart a counter from 0), while lookups of keys
// never written mostly skip the Pebble read.
func TestFilterSkipsReadsOfNewKeysAndLosesNone(t *testing.T) {
	fs := vfs.NewMem()
	st := openStore(t, fs)
	const n = 2000
	{
		h := New(Config{Store: st, Stripes: 4, Capacity: 100})
		if _, err := h.BuildFilter(nil); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			write(t, h, "ns", fmt.Sprintf("k%05d", i), int64(i+1))
		}
		checkpoint(t, st, h)
	}

	// A fresh hot set over the same store, as after a restart.
	var reads int
	h := New(Config{Store: st, Stripes: 4, Capacity: 100, OnReadThrough: func() { reads++ }})
	if h.FilterComplete() {
		t.Fatal("filter complete before it was built")
	}
	// Before the filter is complete, a key never seen is read from Pebble.
	if _, ok := read(t, h, "ns", "never"); ok || reads != 1 {
		t.Fatalf("before the build: found %v after %d reads, want not found after 1", ok, reads)
	}
	keys, err := h.BuildFilter(nil)
	if err != nil {
		t.Fatal(err)
	}
	if keys < n || !h.FilterComplete() {
		t.Fatalf("build read %d keys (complete %v), want at least %d", keys, h.FilterComplete(), n)
	}
	for i := range n {
		key := fmt.Sprintf("k%05d", i)
		v, ok := read(t, h, "ns", key)
		if !ok || v != int64(i+1) {
			t.Fatalf("%s: read %d (found %v), want %d", key, v, ok, i+1)
		}
	}
	reads = 0
	const misses = 5000
	for i := range misses {
		if _, ok := read(t, h, "ns", fmt.Sprintf("new%05d", i)); ok {
			t.Fatalf("new%05d found", i)
		}
	}
	if reads > misses/10 {
		t.Fatalf("%d of %d lookups of keys never written read Pebble; want at most %d", reads, misses, misses/10)
	}

	// A key created after the build reaches Pebble through a checkpoint;
	// once out of memory it must be read back, not taken for new.
	write(t, h, "ns", "fresh", 41)
	checkpoint(t, st, h)
	ck := Composite(nil, "ns", "fresh")
	s := h.StripeOf(ck)
	s.Lock()
	if e := s.Get(string(ck)); e == nil || !h.Evictable(e) {
		s.Unlock()
		t.Fatal("fresh is not in memory and evictable after its checkpoint")
	}
	s.Remove(string(ck))
	s.Unlock()
	write(t, h, "ns", "fresh", 1)
	if v, ok := read(t, h, "ns", "fresh"); !ok || v != 42 {
		t.Fatalf("fresh after eviction and one more increment: %d (found %v), want 42", v, ok)
	}
}

// TestFilterBuildStops: a build stopped before it ends leaves the filter
// incomplete, so lookups keep reading Pebble.
func TestFilterBuildStops(t *testing.T) {
	st := openStore(t, vfs.NewMem())
	h := New(Config{Store: st, Stripes: 1, Capacity: 300_000})
	for i := range 250_000 {
		write(t, h, "ns", fmt.Sprintf("k%07d", i), 1)
	}
	checkpoint(t, st, h)
	h2 := New(Config{Store: st, Stripes: 1, Capacity: 10})
	stop := make(chan struct{})
	close(stop)
	keys, err := h2.BuildFilter(stop)
	if err != nil {
		t.Fatal(err)
	}
	if h2.FilterComplete() || keys >= 250_000 {
		t.Fatalf("stopped build: complete %v after %d keys", h2.FilterComplete(), keys)
	}
	if v, ok := read(t, h2, "ns", "k0249999"); !ok || v != 1 {
		t.Fatalf("k0249999 after a stopped build: %d (found %v)", v, ok)
	}
}
