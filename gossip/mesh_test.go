package gossip_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/gossiptest"
	"github.com/countmesh/countmesh/internal/wait"
)

func TestReplicatesAcrossRegions(t *testing.T) {
	c := newCluster(t, 1, []string{"a1@A", "a2@A", "b1@B", "b2@B", "c1@C"}, nil)
	c.startAll()
	for i, n := range c.nodes {
		for j := 0; j < 10; j++ {
			c.add(n, "ns", fmt.Sprintf("k%d", j), int64(i+1))
		}
	}
	took := c.waitConverged(5 * time.Second)
	t.Logf("converged in %v", took)
	for j := 0; j < 10; j++ {
		if v := c.nodes[3].rep.Counter("ns", fmt.Sprintf("k%d", j)).Value(); v != 15 {
			t.Fatalf("k%d = %d, want 1+2+3+4+5 = 15", j, v)
		}
	}
	// Every node's vector covers every origin's changes.
	for _, n := range c.nodes {
		vv := n.rep.VersionVector()
		for _, o := range c.nodes {
			if got := vv[o.rep.Self()]; got != 10 {
				t.Errorf("%s: vv[%s] = %d, want 10", n.name, o.name, got)
			}
		}
	}
}

func TestCoalescesHotCounterOnTheWire(t *testing.T) {
	c := newCluster(t, 2, []string{"a1@A", "a2@A"}, func(cfg *gossip.Config) {
		cfg.FlushInterval = 300 * time.Millisecond // everything below lands in one flush
		cfg.AntiEntropyInterval = time.Hour
	})
	c.startAll()
	a1, a2 := c.nodes[0], c.nodes[1]
	for i := 0; i < 500; i++ {
		c.add(a1, "ns", "hot", 1)
	}
	for i := 0; i < 500; i++ {
		c.add(a1, "ns", fmt.Sprintf("cold%d", i%5), 1)
	}
	c.waitConverged(5 * time.Second)
	st1, st2 := a1.mesh.Stats(), a2.mesh.Stats()
	if st1.Published != 1000 {
		t.Fatalf("published %d batches, want 1000", st1.Published)
	}
	// 6 distinct counters; a flush may split the 1000 changes in two.
	if st2.DeltasReceived > 12 {
		t.Fatalf("peer received %d deltas for 6 counters changed 1000 times; coalescing failed", st2.DeltasReceived)
	}
	if v := a2.rep.Counter("ns", "hot").Value(); v != 500 {
		t.Fatalf("hot = %d, want 500", v)
	}
	if vv := a2.rep.VersionVector()[a1.rep.Self()]; vv != 1000 {
		t.Fatalf("peer's vector for a1 = %d, want 1000 (the coalesced ranges are contiguous)", vv)
	}
	t.Logf("1000 changes of 6 counters: %d deltas, %d bytes on the wire", st2.DeltasReceived, st1.BytesSent)
}

