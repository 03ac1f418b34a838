package node_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/httpapi"
	"github.com/countmesh/countmesh/node"
)

// The linearizability check of quorum reads and writes: nodes in-process, each behind its
// own httpapi server on 127.0.0.1, reaching each other through the peer RPC
// (directPeers: the answering node's PeerState and MergeStates, the
// handlers of the peer transport, which packages gossip and peerrpc test)
// wrapped in a transport that injects
// faults. Clients run quorum increments and reads of an exact namespace on
// random nodes while a node is cut off and another killed and reopened from
// its data directory; porcupine checks each run's history against a
// sequential counter.

// linNode is one node of the harness. Its *node.Node is replaced when the
// node is killed and reopened.
type linNode struct {
	name, region, dir string
	cfg               node.Config

	mu  sync.RWMutex // guards n and srv; operations hold it shared, kill and reopen exclusively
	n   *node.Node   // nil while the node is down
	srv *http.Server

	addr  atomic.Pointer[string]
	alive atomic.Bool
	cut   atomic.Bool // every peer call from or to the node fails
}

// linCluster is the harness.
type linCluster struct {
	tb     testing.TB
	nodes  []*linNode
	client directPeers
	// late tracks pushes delivered after their sender gave up on them;
	// lateMu orders their Add before close's Wait (a push still in flight
	// when the test ends may start one: the race detector caught the Add
	// racing the Wait).
	late    sync.WaitGroup
	lateMu  sync.Mutex
	closing bool
	faulty  atomic.Bool // the transport drops acknowledgements and delays calls
}

// linPeers is the Peers view every node shares: the harness's membership.
type linPeers struct{ c *linCluster }

func (p linPeers) Peers() []node.Peer {
	out := make([]node.Peer, 0, len(p.c.nodes))
	for _, ln := range p.c.nodes {
		out = append(out, node.Peer{Name: ln.name, Region: ln.region, HTTPAddr: *ln.addr.Load(), Alive: ln.alive.Load()})
	}
	return out
}

// faultTransport is one node's peer transport: the real HTTP client, with
// cut nodes failing (at once or at the deadline), small random delays, and
// pushes whose acknowledgement is lost while the push itself lands later.
type faultTransport struct {
	c    *linCluster
	self *linNode
	mu   sync.Mutex // guards rng
	rng  *rand.Rand
}

var errInjected = errors.New("lintest: injected fault")

func (t *faultTransport) roll() (float64, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rng.Float64(), time.Duration(t.rng.Int64N(int64(2 * time.Millisecond)))
}

