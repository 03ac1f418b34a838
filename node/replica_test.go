package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/internal/wait"
)

// direct is a Publisher that applies every batch to other nodes, in order,
// on its own goroutine (Publish must not block: it runs on the committer).
type direct struct {
	t       *testing.T
	to      []*Node
	mu      sync.Mutex
	queue   []change.Batch
	working bool
	idle    *sync.Cond
}

func newDirect(t *testing.T, to ...*Node) *direct {
	d := &direct{t: t, to: to}
	d.idle = sync.NewCond(&d.mu)
	return d
}

func (d *direct) Publish(b change.Batch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue = append(d.queue, b)
	if !d.working {
		d.working = true
		go d.run()
	}
}

func (d *direct) run() {
	d.mu.Lock()
	for len(d.queue) > 0 {
		b := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()
		for _, n := range d.to {
			if err := n.Replica().Apply(b); err != nil {
				d.t.Errorf("apply on %s: %v", n.Name(), err)
			}
		}
		d.mu.Lock()
	}
	d.working = false
	d.idle.Broadcast()
	d.mu.Unlock()
}

// wait blocks until every published batch is applied.
func (d *direct) wait() {
	d.mu.Lock()
	for d.working {
		d.idle.Wait()
	}
	d.mu.Unlock()
}

func openNamed(t *testing.T, name string, fs vfs.FS) *Node {
	t.Helper()
	cfg := testConfig(t, fs)
	cfg.Name = name
	return openTest(t, cfg)
}

// antiEntropy sends dst everything src holds beyond dst's version vector,
// the way gossip's anti-entropy does.
func antiEntropy(t *testing.T, src, dst *Node) {
	t.Helper()
	theirs := dst.Replica().VersionVector()
	for origin, upto := range src.Replica().VersionVector() {
		after := theirs[origin]
		if upto <= after {
			continue
		}
		var b change.Batch
		if err := src.Replica().ScanSince(origin, after, func(d change.Delta) bool {
			b.Deltas = append(b.Deltas, d)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		b.Ranges = []change.Range{{Origin: origin, After: after, Upto: upto}}
		if err := dst.Replica().Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	var cfgs change.Batch
	cfgs.Configs = src.Replica().Configs()
	if err := dst.Replica().Apply(cfgs); err != nil {
		t.Fatal(err)
	}
}

func TestStreamedChangesConverge(t *testing.T) {
	a := openNamed(t, "a", vfs.NewMem())
	b := openNamed(t, "b", vfs.NewMem())
	toB, toA := newDirect(t, b), newDirect(t, a)
	a.SetPublisher(toB)
	b.SetPublisher(toA)
	ctx := context.Background()
	for i := range 50 {
		key := fmt.Sprintf("k%d", i%7)
		if _, err := a.Incr(ctx, "v", key, 2, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Incr(ctx, "v", key, -1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Let every change reach both nodes, so that the reset observes them
	// all (a reset keeps the increments it has not seen).
	toB.wait()
	toA.wait()
	if _, err := a.Reset(ctx, "v", "k0", 100); err != nil {
		t.Fatal(err)
	}
	toB.wait()
	toA.wait()
	for i := range 7 {
		key := fmt.Sprintf("k%d", i)
		va, vb := mustGet(t, a, "v", key), mustGet(t, b, "v", key)
		if va != vb {
			t.Fatalf("%s: a reads %d, b reads %d", key, va, vb)
		}
	}
	if got := mustGet(t, a, "v", "k0"); got != 100 {
		t.Fatalf("k0 after reset = %d, want 100", got)
	}
	// Each node's vector holds the other's sequence: the stream's ranges
	// were contiguous.
	va, vb := a.Replica().VersionVector(), b.Replica().VersionVector()
	if va[b.ID()] != vb[b.ID()] || vb[a.ID()] != va[a.ID()] || va[a.ID()] == 0 {
		t.Fatalf("version vectors differ: a %v, b %v", va, vb)
	}
}

func TestAntiEntropyCatchesUpAndRestoresOwnSlot(t *testing.T) {
	ctx := context.Background()
	fsA := vfs.NewMem()
	a := openNamed(t, "a", fsA)
	async := "async"
	if _, err := a.PutNamespace(ctx, "v", NamespacePatch{Durability: &async}); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := a.Incr(ctx, "v", fmt.Sprintf("k%03d", i), int64(i), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil { // async writes: make them durable and counted
		t.Fatal(err)
	}
	// A new node catches up from nothing.
	b := openNamed(t, "b", vfs.NewMem())
	antiEntropy(t, a, b)
	for i := range 300 {
		if got := mustGet(t, b, "v", fmt.Sprintf("k%03d", i)); got != int64(i) {
			t.Fatalf("b: k%03d = %d, want %d", i, got, i)
		}
	}
	ns, err := b.GetNamespace("v")
	if err != nil || ns.Config.Durability != "async" {
		t.Fatalf("b did not get the namespace config: %+v %v", ns, err)
	}
	seqBefore := a.Replica().VersionVector()[a.ID()]
	// a loses its disk and comes back under the same name: its own slot
	// comes back from b, and its next changes get fresh sequence numbers.
	// As countd does it in a mesh, a2 stays unready until it has caught
	// up: only then does it take its own slot from a peer.
	a.Close()
	cfg := testConfig(t, vfs.NewMem())
	cfg.Name, cfg.StartUnready = "a", true
	a2 := openTest(t, cfg)
	antiEntropy(t, b, a2)
	a2.MarkReady()
	if got := a2.Replica().VersionVector()[a2.ID()]; got != seqBefore {
		t.Fatalf("a's own sequence after recovery = %d, want %d", got, seqBefore)
	}
	if _, err := a2.Incr(ctx, "v", "k001", 10, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The namespace is async: wait for the commit that gives the change
	// its sequence number.
	wait.For(t, 5*time.Second, "the commit of the async increment", func() (bool, string) {
		seq := a2.Replica().VersionVector()[a2.ID()]
		return seq > seqBefore, fmt.Sprintf("own sequence %d, was %d", seq, seqBefore)
	})
	if got := mustGet(t, a2, "v", "k001"); got != 11 {
		t.Fatalf("k001 after recovery and +10 = %d, want 11 (the recovered 1 plus 10)", got)
	}
	antiEntropy(t, a2, b)
	if got := mustGet(t, b, "v", "k001"); got != 11 {
		t.Fatalf("b after the new change = %d, want 11", got)
	}

}