func TestBackPressureDropsThenAntiEntropyRepairs(t *testing.T) {
	var aeOn atomic.Bool
	c := newCluster(t, 3, []string{"a1@A", "a2@A"}, func(cfg *gossip.Config) {
		cfg.MaxQueueBytes = 4 << 10
		cfg.MaxInflightFrames = 1
		cfg.MaxFrameDeltas = 20
		cfg.AntiEntropyInterval = 50 * time.Millisecond
	})
	c.startAll()
	a1, a2 := c.nodes[0], c.nodes[1]
	// a2's disk stalls: it does not return from Apply until released.
	release := make(chan struct{})
	var once sync.Once
	a2.rep.SetApplyHook(func(gossip.Batch) error {
		if !aeOn.Load() {
			<-release
		}
		return nil
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	for i := 0; i < 2000; i++ {
		c.add(a1, "ns", fmt.Sprintf("k%d", i), 1)
	}
	st := a1.mesh.Stats()
	if st.Drops == 0 {
		t.Fatalf("no drops with a stalled peer and a 4 KiB queue: %+v", st)
	}
	// The lag towards the stalled peer grows and is reported.
	if !gossiptest.WaitFor(2*time.Second, func() bool {
		for _, pl := range a1.mesh.Status().Replication {
			if pl.Peer == "a2" && pl.LagMS >= 50 {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("lag towards the stalled peer not reported: %+v", a1.mesh.Status().Replication)
	}
	aeOn.Store(true)
	once.Do(func() { close(release) })
	took := c.waitConverged(10 * time.Second)
	st2 := a2.mesh.Stats()
	t.Logf("dropped %d batches (%d deltas); repaired in %v; peer got %d deltas by anti-entropy", st.Drops, st.DroppedDeltas, took, st2.AntiEntropyDeltasReceived+a1.mesh.Stats().AntiEntropyDeltasSent)
	if got := a2.rep.Len(); got != 2000 {
		t.Fatalf("peer holds %d counters, want 2000", got)
	}
	if vv := a2.rep.VersionVector()[a1.rep.Self()]; vv != 2000 {
		t.Fatalf("peer's vector for a1 = %d, want 2000", vv)
	}
	// Once repaired, the lag falls back.
	if !gossiptest.WaitFor(5*time.Second, func() bool {
		for _, pl := range a1.mesh.Status().Replication {
			if pl.Peer == "a2" {
				return pl.LagMS < 1000
			}
		}
		return true
	}) {
		t.Fatalf("lag stays high after repair: %+v", a1.mesh.Status().Replication)
	}
}

// streamCopies records, per node, the deltas of one origin that arrived by
// stream (not anti-entropy, which is off in the tests that use it).
type streamCopies struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *streamCopies) hook(name string, origin crdt.NodeID) func(gossip.Batch) error {
	return func(b gossip.Batch) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, d := range b.Deltas {
			if d.Origin == origin {
				s.n[name]++
			}
		}
		return nil
	}
}

func TestBridgeCrossesEachRegionBoundaryOnce(t *testing.T) {
	for _, mode := range []gossip.FanOut{gossip.FanOutBridge, gossip.FanOutDirect} {
		t.Run(mode.String(), func(t *testing.T) {
			c := newCluster(t, 4, []string{"a1@A", "a2@A", "a3@A", "b1@B", "b2@B", "b3@B", "c1@C", "c2@C", "c3@C"}, func(cfg *gossip.Config) {
				cfg.FanOut = mode
				cfg.AntiEntropyInterval = time.Hour // streams only
			})
			c.startAll()
			origin := c.node("a1")
			copies := &streamCopies{n: make(map[string]int)}
			for _, n := range c.nodes {
				n.rep.SetApplyHook(copies.hook(n.name, origin.rep.Self()))
			}
			before := make(map[string]gossip.Stats)
			for _, n := range c.nodes {
				before[n.name] = n.mesh.Stats()
			}
			c.add(origin, "ns", "k", 1)
			c.waitConverged(5 * time.Second)
			// Each node received the change exactly once.
			for _, n := range c.nodes[1:] {
				if got := copies.n[n.name]; got != 1 {
					t.Errorf("%s received %d copies, want 1", n.name, got)
				}
			}
			// Count the nodes of each remote region that received bytes from
			// another region: the boundary crossings.
			for _, region := range []string{"B", "C"} {
				var crossed []string
				for _, name := range c.names(region) {
					n := c.node(name)
					if n.mesh.Stats().CrossRegionBytesReceived > before[name].CrossRegionBytesReceived {
						crossed = append(crossed, name)
					}
				}
				want := 1
				if mode == gossip.FanOutDirect {
					want = 3
				}
				if len(crossed) != want {
					t.Errorf("region %s: %d nodes received cross-region bytes (%v), want %d", region, len(crossed), crossed, want)
				}
				if mode == gossip.FanOutBridge && len(crossed) == 1 {
					if br := gossip.Bridge(origin.rep.Self(), c.names(region)); crossed[0] != br {
						t.Errorf("region %s: %s crossed, but the rendezvous bridge is %s", region, crossed[0], br)
					}
					if f := c.node(crossed[0]).mesh.Stats().Forwarded; f != 1 {
						t.Errorf("bridge %s forwarded %d batches, want 1", crossed[0], f)
					}
				}
			}
		})
	}
}

func TestBridgeFailoverMovesToAnotherMember(t *testing.T) {
	c := newCluster(t, 5, []string{"a1@A", "b1@B", "b2@B", "b3@B"}, func(cfg *gossip.Config) {
		cfg.AntiEntropyInterval = time.Hour // the new bridge, not anti-entropy, must deliver
	})
	c.startAll()
	origin := c.node("a1")
	br := gossip.Bridge(origin.rep.Self(), c.names("B"))
	c.add(origin, "ns", "k", 1)
	c.waitConverged(5 * time.Second)

	c.stop(c.node(br), true)
	var rest []string
	for _, name := range c.names("B") {
		if name != br {
			rest = append(rest, name)
		}
	}
	// Once a1 sees the bridge dead, its changes go through the next one.
	if !gossiptest.WaitFor(10*time.Second, func() bool {
		for _, m := range origin.mesh.Status().Members {
			if m.Name == br {
				return m.State == gossip.StateDead
			}
		}
		return true
	}) {
		t.Fatalf("a1 never saw bridge %s fail: %+v", br, origin.mesh.Status().Members)
	}
	c.add(origin, "ns", "k", 1)
	for _, name := range rest {
		n := c.node(name)
		if !gossiptest.WaitFor(5*time.Second, func() bool { return n.rep.Counter("ns", "k").Value() == 2 }) {
			c.dump()
			t.Fatalf("%s did not get the change after bridge %s failed (new bridge %s)", name, br, gossip.Bridge(origin.rep.Self(), rest))
		}
	}
}

func TestNewNodeReceivesEverythingInChunks(t *testing.T) {
	const counters, perFrame = 12_000, 300
	c := newCluster(t, 6, []string{"a1@A", "b1@B", "a2@A"}, func(cfg *gossip.Config) {
		cfg.MaxFrameDeltas = perFrame
	})
	a1, b1, a2 := c.nodes[0], c.nodes[1], c.nodes[2]
	c.start(a1)
	c.start(b1)
	if _, err := b1.mesh.Join([]string{a1.host.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	// Fill the two nodes' replicas directly (as if they had run for a
	// while), split between their two origins.
	for i := 0; i < counters; i++ {
		n := a1
		if i%2 == 1 {
			n = b1
		}
		d, err := n.rep.Add("ns", fmt.Sprintf("key-%06d", i), int64(i))
		if err != nil {
			t.Fatal(err)
		}
		other := b1
		if n == b1 {
			other = a1
		}
		if err := other.rep.Apply(gossip.Batch{Deltas: []gossip.Delta{d}, Ranges: []gossip.Range{{Origin: d.Origin, After: d.Seq - 1, Upto: d.Seq}}}); err != nil {
			t.Fatal(err)
		}
	}
	a1.rep.SetConfig(gossip.ConfigRecord{NS: "ns", HLC: 7, Origin: a1.rep.Self(), Payload: []byte("cfg")})

	c.start(a2)
	if _, err := a2.mesh.Join([]string{b1.host.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	c.waitMembership(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := a2.mesh.SyncOnce(ctx); err != nil {
		t.Fatalf("SyncOnce: %v", err)
	}
	took := time.Since(start)
	if got := a2.rep.Len(); got != counters {
		t.Fatalf("after SyncOnce the new node holds %d counters, want %d", got, counters)
	}
	vv := a2.rep.VersionVector()
	if vv[a1.rep.Self()] != counters/2 || vv[b1.rep.Self()] != counters/2 {
		t.Fatalf("new node's vector = %v, want %d for both origins", vv, counters/2)
	}
	st := a2.mesh.Stats()
	if st.AntiEntropyDeltasReceived < counters {
		t.Fatalf("received %d deltas by anti-entropy, want at least %d", st.AntiEntropyDeltasReceived, counters)
	}
	if st.FramesReceived < counters/perFrame {
		t.Fatalf("%d frames for %d deltas with %d per frame: not chunked", st.FramesReceived, counters, perFrame)
	}
	c.waitConverged(10 * time.Second)
	if cf := a2.rep.Configs(); len(cf) != 1 || string(cf[0].Payload) != "cfg" {
		t.Fatalf("configs = %+v, want the namespace config", cf)
	}
	t.Logf("SyncOnce moved %d counters in %v (%d frames, %d bytes)", counters, took, st.FramesReceived, st.BytesReceived)
}

func TestRestartWithSameNameRejoinsAsItself(t *testing.T) {
	c := newCluster(t, 7, []string{"a1@A", "a2@A", "b1@B"}, nil)
	c.startAll()
	a1, a2, b1 := c.nodes[0], c.nodes[1], c.nodes[2]
	for i := 0; i < 20; i++ {
		c.add(a2, "ns", "k", 1)
	}
	c.waitConverged(5 * time.Second)

	t.Run("disk kept", func(t *testing.T) {
		c.stop(a2, true)
		c.add(a1, "ns", "k", 10) // while a2 is down
		c.restart(a2)
		c.waitMembership(10 * time.Second)
		for i := 0; i < 5; i++ {
			c.add(a2, "ns", "k", 1)
		}
		c.waitConverged(5 * time.Second)
		if v := b1.rep.Counter("ns", "k").Value(); v != 35 {
			t.Fatalf("k = %d, want 35", v)
		}
		// The others see one a2, alive, at its address.
		for _, n := range []*tnode{a1, b1} {
			count := 0
			for _, m := range n.mesh.Status().Members {
				if m.Name == "a2" {
					count++
					if m.State != gossip.StateAlive || m.GossipAddr != a2.host.GossipAddr() {
						t.Errorf("%s sees a2 as %+v", n.name, m)
					}
				}
			}
			if count != 1 {
				t.Errorf("%s lists a2 %d times", n.name, count)
			}
		}
	})

	t.Run("disk lost", func(t *testing.T) {
		c.stop(a2, true)
		before := a1.rep.VersionVector()[a2.rep.Self()]
		a2.rep = gossiptest.NewReplica(a2.rep.Self()) // an empty disk, same name
		c.restart(a2)                                 // SyncOnce recovers the own slot from the peers
		if got := a2.rep.VersionVector()[a2.rep.Self()]; got != before {
			t.Fatalf("after SyncOnce the own vector is %d, want the peers' %d", got, before)
		}
		if got := a2.rep.Counter("ns", "k").Slot(a2.rep.Self()).P; got != 25 {
			t.Fatalf("own slot recovered as P=%d, want 25", got)
		}
		c.waitMembership(10 * time.Second)
		c.add(a2, "ns", "k", 1) // continues at the next seq, so the peers take it
		c.waitConverged(5 * time.Second)
		if v := b1.rep.Counter("ns", "k").Value(); v != 36 {
			t.Fatalf("k = %d, want 36", v)
		}
	})
}

func TestLeave(t *testing.T) {
	c := newCluster(t, 8, []string{"a1@A", "a2@A", "b1@B"}, func(cfg *gossip.Config) {
		cfg.AntiEntropyInterval = time.Hour // only the leave's own exchange
	})
	c.startAll()
	a1, a2, b1 := c.nodes[0], c.nodes[1], c.nodes[2]
	c.add(a2, "ns", "k", 3)
	// A change no stream carried (its batch was never published): the
	// leave's hand-over exchange must give it to a peer.
	if _, err := a2.rep.Add("ns", "quiet", 7); err != nil {
		t.Fatal(err)
	}
	// And one only a1 holds: the leaving node hands over, it takes nothing.
	if _, err := a1.rep.Add("ns", "a1-only", 5); err != nil {
		t.Fatal(err)
	}
	// Close leaves gracefully: queued changes are flushed first.
	if err := a2.mesh.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := a2.mesh.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := a2.mesh.SyncOnce(context.Background()); !errors.Is(err, gossip.ErrClosed) {
		t.Fatalf("SyncOnce after Close = %v, want ErrClosed", err)
	}
	a2.mesh.Publish(gossip.Batch{Deltas: []gossip.Delta{{NS: "x"}}}) // a no-op, not a panic
	if v := a2.rep.Counter("ns", "a1-only").Value(); v != 0 {
		t.Fatalf("the leaving node took a1's change in its hand-over: a1-only = %d there", v)
	}
	a2.mesh = nil
	for _, n := range []*tnode{a1, b1} {
		if !gossiptest.WaitFor(5*time.Second, func() bool {
			for _, m := range n.mesh.Status().Members {
				if m.Name == "a2" {
					return m.State == gossip.StateLeft
				}
			}
			return false
		}) {
			t.Fatalf("%s does not see a2 as left: %+v", n.name, n.mesh.Status().Members)
		}
		if v := n.rep.Counter("ns", "k").Value(); v != 3 {
			t.Fatalf("%s: k = %d, want 3 (flushed before leaving)", n.name, v)
		}
	}
	if a1.rep.Counter("ns", "quiet").Value() != 7 && b1.rep.Counter("ns", "quiet").Value() != 7 {
		t.Fatal("the unpublished change left with the node: no peer got it in the hand-over")
	}
	// A member that left is not retried: while several reconnect
	// intervals pass (and, however loaded the machine, memberlist keeps
	// exchanging packets, so the background loops do run), nothing
	// reconnects.
	r := a1.mesh.Stats().Reconnects
	since, packets := time.Now(), c.nw.Stats().Packets
	wait.Until(t, 10*time.Second, "four reconnect intervals and 20 memberlist packets", func() bool {
		return time.Since(since) > 4*50*time.Millisecond && c.nw.Stats().Packets >= packets+20
	})
	if got := a1.mesh.Stats().Reconnects; got != r {
		t.Fatalf("a1 reconnected %d times to a member that left", got-r)
	}
}

// A leaving node's hand-over retries until its deadline: a peer it cannot
// reach at first (cut off here, busy or slow under load in production)
// still gets what no stream delivered once it answers.
func TestLeaveHandOverRetries(t *testing.T) {
	c := newCluster(t, 10, []string{"a1@A", "a2@A", "b1@B"}, func(cfg *gossip.Config) {
		cfg.AntiEntropyInterval = time.Hour // only the leave's own exchange
		cfg.LeaveTimeout = 3 * time.Second  // the hand-over runs until 1.8 s
	})
	c.startAll()
	a1, a2, b1 := c.nodes[0], c.nodes[1], c.nodes[2]
	if _, err := a2.rep.Add("ns", "quiet", 7); err != nil { // never published
		t.Fatal(err)
	}
	c.nw.Partition([]string{"a2"})
	healed := make(chan struct{})
	go func() {
		defer close(healed)
		time.Sleep(300 * time.Millisecond)
		c.nw.Heal()
	}()
	if err := a2.mesh.Close(); err != nil {
		t.Logf("close: %v", err) // the leave broadcast may be late; the hand-over is what counts
	}
	<-healed
	a2.mesh = nil
	if a1.rep.Counter("ns", "quiet").Value() != 7 && b1.rep.Counter("ns", "quiet").Value() != 7 {
		t.Fatal("the unpublished change left with the node: the hand-over gave up while its peer was cut off")
	}
}

func TestPartitionHealsByItself(t *testing.T) {
	c := newCluster(t, 9, []string{"a1@A", "a2@A", "b1@B", "b2@B"}, nil)
	c.startAll()
	c.nw.PartitionRegions([]string{"A"}, []string{"B"})
	// Long enough for each side to declare the other dead and memberlist
	// to forget it (GossipToTheDeadTime is 500 ms in tests).
	for _, n := range c.nodes {
		if !gossiptest.WaitFor(10*time.Second, func() bool {
			dead := 0
			for _, m := range n.mesh.Status().Members {
				if m.State == gossip.StateDead {
					dead++
				}
			}
			return dead == 2
		}) {
			c.dump()
			t.Fatalf("%s did not declare the other side dead", n.name)
		}
	}
	c.add(c.node("a1"), "ns", "k", 1)
	c.add(c.node("b2"), "ns", "k", 2)
	// The partition lasts past GossipToTheDeadTime (500 ms in tests), so
	// that memberlist forgets the other side and only the reconnect loop
	// can bring it back: that duration is the fault under test, not a wait.
	cut := time.Now()
	attempts := func(n *tnode) uint64 {
		st := n.mesh.Stats()
		return st.AntiEntropyRounds + st.AntiEntropyFailures
	}
	before := make(map[*tnode]uint64)
	for _, n := range c.nodes {
		before[n] = attempts(n)
	}
	// Every node tries anti-entropy a few times meanwhile, so that a cut
	// that leaks would show.
	wait.Until(t, 10*time.Second, "three anti-entropy attempts on every node during the partition", func() bool {
		for _, n := range c.nodes {
			if attempts(n) < before[n]+3 {
				return false
			}
		}
		return time.Since(cut) > 700*time.Millisecond
	})
	if ok, _ := c.converged(); ok {
		t.Fatal("the two sides converged through a partition; the cut does not hold")
	}
	c.nw.Heal()
	start := time.Now()
	c.waitMembership(10 * time.Second)
	c.waitConverged(5 * time.Second)
	t.Logf("healed partition reconnected and converged in %v", time.Since(start))
	if v := c.node("b1").rep.Counter("ns", "k").Value(); v != 3 {
		t.Fatalf("k = %d, want 3", v)
	}
	var rc uint64
	for _, n := range c.nodes {
		rc += n.mesh.Stats().Reconnects
	}
	if rc == 0 {
		t.Fatal("no background reconnects, yet the sides met again")
	}
}

func TestConfigsReplicate(t *testing.T) {
	c := newCluster(t, 10, []string{"a1@A", "a2@A", "b1@B"}, nil)
	c.startAll()
	a1, b1 := c.nodes[0], c.nodes[2]
	// Published with the stream.
	rec := gossip.ConfigRecord{NS: "pages", HLC: 10, Origin: a1.rep.Self(), Payload: []byte(`{"durability":"async"}`)}
	a1.rep.SetConfig(rec)
	a1.mesh.Publish(gossip.Batch{Configs: []gossip.ConfigRecord{rec}})
	// Not published at all: anti-entropy carries it.
	quiet := gossip.ConfigRecord{NS: "likes", HLC: 5, Origin: b1.rep.Self(), Payload: []byte(`{}`)}
	b1.rep.SetConfig(quiet)
	// An older write loses everywhere.
	b1.rep.SetConfig(gossip.ConfigRecord{NS: "pages", HLC: 9, Origin: b1.rep.Self(), Payload: []byte("old")})
	if !gossiptest.WaitFor(5*time.Second, func() bool {
		for _, n := range c.nodes {
			cf := n.rep.Configs()
			if len(cf) != 2 || cf[0].NS != "likes" || cf[1].HLC != 10 {
				return false
			}
		}
		return true
	}) {
		for _, n := range c.nodes {
			t.Logf("%s: %+v", n.name, n.rep.Configs())
		}
		t.Fatal("configs did not converge")
	}
}

func TestStatusShape(t *testing.T) {
	c := newCluster(t, 11, []string{"a1@A", "a2@A", "b1@B"}, nil)
	c.startAll()
	a1 := c.nodes[0]
	c.add(a1, "ns", "k", 1)
	c.waitConverged(5 * time.Second)
	st := a1.mesh.Status()
	if st.Self.Name != "a1" || st.Self.Region != "A" || st.Self.HTTPAddr != "http://a1:7070" || st.Self.GossipAddr != a1.host.GossipAddr() {
		t.Fatalf("self = %+v", st.Self)
	}
	if len(st.Members) != 3 {
		t.Fatalf("members = %+v", st.Members)
	}
	for _, m := range st.Members {
		if m.State != gossip.StateAlive || m.Region == "" || m.HTTPAddr == "" {
			t.Errorf("member %+v", m)
		}
	}
	// a1 streams to a2 (its region) and b1 (bridge of B).
	if len(st.Replication) != 2 {
		t.Fatalf("replication = %+v, want a2 and b1", st.Replication)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	json.Unmarshal(raw, &generic)
	for _, k := range []string{"node", "members", "replication"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, raw)
		}
	}
	node := generic["node"].(map[string]any)
	for _, k := range []string{"name", "region", "http_addr", "gossip_addr"} {
		if _, ok := node[k]; !ok {
			t.Errorf("node JSON lacks %q: %s", k, raw)
		}
	}
	rep := generic["replication"].([]any)[0].(map[string]any)
	for _, k := range []string{"peer", "region", "lag_ms"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("replication JSON lacks %q: %s", k, raw)
		}
	}
	s := a1.mesh.Stats()
	if s.BytesSent == 0 || s.FramesSent == 0 || s.BytesSentByRegion["B"] == 0 || s.CrossRegionBytesSent != s.BytesSentByRegion["B"] {
		t.Fatalf("stats = %+v", s)
	}
}

func TestSyncOnceAlone(t *testing.T) {
	c := newCluster(t, 12, []string{"a1@A"}, nil)
	n := c.nodes[0]
	m, err := gossip.New(fastConfig("a1", "A", n.host), n.rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SyncOnce(context.Background()); !errors.Is(err, gossip.ErrNotStarted) {
		t.Fatalf("SyncOnce before Start = %v, want ErrNotStarted", err)
	}
	m.Close()
	c.start(n)
	if err := n.mesh.SyncOnce(context.Background()); err != nil {
		t.Fatalf("SyncOnce of a mesh of one = %v, want nil (nothing to recover from)", err)
	}
}

func TestSyncOnceFailsWhenNoPeerAnswers(t *testing.T) {
	c := newCluster(t, 13, []string{"a1@A", "b1@B"}, nil)
	c.startAll()
	c.nw.Partition([]string{"a1"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.nodes[0].mesh.SyncOnce(ctx); !errors.Is(err, gossip.ErrSyncFailed) {
		t.Fatalf("SyncOnce cut off from every peer = %v, want ErrSyncFailed", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cfg := gossip.DefaultConfig()
	if _, err := gossip.New(cfg, gossiptest.NewReplica(1)); !errors.Is(err, gossip.ErrInvalidConfig) {
		t.Fatalf("config without a name: %v, want ErrInvalidConfig", err)
	}
	cfg.Name = "x"
	if _, err := gossip.New(cfg, nil); !errors.Is(err, gossip.ErrInvalidConfig) {
		t.Fatalf("nil replica: %v, want ErrInvalidConfig", err)
	}
}

func TestReplicationAddressAdvertisedAtTheGossipHost(t *testing.T) {
	cfg := gossip.DefaultConfig()
	cfg.Name = "tcp-1"
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.ReplAddr = "0.0.0.0:0" // every interface: not dialable as such
	cfg.Logger = testLogger(t)
	m, err := gossip.New(cfg, gossiptest.NewReplica(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	self := m.Self()
	host, port, err := net.SplitHostPort(self.ReplAddr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("replication address advertised as %q, want 127.0.0.1 and the bound port", self.ReplAddr)
	}
	if gh, _, _ := net.SplitHostPort(self.GossipAddr); gh != "127.0.0.1" {
		t.Fatalf("gossip address %q", self.GossipAddr)
	}
}

// A node lost for good (its disk, or it left) made changes 1 to 4, and
// change 2 reached no one. Both survivors got 1; then b1 got only 3 and a1
// only 4, each past the gap (a quorum push, a stream batch out of order).
// Their vectors agree at 1, so an exchange of vectors alone finds nothing to
// send and the two disagree for good; the held-ahead lists make each offer
// the change the other lacks.
func TestHeldAheadChangesOfAGoneOriginSpread(t *testing.T) {
	c := newCluster(t, 21, []string{"a1@A", "b1@B"}, nil)
	gone := gossiptest.NewReplica(crdt.NodeIDFromName("gone"))
	var changes []gossip.Delta
	for i := range 4 {
		d, err := gone.Add("ns", fmt.Sprintf("k%d", i), int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, d)
	}
	o := gone.Self()
	a1, b1 := c.nodes[0], c.nodes[1]
	for _, n := range []*tnode{a1, b1} {
		if err := n.rep.Apply(gossip.Batch{Deltas: changes[:1], Ranges: []gossip.Range{{Origin: o, After: 0, Upto: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b1.rep.Apply(gossip.Batch{Deltas: changes[2:3], Ranges: []gossip.Range{{Origin: o, After: 2, Upto: 3}}}); err != nil {
		t.Fatal(err)
	}
	// Part of a batch whose range a1 cannot count (it lacks 2 and 3): the
	// delta still counts as held.
	if err := a1.rep.Apply(gossip.Batch{Deltas: changes[3:4], Ranges: []gossip.Range{{Origin: o, After: 2, Upto: 4}}}); err != nil {
		t.Fatal(err)
	}
	if a1.rep.VersionVector()[o] != 1 || b1.rep.VersionVector()[o] != 1 {
		t.Fatalf("vectors before the exchange: a1 %v, b1 %v", a1.rep.VersionVector(), b1.rep.VersionVector())
	}
	c.startAll()
	c.waitConverged(10 * time.Second)
	for _, n := range []*tnode{a1, b1} {
		if got := n.rep.Held(o); !slices.Equal(got, []uint64{3, 4}) {
			t.Errorf("%s holds past the gap %v, want [3 4]", n.name, got)
		}
		if got := n.rep.Counter("ns", "k3").Value(); got != 4 {
			t.Errorf("%s reads k3 = %d, want 4", n.name, got)
		}
	}
}
