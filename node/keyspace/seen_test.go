package keyspace

import (
	"fmt"
	"hash/maphash"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// ckptSource is the Set as a checkpoint source, with an empty version
// vector.
type ckptSource struct{ *Set }

func (ckptSource) VersionVector() []store.OriginSeq { return nil }

const testNode = crdt.NodeID(crdt.MaxRetiredGen) + 7

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

// buildFilter runs h's key filter until the test ends and waits for its
// first build; it returns the keys that build scanned.
func buildFilter(t *testing.T, h *Set) uint64 {
	t.Helper()
	stop := make(chan struct{})
	builds := make(chan uint64, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.RunFilter(stop, func(scanned, _ uint64, _ time.Duration, _ bool, err error) {
			if err != nil {
				t.Error(err)
			}
			builds <- scanned
		}, nil)
	}()
	t.Cleanup(func() { close(stop); <-done })
	select {
	case n := <-builds:
		return n
	case <-time.After(30 * time.Second):
		t.Fatal("key filter not built after 30 s")
		return 0
	}
}

// checkpointers holds one Checkpointer per hot set, as the node has: its
// checkpoint numbers grow, and eviction relies on them (a second
// Checkpointer would start again at 1, and an entry collected by it would
// look saved before it is).
var checkpointers sync.Map // *Set -> *store.Checkpointer

func checkpoint(t *testing.T, st *store.Store, h *Set) {
	t.Helper()
	h.Drain(func(string, string, *Entry) {})
	c, _ := checkpointers.LoadOrStore(h, st.NewCheckpointer(store.CheckpointConfig{}, ckptSource{h}))
	if err := c.(*store.Checkpointer).Checkpoint(); err != nil {
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
		buildFilter(t, h)
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
	keys := buildFilter(t, h)
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
	var keys uint64
	h2.RunFilter(stop, func(scanned, _ uint64, _ time.Duration, _ bool, err error) {
		if err != nil {
			t.Error(err)
		}
		keys = scanned
	}, nil)
	if h2.FilterComplete() || keys >= 250_000 {
		t.Fatalf("stopped build: complete %v after %d keys", h2.FilterComplete(), keys)
	}
	if v, ok := read(t, h2, "ns", "k0249999"); !ok || v != 1 {
		t.Fatalf("k0249999 after a stopped build: %d (found %v)", v, ok)
	}
}

// TestFilterGrowsWithoutLosingKeys: a hot set that creates far more
// counters than its filter was planned for gets a bigger filter, built
// while writers keep creating counters; every counter written before,
// during and after the swap is still found once out of memory, and keys
// never written still skip Pebble afterwards.
func TestFilterGrowsWithoutLosingKeys(t *testing.T) {
	st := openStore(t, vfs.NewMem())
	h := New(Config{Store: st, Stripes: 8, Capacity: 500})
	buildFilter(t, h)
	planned0, _, _ := h.FilterStats()
	const writers, per = 4, 20_000
	var wg sync.WaitGroup
	var mu sync.Mutex // checkpoints run one at a time
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				write(t, h, "g", fmt.Sprintf("w%d-%06d", w, i), 1)
				if i%2_000 == 1_999 {
					mu.Lock()
					checkpoint(t, st, h)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	checkpoint(t, st, h)
	deadline := time.Now().Add(30 * time.Second)
	for {
		planned, added, _ := h.FilterStats()
		if planned > planned0 && added <= planned && h.FilterComplete() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("filter planned for %d keys (first %d) with %d added, complete %v: it did not grow",
				planned, planned0, added, h.FilterComplete())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for w := range writers {
		for i := range per {
			key := fmt.Sprintf("w%d-%06d", w, i)
			if v, ok := read(t, h, "g", key); !ok || v != 1 {
				t.Fatalf("%s after the filter grew: %d (found %v), want 1", key, v, ok)
			}
		}
	}
	var reads int
	h2 := New(Config{Store: st, Stripes: 8, Capacity: 500, OnReadThrough: func() { reads++ }})
	h2.filter = filter{}
	h2.filter.init(1)
	h2.filter.layers.Store(h.filter.layers.Load())
	h2.filter.complete.Store(true)
	for i := range 2000 {
		read(t, h2, "g", fmt.Sprintf("never-%d", i))
	}
	if reads > 200 {
		t.Fatalf("%d of 2000 lookups of keys never written read Pebble with the grown filter", reads)
	}
}

// TestFilterPlanFollowsTheKeysNotTheCache: a fresh Set with room for many
// more counters than filterPlanFloor plans its filter for the floor (and
// grows it with the keys, above), not for its capacity: a filter costs 1.5
// bytes a key it is planned for, and a node started with room for 12 M
// counters carried 27 MB of filter for its first million.
func TestFilterPlanFollowsTheKeysNotTheCache(t *testing.T) {
	st := openStore(t, vfs.NewMem())
	h := New(Config{Store: st, Stripes: 8, Capacity: 12_000_000})
	planned, _, _ := h.FilterStats()
	if want := uint64(filterPlanFloor) * 3 / 2; planned < want*9/10 || planned > want*11/10 {
		t.Fatalf("fresh set with room for 12 M counters: filter planned for %d keys, want about %d", planned, want)
	}
	small := New(Config{Store: st, Stripes: 8, Capacity: 1000})
	if p, _, _ := small.FilterStats(); p > 10_000 {
		t.Fatalf("set with room for 1,000 counters: filter planned for %d keys", p)
	}
}

// TestFilterGrowsWithoutReadingPebble: the filter grows by layers, not by
// scanning the store again (which read the whole store at each doubling and
// filled Pebble's block cache with it): with the store closed after the
// first build (a scan would fail), adding many more keys than the filter was
// planned for still adds layers, each planned for as many keys as those before it; every
// key created is still seen, and keys never created mostly look absent
// with seven layers.
func TestFilterGrowsWithoutReadingPebble(t *testing.T) {
	st, err := store.Open(store.Config{Dir: "d", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ReplayLog(func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	h := New(Config{Store: st, Stripes: 8, Capacity: 500})
	stop := make(chan struct{})
	built := make(chan error, 1)
	grew := make(chan uint64, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.RunFilter(stop, func(_, _ uint64, _ time.Duration, _ bool, err error) { built <- err },
			func(layers int, planned uint64) { grew <- planned })
	}()
	defer func() { close(stop); <-done }()
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	planned0, _, layers0 := h.FilterStats()
	const n = 170_000
	for i := range n {
		// What LookupEvict does for a key it creates (a lookup through the
		// Set would read Pebble for each false positive).
		h.filter.add(maphash.Bytes(seed, Composite(nil, "g", fmt.Sprintf("k%07d", i))))
		if i%1000 == 999 {
			// Let RunFilter keep up, as it does with writers that wait
			// for requests: a layer that takes many more keys than
			// planned before the next is added has more false positives.
			for d := time.Now().Add(10 * time.Second); time.Now().Before(d); time.Sleep(time.Millisecond) {
				ls := *h.filter.layers.Load()
				if last := ls[len(ls)-1]; last.added.Load() <= last.capacity()+1000 {
					break
				}
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		planned, added, layers := h.FilterStats()
		ls := *h.filter.layers.Load()
		last := ls[len(ls)-1]
		if last.added.Load() <= last.capacity() {
			if layers0 != 1 || layers < 6 || planned < added || planned > 4*added {
				t.Fatalf("after %d new keys: %d layers (%d at first) planned for %d keys (%d at first), %d added",
					n, layers, layers0, planned, planned0, added)
			}
			for i := 1; i < len(ls); i++ {
				var before uint64
				for _, l := range ls[:i] {
					before += l.capacity()
				}
				if c := ls[i].capacity(); c < before || c > before+before/100+100 {
					t.Fatalf("layer %d planned for %d keys, the %d before it for %d", i, c, i, before)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("filter planned for %d keys in %d layers with %d added: it did not grow", planned, layers, added)
		}
		select {
		case err := <-built:
			t.Fatalf("the filter was built again: %v", err)
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range n {
		if h.filter.absent(maphash.Bytes(seed, Composite(nil, "g", fmt.Sprintf("k%07d", i)))) {
			t.Fatalf("k%07d, created, looks absent", i)
		}
	}
	const probes = 20_000
	var fp int
	for i := range probes {
		if !h.filter.absent(maphash.Bytes(seed, Composite(nil, "g", fmt.Sprintf("never-%d", i)))) {
			fp++
		}
	}
	if _, _, layers := h.FilterStats(); fp > probes*layers/100 {
		t.Fatalf("%d of %d keys never created look seen with %d layers; want at most 1 %% a layer", fp, probes, layers)
	}
	t.Logf("%d of %d keys never created look seen", fp, probes)
}
