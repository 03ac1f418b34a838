package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// putExactMin0 makes ns an exact namespace whose counters never go below 0.
func putExactMin0(t *testing.T, n *Node, ns string) {
	t.Helper()
	zero := int64(0)
	if _, err := n.PutNamespace(context.Background(), ns, NamespacePatch{Type: ptr(TypeExact), Min: NullableInt{Set: true, Value: &zero}}); err != nil {
		t.Fatal(err)
	}
}

// simPeers lists the nodes of a meshSim.
type simPeers struct {
	names, regions []string
}

func (p simPeers) Peers() []Peer {
	out := make([]Peer, len(p.names))
	for i := range p.names {
		out[i] = Peer{Name: p.names[i], Region: p.regions[i], Alive: true}
	}
	return out
}

// simRights calls GrantRights on the peer directly, unless cut off.
type simRights struct {
	m    *meshSim
	from string
}

func (r simRights) TransferRights(ctx context.Context, p Peer, req RightsRequest) (RightsGrant, error) {
	if r.m.isCut(r.from, p.Name) {
		return RightsGrant{}, errors.New("partitioned")
	}
	n := r.m.get(p.Name)
	if n == nil {
		return RightsGrant{}, errors.New("down")
	}
	return n.GrantRights(ctx, req)
}

