package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

func TestNamespaceCapCountsEveryCreator(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, vfs.NewMem())
	cfg.MaxNamespaces = 3
	n := openTest(t, cfg)
	for _, ns := range []string{"a", "b", "c"} {
		if _, err := n.Incr(ctx, ns, "k", 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	peer := crdt.NodeIDFromName("n2")
	payload, err := msgpack.Marshal(&namespaceRecord{Config: DefaultNamespaceConfig(DurabilitySync)})
	if err != nil {
		t.Fatal(err)
	}
	hlc := uint64(time.Now().UnixMilli()) << 16
	tests := []struct {
		name    string
		create  func(ns string) error
		wantErr bool // else the namespace is silently not created
	}{
		{"first write", func(ns string) error { _, err := n.Incr(ctx, ns, "k", 1, WriteOptions{}); return err }, true},
		{"put", func(ns string) error { _, err := n.PutNamespace(ctx, ns, NamespacePatch{}); return err }, true},
		{"replicated delta", func(ns string) error {
			return n.Replica().Apply(change.Batch{Deltas: []change.Delta{{NS: ns, Key: "k", Origin: peer, Seq: 1, State: crdt.Counter{Slots: []crdt.Slot{{Node: peer, P: 1}}}}}})
		}, true},
		{"replicated config", func(ns string) error {
			return n.Replica().Apply(change.Batch{Configs: []change.ConfigRecord{{NS: ns, HLC: hlc, Origin: peer, Payload: payload}}})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.create("d")
			if tt.wantErr && !errors.Is(err, ErrTooManyNamespaces) {
				t.Fatalf("err = %v, want ErrTooManyNamespaces", err)
			}
			if _, err := n.GetNamespace("d"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("namespace d past the cap: err = %v, want ErrNotFound", err)
			}
			if got := len(n.Namespaces()); got != 3 {
				t.Fatalf("%d namespaces, want 3", got)
			}
			if _, err := n.Incr(ctx, "a", "k", 1, WriteOptions{}); err != nil {
				t.Fatalf("a write to an existing namespace: %v", err)
			}
		})
	}
}

func TestSeriesCapPerKey(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	cfg := testConfig(t, fs)
	cfg.MaxSeriesPerKey = 2
	n := openTest(t, cfg)
	incr := func(key, v string) error {
		_, err := n.Incr(ctx, "ns", key, 1, WriteOptions{Labels: map[string]string{"v": v}})
		return err
	}
	tests := []struct {
		name, key, v string
		want         error
	}{
		{"first series", "k", "1", nil},
		{"second series", "k", "2", nil},
		{"third series", "k", "3", ErrTooManySeries},
		{"an existing series", "k", "1", nil},
		{"another key", "j", "3", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := mustGet(t, n, "ns", tt.key)
			err := incr(tt.key, tt.v)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			wantValue := before + 1
			if tt.want != nil {
				wantValue = before
			}
			if got := mustGet(t, n, "ns", tt.key); got != wantValue {
				t.Fatalf("ns/%s = %d, want %d", tt.key, got, wantValue)
			}
		})
	}
	// The cap holds across a restart: the series are counted from the store.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = openTest(t, cfg)
	if err := incr("k", "4"); !errors.Is(err, ErrTooManySeries) {
		t.Fatalf("a third series after restart: err = %v, want ErrTooManySeries", err)
	}
	if err := incr("k", "2"); err != nil {
		t.Fatalf("an existing series after restart: %v", err)
	}
}