func (t *faultTransport) before(ctx context.Context, p node.Peer) error {
	to := t.c.byName(p.Name)
	if t.self.cut.Load() || to.cut.Load() {
		if r, _ := t.roll(); r < 0.5 {
			<-ctx.Done() // a partition: no answer
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s -> %s cut", errInjected, t.self.name, p.Name)
	}
	if t.c.faulty.Load() {
		_, d := t.roll()
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (t *faultTransport) FetchState(ctx context.Context, p node.Peer, ns, key string) (crdt.Counter, error) {
	if err := t.before(ctx, p); err != nil {
		return crdt.Counter{}, err
	}
	return t.c.client.FetchState(ctx, p, ns, key)
}

func (t *faultTransport) PushStates(ctx context.Context, p node.Peer, states []node.CounterState) error {
	if err := t.before(ctx, p); err != nil {
		return err
	}
	if r, d := t.roll(); t.c.faulty.Load() && r < 0.05 {
		// The acknowledgement is lost; the push lands a little later.
		t.c.lateMu.Lock()
		if t.c.closing {
			t.c.lateMu.Unlock()
			return fmt.Errorf("%w: the harness is closing", errInjected)
		}
		t.c.late.Add(1)
		t.c.lateMu.Unlock()
		go func() {
			defer t.c.late.Done()
			time.Sleep(50*time.Millisecond + 100*d)
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = t.c.client.PushStates(lctx, p, states)
		}()
		return fmt.Errorf("%w: the acknowledgement of %s was lost", errInjected, p.Name)
	}
	return t.c.client.PushStates(ctx, p, states)
}

func (c *linCluster) byName(name string) *linNode {
	for _, ln := range c.nodes {
		if ln.name == name {
			return ln
		}
	}
	c.tb.Fatalf("no node %q", name)
	return nil
}

// newLinCluster starts the nodes, given as name -> region, on 127.0.0.1.
// With onDisk false the data directories are on one in-memory file system
// per node (it outlives the node, so a reopen still recovers from it).
func newLinCluster(tb testing.TB, timeout time.Duration, onDisk bool, regions ...[2]string) *linCluster {
	tb.Helper()
	c := &linCluster{tb: tb}
	c.client = directPeers{c}
	for i, nr := range regions {
		ln := &linNode{name: nr[0], region: nr[1], dir: tb.TempDir()}
		none := ""
		ln.addr.Store(&none)
		cfg := node.DefaultConfig()
		cfg.Name, cfg.Region = ln.name, ln.region
		cfg.Store.Dir = ln.dir
		if !onDisk {
			cfg.Store.Dir, cfg.Store.FS = "data", vfs.NewMem()
		}
		cfg.Logger = zap.NewNop()
		cfg.Peers = linPeers{c}
		cfg.PeerTransport = &faultTransport{c: c, self: ln, rng: rand.New(rand.NewPCG(uint64(i), 1))}
		cfg.QuorumTimeout = timeout
		ln.cfg = cfg
		c.nodes = append(c.nodes, ln)
	}
	for _, ln := range c.nodes {
		c.start(ln)
	}
	tb.Cleanup(c.close)
	return c
}

// start opens ln's node from its data directory and serves it.
func (c *linCluster) start(ln *linNode) {
	c.tb.Helper()
	ln.mu.Lock()
	defer ln.mu.Unlock()
	n, err := node.Open(ln.cfg)
	if err != nil {
		c.tb.Fatalf("open %s: %v", ln.name, err)
	}
	exact := node.TypeExact
	if _, err := n.PutNamespace(context.Background(), "exact", node.NamespacePatch{Type: &exact}); err != nil {
		c.tb.Fatalf("namespace on %s: %v", ln.name, err)
	}
	api, err := httpapi.New(httpapi.Config{Node: n})
	if err != nil {
		c.tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.tb.Fatal(err)
	}
	ln.srv = &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	go ln.srv.Serve(lis)
	addr := lis.Addr().String()
	ln.addr.Store(&addr)
	ln.n = n
	ln.alive.Store(true)
}

// kill stops ln's server (letting the peer calls in flight finish) and
// closes its node; its data directory stays.
func (c *linCluster) kill(ln *linNode) {
	c.tb.Helper()
	ln.alive.Store(false)
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ln.srv.Shutdown(ctx); err != nil {
		ln.srv.Close()
	}
	if err := ln.n.Close(); err != nil {
		c.tb.Errorf("close %s: %v", ln.name, err)
	}
	ln.n, ln.srv = nil, nil
}

func (c *linCluster) close() {
	c.lateMu.Lock()
	c.closing = true
	c.lateMu.Unlock()
	c.late.Wait()
	for _, ln := range c.nodes {
		c.kill(ln)
	}
}

// directPeers reaches the other nodes of the harness in-process: each call
// runs the answering node's peer handler, and fails when that node is down.
type directPeers struct{ c *linCluster }

func (d directPeers) FetchState(ctx context.Context, p node.Peer, ns, key string) (crdt.Counter, error) {
	to := d.c.byName(p.Name)
	to.mu.RLock()
	defer to.mu.RUnlock()
	if to.n == nil {
		return crdt.Counter{}, errDown
	}
	return to.n.PeerState(ctx, ns, key)
}

func (d directPeers) PushStates(ctx context.Context, p node.Peer, states []node.CounterState) error {
	to := d.c.byName(p.Name)
	to.mu.RLock()
	defer to.mu.RUnlock()
	if to.n == nil {
		return errDown
	}
	// The receiver gets its own copy, as it would off the wire.
	own := make([]node.CounterState, len(states))
	for i, st := range states {
		own[i] = node.CounterState{NS: st.NS, Key: st.Key, State: st.State.Clone()}
	}
	return to.n.MergeStates(ctx, own)
}

// errDown is what an operation on a node that is down returns.
var errDown = fmt.Errorf("%w: the node is down", node.ErrUnavailable)

func (ln *linNode) incr(ctx context.Context, key, consistency string) error {
	ln.mu.RLock()
	defer ln.mu.RUnlock()
	if ln.n == nil {
		return errDown
	}
	_, err := ln.n.Incr(ctx, "exact", key, 1, node.WriteOptions{Consistency: consistency})
	return err
}

func (ln *linNode) get(ctx context.Context, key, consistency string) (int64, error) {
	ln.mu.RLock()
	defer ln.mu.RUnlock()
	if ln.n == nil {
		return 0, errDown
	}
	c, err := ln.n.Get(ctx, "exact", key, node.ReadOptions{Consistency: consistency})
	return c.Value, err
}

// The sequential specification: a counter; an increment's output (the
// local value of the node that took it) is not part of it, a read returns
// the count.
type linInput struct {
	incr bool
}

var counterModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		st := state.(int64)
		if input.(linInput).incr {
			return true, st + 1
		}
		return output.(int64) == st, st
	},
	DescribeOperation: func(input, output any) string {
		if input.(linInput).incr {
			return "incr"
		}
		return fmt.Sprintf("read -> %d", output)
	},
}

// history records operations with times from one monotonic clock.
type history struct {
	start                                     time.Time
	mu                                        sync.Mutex // guards ops and the counts
	ops                                       []porcupine.Operation
	unknownWrites, failedReads, reads, writes int
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

// record adds an operation. A write that failed may still have happened
// (it is applied on the node that took it and may spread): it returns at
// infinity, so that it may be linearized anywhere after its call. A read
// that failed had no effect and is left out.
func (h *history) record(client int, incr bool, call int64, value int64, err error, where string) {
	ret := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if incr {
		h.writes++
	} else {
		h.reads++
	}
	if err != nil {
		if !incr {
			h.failedReads++
			return
		}
		h.unknownWrites++
		ret = math.MaxInt64
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: linInput{incr: incr}, Call: call, Output: value, Return: ret, Metadata: where})
}

func checkLinearizable(t *testing.T, h *history) porcupine.CheckResult {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(counterModel, h.ops, 10*time.Second)
	if res == porcupine.Illegal && testing.Verbose() {
		ops := slices.Clone(h.ops)
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		for _, op := range ops {
			ret := "?"
			if op.Return != math.MaxInt64 {
				ret = fmt.Sprint(time.Duration(op.Return))
			}
			t.Logf("client %d %v .. %s: %s on %v", op.ClientId, time.Duration(op.Call), ret,
				counterModel.DescribeOperation(op.Input, op.Output), op.Metadata)
		}
		_ = info
	}
	return res
}

// TestQuorumLinearizableUnderFaults runs 50 randomized workloads, each on a
// fresh counter, with faults, and checks every history with porcupine.
func TestQuorumLinearizableUnderFaults(t *testing.T) {
	runs := 50
	if testing.Short() {
		runs = 10
	}
	// Region a holds the quorum; region b's clients use all, which must
	// agree with region a's quorum.
	c := newLinCluster(t, 150*time.Millisecond, false,
		[2]string{"a1", "a"}, [2]string{"a2", "a"}, [2]string{"a3", "a"},
		[2]string{"b1", "b"}, [2]string{"b2", "b"})
	regionA := c.nodes[:3]
	c.faulty.Store(true)
	var totals history
	start := time.Now()
	for run := range runs {
		rng := rand.New(rand.NewPCG(uint64(run), 0x5eed))
		key := fmt.Sprintf("run-%d", run)
		h := &history{start: time.Now()}
		ctx := context.Background()

		// Faults: one node of region a cut off for a while (in some runs
		// two, so that the quorum is lost and writes end unknown), and one
		// node killed and reopened from its data directory.
		var faults sync.WaitGroup
		faults.Add(1)
		go func() {
			defer faults.Done()
			victims := []*linNode{regionA[rng.IntN(3)]}
			if run%7 == 3 {
				victims = append(victims, regionA[(slices.Index(regionA, victims[0])+1)%3])
			}
			time.Sleep(time.Duration(5+rng.IntN(30)) * time.Millisecond)
			for _, v := range victims {
				v.cut.Store(true)
			}
			time.Sleep(time.Duration(40+rng.IntN(80)) * time.Millisecond)
			for _, v := range victims {
				v.cut.Store(false)
			}
			if run%2 == 0 {
				k := c.nodes[rng.IntN(len(c.nodes))]
				c.kill(k)
				time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
				c.start(k)
			}
		}()

		const clients, opsPerClient = 4, 12
		var wg sync.WaitGroup
		for cl := range clients {
			crng := rand.New(rand.NewPCG(uint64(run), uint64(cl)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range opsPerClient {
					target, level := regionA[crng.IntN(3)], "" // exact: quorum by default
					if crng.IntN(5) == 0 {
						target, level = c.nodes[3+crng.IntN(2)], node.ConsistencyAll
					}
					call := h.now()
					if crng.IntN(2) == 0 {
						err := target.incr(ctx, key, level)
						if err != nil && !errors.Is(err, node.ErrUnavailable) {
							t.Errorf("run %d: incr on %s: %v", run, target.name, err)
						}
						h.record(cl, true, call, 0, err, target.name+" "+level)
					} else {
						v, err := target.get(ctx, key, level)
						if err != nil && !errors.Is(err, node.ErrUnavailable) {
							t.Errorf("run %d: read on %s: %v", run, target.name, err)
						}
						h.record(cl, false, call, v, err, target.name+" "+level)
					}
				}
			}()
		}
		wg.Wait()
		faults.Wait()
		if res := checkLinearizable(t, h); res != porcupine.Ok {
			t.Fatalf("run %d (seed %d): the history of %d operations is %v, not linearizable", run, run, len(h.ops), res)
		}
		totals.reads += h.reads
		totals.writes += h.writes
		totals.unknownWrites += h.unknownWrites
		totals.failedReads += h.failedReads
	}
	t.Logf("%d runs in %v: %d writes (%d unknown: 503), %d reads (%d refused: 503)",
		runs, time.Since(start).Round(time.Millisecond), totals.writes, totals.unknownWrites, totals.reads, totals.failedReads)
	// The faults must have mattered, and the workload must have run.
	if totals.unknownWrites == 0 || totals.failedReads == 0 {
		t.Fatalf("no operation failed in %d runs with faults: the faults did not happen", runs)
	}
	if ok := totals.writes - totals.unknownWrites; ok < runs*10 {
		t.Fatalf("only %d writes succeeded in %d runs", ok, runs)
	}
}

// TestQuorumLinearizabilityCheckCanFail is the sanity check of the test
// above: the same harness and checker, on a history where a read skips the
// quorum merge (a local read on the node that missed an acknowledged
// write), must report a violation; the quorum read in its place must not.
func TestQuorumLinearizabilityCheckCanFail(t *testing.T) {
	c := newLinCluster(t, 250*time.Millisecond, false,
		[2]string{"a1", "a"}, [2]string{"a2", "a"}, [2]string{"a3", "a"})
	ctx := context.Background()
	for _, tc := range []struct {
		level string
		want  porcupine.CheckResult
	}{
		{node.ConsistencyLocal, porcupine.Illegal},
		{node.ConsistencyQuorum, porcupine.Ok},
	} {
		t.Run(tc.level, func(t *testing.T) {
			key := "sanity-" + tc.level
			h := &history{start: time.Now()}
			a1, a3 := c.byName("a1"), c.byName("a3")
			a3.cut.Store(true) // a3 misses the write; a1 and a2 acknowledge it
			call := h.now()
			err := a1.incr(ctx, key, "")
			h.record(0, true, call, 0, err, "a1")
			if err != nil {
				t.Fatalf("quorum incr with one node cut: %v", err)
			}
			a3.cut.Store(false)
			c.byName("a1").cut.Store(true) // a3's quorum is then a3 and a2
			defer c.byName("a1").cut.Store(false)
			call = h.now()
			v, err := a3.get(ctx, key, tc.level)
			h.record(1, false, call, v, err, "a3 "+tc.level)
			if err != nil {
				t.Fatalf("%s read on a3: %v", tc.level, err)
			}
			if got := checkLinearizable(t, h); got != tc.want {
				t.Fatalf("%s read after an acknowledged write returned %d: porcupine says %v, want %v", tc.level, v, got, tc.want)
			}
		})
	}
}

// BenchmarkQuorumLatency measures one client's quorum increments and reads
// on a3 of three nodes on loopback (real HTTP, Pebble on disk with fsync),
// reporting the p50 and p99 latency.
func BenchmarkQuorumLatency(b *testing.B) {
	c := newLinCluster(b, 2*time.Second, true,
		[2]string{"a1", "a"}, [2]string{"a2", "a"}, [2]string{"a3", "a"})
	a3 := c.byName("a3")
	ctx := context.Background()
	for _, op := range []string{"write", "read", "write-local", "read-local"} {
		b.Run(op, func(b *testing.B) {
			level := node.ConsistencyQuorum
			if op == "write-local" || op == "read-local" {
				level = node.ConsistencyLocal
			}
			lat := make([]time.Duration, 0, b.N)
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprintf("k%d", i%1000)
				start := time.Now()
				var err error
				if op == "write" || op == "write-local" {
					err = a3.incr(ctx, key, level)
				} else {
					_, err = a3.get(ctx, key, level)
				}
				lat = append(lat, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
			}
		})
	}
}