// TestBoundedCounterNeverCrossesMin checks that bounds hold at
// the node level: three nodes in three regions, a counter at 100 in an exact
// namespace with min 0, 1,000 concurrent decrements spread over the nodes,
// a third of them while one region is cut off. The value never reads below
// 0 on any node (raw merged state, not the clamped read), exactly 100
// decrements succeed, the others get 409 (or 503 while cut off), and a node
// without rights gets them from its peers before answering 409.
func TestBoundedCounterNeverCrossesMin(t *testing.T) {
	names := []string{"a", "b", "c"}
	regions := []string{"r1", "r2", "r3"}
	m := newMeshSim(t, names)
	for i, name := range names {
		cfg := testConfig(t, vfs.NewMem())
		cfg.Name, cfg.Region, cfg.Logger = name, regions[i], nil
		cfg.Peers = simPeers{names, regions}
		cfg.Rights = simRights{m, name}
		n, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		m.set(name, n)
	}
	defer m.close()
	ctx := context.Background()
	a, b, c := m.get("a"), m.get("b"), m.get("c")
	putExactMin0(t, a, "likes")
	exchange := func() {
		for _, x := range names {
			if err := m.get(x).Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range names {
			for _, y := range names {
				if x != y {
					antiEntropy(t, m.get(x), m.get(y))
				}
			}
		}
	}
	exchange()
	// The counter reaches 100 from increments on b and c: their rights.
	for i := range 100 {
		n := b
		if i%5 == 0 {
			n = c
		}
		if _, err := n.Incr(ctx, "likes", "post", 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	exchange()

	// a holds no rights: its first decrement must get some from a peer.
	r, err := a.Incr(ctx, "likes", "post", -1, WriteOptions{})
	if err != nil || r.Value != 99 {
		t.Fatalf("a's first decrement (no rights of its own): %+v %v", r, err)
	}
	var ok, conflicts, unavailable atomic.Int64
	ok.Add(1)
	var below atomic.Int64
	stopReader := make(chan struct{})
	var readerWG sync.WaitGroup
	readerWG.Add(1)
	go func() { // the raw merged value on every node, all the time
		defer readerWG.Done()
		for {
			select {
			case <-stopReader:
				return
			default:
			}
			for _, name := range names {
				if n := m.get(name); n != nil {
					st, _, err := n.rep.CounterState("likes", "post")
					if err == nil && st.Value() < 0 {
						below.Add(1)
					}
				}
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	decrements := func(count int, seed uint64) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				for next.Add(1) <= int64(count) {
					n := m.get(names[rng.IntN(len(names))])
					_, err := n.Incr(ctx, "likes", "post", -1, WriteOptions{})
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrConflict):
						conflicts.Add(1)
					case errors.Is(err, ErrUnavailable):
						unavailable.Add(1)
					default:
						t.Errorf("decrement on %s: %v", n.Name(), err)
					}
				}
			}()
		}
		wg.Wait()
	}
	decrements(59, 1) // 60 with a's first
	t.Logf("after 60 decrements: %d succeeded", ok.Load())
	// Region r3 (c) cut off from the others for 400 more.
	m.cut("c")
	decrements(400, 2)
	t.Logf("after 460 (400 with c cut off): %d succeeded, %d 503", ok.Load(), unavailable.Load())
	m.heal()
	exchange()
	decrements(540, 3)
	exchange()
	close(stopReader)
	readerWG.Wait()
	t.Logf("1,000 decrements: %d succeeded, %d refused with 409, %d with 503", ok.Load(), conflicts.Load(), unavailable.Load())
	if ok.Load() != 100 {
		t.Fatalf("%d decrements succeeded, want exactly 100", ok.Load())
	}
	if ok.Load()+conflicts.Load()+unavailable.Load() != 1000 {
		t.Fatalf("outcomes add up to %d", ok.Load()+conflicts.Load()+unavailable.Load())
	}
	if below.Load() > 0 {
		t.Fatalf("a node's merged value was below 0 %d times", below.Load())
	}
	for _, name := range names {
		st, _, err := m.get(name).rep.CounterState("likes", "post")
		if err != nil || st.Value() != 0 {
			t.Fatalf("%s reads %d at the end, want 0 (%v)", name, st.Value(), err)
		}
	}
	// Resets and deletes are refused in a bounded exact namespace.
	if _, err := a.Reset(ctx, "likes", "post", 5); !errors.Is(err, ErrConflict) {
		t.Fatalf("reset: %v", err)
	}
	if err := a.Delete(ctx, "likes", "post"); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete: %v", err)
	}
	// And the bounds cannot change now that it holds counters.
	if _, err := a.PutNamespace(ctx, "likes", NamespacePatch{Min: NullableInt{Set: true, Value: ptr(int64(-5))}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("changing min with counters: %v", err)
	}
	if _, err := a.PutNamespace(ctx, "other", NamespacePatch{Type: ptr(TypeExact), Min: NullableInt{Set: true, Value: ptr(int64(3))}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("exact with min 3: %v", err)
	}
}

// TestBoundsSingleNode: a node alone answers 409 at the bound, and the
// bank's initial rights of a negative min and of a max are honoured.
func TestBoundsSingleNode(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	if _, err := n.PutNamespace(ctx, "q", NamespacePatch{Type: ptr(TypeExact), Min: NullableInt{Set: true, Value: ptr(int64(-2))}, Max: NullableInt{Set: true, Value: ptr(int64(3))}}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		by   int64
		want int64 // value after, or -100 for 409
	}{{-1, -1}, {-1, -2}, {-1, -100}, {5, 3}, {1, -100}, {-3, 0}, {3, 3}, {1, -100}}
	for i, s := range steps {
		r, err := n.Incr(ctx, "q", "k", s.by, WriteOptions{})
		if s.want == -100 {
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("step %d (%+d): %+v %v, want 409", i, s.by, r, err)
			}
			continue
		}
		if err != nil || r.Value != s.want {
			t.Fatalf("step %d (%+d): %+v %v, want %d", i, s.by, r, err, s.want)
		}
	}
	// A batch's net change counts.
	if _, err := n.Batch(ctx, []BatchOp{{NS: "q", Key: "k", By: 1}, {NS: "q", Key: "k", By: -1}}, "", false); err != nil {
		t.Fatalf("a batch with net 0 at the max: %v", err)
	}
	if _, err := n.Batch(ctx, []BatchOp{{NS: "q", Key: "k", By: -6}}, "", false); !errors.Is(err, ErrConflict) {
		t.Fatalf("a batch below the min: %v", err)
	}
	if got := mustGet(t, n, "q", "k"); got != 3 {
		t.Fatalf("k = %d, want 3", got)
	}
	_ = fmt.Sprint
}
