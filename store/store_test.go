package store

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/faultfs"
	"go.uber.org/zap/zaptest"
)

// openTest opens a store in dir on fs and closes it at cleanup.
func openTest(t testing.TB, fs vfs.FS, dir string) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.FS = fs
	// Small caches and memtables keep tests light.
	cfg.CacheSize = 1 << 20
	cfg.MemTableSize = 1 << 20
	cfg.Logger = zaptest.NewLogger(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// commit writes with fn in one synced batch.
func commit(t testing.TB, s *Store, fn func(b *Batch)) {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	fn(b)
	if err := b.Commit(true); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

var (
	nodeA = crdt.NodeIDFromName("a")
	nodeB = crdt.NodeIDFromName("b")
)

// sampleCounters covers the shapes a counter takes.
func sampleCounters() map[string]crdt.Counter {
	var incr crdt.Counter
	incr.Add(nodeA, 5)

	var mixed crdt.Counter
	mixed.Add(nodeA, 1<<40)
	mixed.Add(nodeB, -7)
	mixed.Add(nodeB, 3)

	reset := mixed.Clone()
	reset.SetReset(nodeA, -42, false)
	reset.Add(nodeB, 2)

	deleted := incr.Clone()
	deleted.SetReset(nodeB, 0, true)

	var many crdt.Counter
	for i := range 300 {
		if _, err := many.Add(crdt.NodeID(crdt.MaxRetiredGen)+crdt.NodeID(i*7919+1), int64(i)-150); err != nil {
			panic(err)
		}
	}
	many.SetReset(crdt.NodeID(crdt.MaxRetiredGen)+3, 1<<62, false)

	return map[string]crdt.Counter{
		"zero":              {},
		"incr":              incr,
		"mixed":             mixed,
		"reset":             reset,
		"deleted":           deleted,
		"many":              many,
		"empty-reset-floor": {Reset: &crdt.Reset{Epoch: 1, Node: nodeA, Value: -1}},
	}
}

func TestCounterRoundTrip(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	for name, c := range sampleCounters() {
		t.Run(name, func(t *testing.T) {
			commit(t, s, func(b *Batch) { b.PutCounter("ns", name, c) })
			got, found, err := s.GetCounter("ns", name)
			if err != nil || !found {
				t.Fatalf("GetCounter = found %v, err %v", found, err)
			}
			if !got.Equal(c) || got.Value() != c.Value() {
				t.Fatalf("got %+v (value %d), want %+v (value %d)", got, got.Value(), c, c.Value())
			}
			dec, err := DecodeCounter(EncodeCounter(nil, c))
			if err != nil || !dec.Equal(c) {
				t.Fatalf("DecodeCounter(EncodeCounter) = %+v, %v", dec, err)
			}
		})
	}
}

func TestPutCounterCopiesValue(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	var c crdt.Counter
	c.Add(nodeA, 1)
	b := s.NewBatch()
	defer b.Close()
	b.PutCounter("ns", "k", c)
	c.Add(nodeA, 100) // after PutCounter: must not reach the store
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.GetCounter("ns", "k")
	if err != nil || got.Value() != 1 {
		t.Fatalf("value %d, err %v; want 1", got.Value(), err)
	}
}

func TestGetMissing(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	c, found, err := s.GetCounter("ns", "nope")
	if err != nil || found || c.Value() != 0 {
		t.Fatalf("GetCounter = %+v, %v, %v; want zero, false, nil", c, found, err)
	}
	var v map[string]any
	if found, err := s.GetNamespace("ns", &v); err != nil || found {
		t.Fatalf("GetNamespace = %v, %v", found, err)
	}
	if found, err := s.GetMeta("nope", &v); err != nil || found {
		t.Fatalf("GetMeta = %v, %v", found, err)
	}
}

type nsConfig struct {
	Type       string   `msgpack:"type"`
	Durability string   `msgpack:"durability"`
	Windows    []string `msgpack:"windows"`
	Min        *int64   `msgpack:"min"`
}

func TestNamespacesAndMeta(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	lo := int64(0)
	configs := map[string]nsConfig{
		"pages":  {Type: "eventual", Durability: "sync", Windows: []string{"1m", "1h"}},
		"likes":  {Type: "exact", Durability: "async", Min: &lo},
		"a.b-c_": {Type: "approximate"},
	}
	commit(t, s, func(b *Batch) {
		for ns, cfg := range configs {
			if err := b.PutNamespace(ns, cfg); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.PutMeta("node", map[string]uint64{"seq": 42}); err != nil {
			t.Fatal(err)
		}
		// A counter in the same namespace must not show up as a namespace.
		b.PutCounter("pages", "home", crdt.Counter{})
	})
	for ns, want := range configs {
		var got nsConfig
		found, err := s.GetNamespace(ns, &got)
		if err != nil || !found {
			t.Fatalf("GetNamespace(%q) = %v, %v", ns, found, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetNamespace(%q) = %+v, want %+v", ns, got, want)
		}
	}
	var listed []string
	err := s.ListNamespaces(func(ns string, decode func(any) error) bool {
		var cfg nsConfig
		if err := decode(&cfg); err != nil {
			t.Errorf("decode %q: %v", ns, err)
		}
		if cfg.Type != configs[ns].Type {
			t.Errorf("listed %q with type %q, want %q", ns, cfg.Type, configs[ns].Type)
		}
		listed = append(listed, ns)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.b-c_", "likes", "pages"}; !slices.Equal(listed, want) {
		t.Fatalf("ListNamespaces = %q, want %q", listed, want)
	}
	// Stop after the first.
	listed = nil
	if err := s.ListNamespaces(func(ns string, _ func(any) error) bool {
		listed = append(listed, ns)
		return false
	}); err != nil || len(listed) != 1 {
		t.Fatalf("ListNamespaces with stop = %q, %v", listed, err)
	}
	var meta map[string]uint64
	if found, err := s.GetMeta("node", &meta); err != nil || !found || meta["seq"] != 42 {
		t.Fatalf("GetMeta = %v, %v, %v", meta, found, err)
	}
}

func TestScanCounters(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	keys := []string{"", "a", "a/1", "a/2", "a/3", "ab", "b", "b/\xff", "b\xff\xff", "c"}
	commit(t, s, func(b *Batch) {
		for i, k := range keys {
			var c crdt.Counter
			c.Add(nodeA, int64(i+1))
			b.PutCounter("ns", k, c)
			// Neighbouring namespaces whose names extend "ns" or sort
			// next to it must not leak into the scan.
			b.PutCounter("ns2", k, c)
			b.PutCounter("n", k, c)
		}
	})
	tests := []struct {
		name, prefix, after string
		limit               int
		want                []string
	}{
		{name: "all", want: keys},
		{name: "prefix", prefix: "a/", want: []string{"a/1", "a/2", "a/3"}},
		{name: "prefix includes itself", prefix: "a", want: []string{"a", "a/1", "a/2", "a/3", "ab"}},
		{name: "after", after: "a/3", want: []string{"ab", "b", "b/\xff", "b\xff\xff", "c"}},
		{name: "after is exclusive", prefix: "a/", after: "a/1", want: []string{"a/2", "a/3"}},
		{name: "after before prefix", prefix: "b", after: "a", want: []string{"b", "b/\xff", "b\xff\xff"}},
		{name: "after past prefix", prefix: "a", after: "b", want: nil},
		{name: "after not a key", prefix: "a/", after: "a/15", want: []string{"a/2", "a/3"}},
		{name: "prefix with 0xff", prefix: "b\xff", want: []string{"b\xff\xff"}},
		{name: "no match", prefix: "zz", want: nil},
		{name: "stop", limit: 2, want: []string{"", "a"}},
		{name: "stop with prefix and after", prefix: "a", after: "a/1", limit: 1, want: []string{"a/2"}},
	}
	value := map[string]int64{}
	for i, k := range keys {
		value[k] = int64(i + 1)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := s.ScanCounters("ns", tt.prefix, tt.after, func(key string, c crdt.Counter) bool {
				if c.Value() != value[key] {
					t.Errorf("key %q: value %d, want %d", key, c.Value(), value[key])
				}
				got = append(got, key)
				return tt.limit == 0 || len(got) < tt.limit
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ScanCounters(%q, %q) = %q, want %q", tt.prefix, tt.after, got, tt.want)
			}
		})
	}
}

func TestDeleteCounter(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	commit(t, s, func(b *Batch) {
		b.PutCounter("ns", "x", crdt.Counter{})
		b.PutCounter("ns", "y", crdt.Counter{})
	})
	commit(t, s, func(b *Batch) { b.DeleteCounter("ns", "x") })
	if _, found, err := s.GetCounter("ns", "x"); err != nil || found {
		t.Fatalf("deleted counter: found %v, err %v", found, err)
	}
	var keys []string
	if err := s.ScanCounters("ns", "", "", func(k string, _ crdt.Counter) bool {
		keys = append(keys, k)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"y"}) {
		t.Fatalf("keys after delete = %q", keys)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	fs := vfs.NewMem()
	counters := sampleCounters()
	s := openTest(t, fs, "data/dir")
	commit(t, s, func(b *Batch) {
		for k, c := range counters {
			b.PutCounter("ns", k, c)
		}
		if err := b.PutNamespace("ns", nsConfig{Type: "exact"}); err != nil {
			t.Fatal(err)
		}
		if err := b.PutMeta("m", "v"); err != nil {
			t.Fatal(err)
		}
	})
	// An unsynced commit is still there after a clean Close.
	b := s.NewBatch()
	b.PutCounter("ns", "nosync", counters["incr"])
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, fs, "data/dir")
	counters["nosync"] = counters["incr"]
	for k, c := range counters {
		got, found, err := s.GetCounter("ns", k)
		if err != nil || !found || !got.Equal(c) {
			t.Errorf("after reopen %q: %+v, %v, %v; want %+v", k, got, found, err, c)
		}
	}
	var cfg nsConfig
	if found, err := s.GetNamespace("ns", &cfg); err != nil || !found || cfg.Type != "exact" {
		t.Errorf("namespace after reopen: %+v, %v, %v", cfg, found, err)
	}
	var m string
	if found, err := s.GetMeta("m", &m); err != nil || !found || m != "v" {
		t.Errorf("meta after reopen: %q, %v, %v", m, found, err)
	}
}

func TestClosed(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	early := s.NewBatch()
	early.PutCounter("ns", "k", crdt.Counter{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := early.Commit(true); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit of a batch made before Close = %v, want ErrClosed", err)
	}
	early.Close()
	checks := map[string]error{
		"Commit": func() error {
			b := s.NewBatch()
			defer b.Close()
			b.PutCounter("ns", "k", crdt.Counter{})
			return b.Commit(true)
		}(),
		"GetCounter":     func() error { _, _, err := s.GetCounter("ns", "k"); return err }(),
		"ScanCounters":   s.ScanCounters("ns", "", "", func(string, crdt.Counter) bool { return true }),
		"GetNamespace":   func() error { _, err := s.GetNamespace("ns", new(any)); return err }(),
		"ListNamespaces": s.ListNamespaces(func(string, func(any) error) bool { return true }),
		"GetMeta":        func() error { _, err := s.GetMeta("m", new(any)); return err }(),
		"Flush":          s.Flush(),
		"NewCommitter": func() error {
			_, err := s.NewCommitter(DefaultCommitterConfig(), newMapSource())
			return err
		}(),
	}
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if got := s.DiskUsage(); got != 0 {
		t.Errorf("DiskUsage after Close = %d, want 0", got)
	}
}

func TestInvalidNames(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	for _, ns := range []string{"", "a\x00b"} {
		b := s.NewBatch()
		b.PutCounter("ok", "k", crdt.Counter{})
		b.PutCounter(ns, "k", crdt.Counter{})
		if err := b.Commit(true); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Commit with namespace %q = %v, want ErrInvalidName", ns, err)
		}
		b.Close()
		if _, _, err := s.GetCounter(ns, "k"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("GetCounter(%q) = %v, want ErrInvalidName", ns, err)
		}
		if err := s.NewBatch().PutNamespace(ns, 1); !errors.Is(err, ErrInvalidName) {
			t.Errorf("PutNamespace(%q) = %v, want ErrInvalidName", ns, err)
		}
	}
	// Nothing of the refused batches was written.
	if _, found, _ := s.GetCounter("ok", "k"); found {
		t.Error("a refused batch was half applied")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		ok   bool
	}{
		{name: "defaults with dir", cfg: func(c *Config) {}, ok: true},
		{name: "no dir", cfg: func(c *Config) { c.Dir = "" }},
		{name: "negative cache", cfg: func(c *Config) { c.CacheSize = -1 }},
		{name: "huge memtable", cfg: func(c *Config) { c.MemTableSize = 4 << 30 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Dir = "db"
			cfg.FS = vfs.NewMem()
			tt.cfg(&cfg)
			err := cfg.validate()
			if (err == nil) != tt.ok {
				t.Fatalf("validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("validate() = %v, want ErrInvalidConfig", err)
			}
			if s, err := Open(cfg); err == nil {
				s.Close()
				if !tt.ok {
					t.Fatal("Open accepted an invalid config")
				}
			} else if tt.ok {
				t.Fatalf("Open: %v", err)
			}
		})
	}
}

// TestLogWriteAheadDefault: segments are zeroed ahead by default on the
// operating system's file system (also behind a wrapper), and not in memory.
func TestLogWriteAheadDefault(t *testing.T) {
	for _, c := range []struct {
		name string
		fs   vfs.FS
		want int64
	}{
		{"os", vfs.Default, defaultLogWriteAhead},
		{"os behind a wrapper that unwraps", faultfs.New(vfs.Default, func(string) bool { return false }), defaultLogWriteAhead},
		{"memory", vfs.NewMem(), -1},
	} {
		cfg := DefaultConfig()
		cfg.FS = c.fs
		if got := cfg.withDefaults().LogWriteAhead; got != c.want {
			t.Errorf("%s: LogWriteAhead = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestStopWritesMemTables: writes stall at about 256 MiB of queued
// memtables and large batches whatever the memtable size, within 4 to 32
// memtables.
func TestStopWritesMemTables(t *testing.T) {
	for _, c := range []struct {
		size uint64
		want int
	}{{0, 32}, {1 << 20, 32}, {8 << 20, 32}, {16 << 20, 16}, {64 << 20, 4}, {1 << 30, 4}} {
		if got := stopWritesMemTables(c.size); got != c.want {
			t.Errorf("memtables of %d bytes: writes stall at %d of them, want %d", c.size, got, c.want)
		}
	}
}
