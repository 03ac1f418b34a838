package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// PutNamespace holds n.ns (write) across hasCounters -> Checkpoint (every
// stripe lock); Get holds a stripe lock and calls n.idle -> n.ns.RLock.
func TestRegressPutNamespaceDeadlocksWithReads(t *testing.T) {
	cfg := testConfig(t, vfs.NewMem())
	cfg.Logger = zap.NewNop()
	n := openTest(t, cfg)
	ctx := context.Background()
	for i := range 64 {
		if _, err := n.Incr(ctx, "ev", string(rune(97+i%26))+"k", 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := string(rune('a'+(i+g)%26)) + "k"
				n.Get(ctx, "ev", key, ReadOptions{})
				n.Incr(ctx, "ev", key, 1, WriteOptions{})
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			// a type change needs hasCounters: 409, but it takes every stripe under n.ns.Lock
			if _, err := n.PutNamespace(ctx, "ev", NamespacePatch{Type: ptr(TypeExact)}); err == nil {
				t.Error("type change accepted")
			}
		}
	}()
	_, err0 := n.PutNamespace(ctx, "ev", NamespacePatch{Type: ptr(TypeExact)})
	t.Logf("first put: %v", err0)
	select {
	case <-done:
		stop.Store(true)
		wg.Wait()
	case <-time.After(60 * time.Second):
		t.Fatal("deadlock: PutNamespace and Get/Incr did not finish within 20s")
	}
}
