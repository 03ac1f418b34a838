//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keyStat tallies the increments of one counter over every node.
type keyStat struct {
	acked   atomic.Int64 // answered 200
	unknown atomic.Int64 // sent, outcome unknown (may or may not be applied)
}

func (k *keyStat) attempted() int64 { return k.acked.Load() + k.unknown.Load() }

// tally maps counter keys to their stats.
type tally struct {
	mu sync.Mutex // guards m
	m  map[string]*keyStat
}

func newTally() *tally { return &tally{m: map[string]*keyStat{}} }

func (t *tally) get(key string) *keyStat {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[key]
	if s == nil {
		s = &keyStat{}
		t.m[key] = s
	}
	return s
}

// snapshot returns each key's (acked, attempted) now.
func (t *tally) snapshot() map[string][2]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string][2]int64, len(t.m))
	for k, s := range t.m {
		a := s.acked.Load()
		out[k] = [2]int64{a, a + s.unknown.Load()}
	}
	return out
}

// nodeStat counts one node's requests.
type nodeStat struct {
	acked    atomic.Int64 // increments answered 200
	batches  atomic.Int64 // batches answered 200
	refused  atomic.Int64 // batches refused (error status, or never connected): nothing applied
	unknown  atomic.Int64 // batches whose outcome is unknown
	lastAck  atomic.Int64 // unix nanoseconds of the latest 200
	inflight sync.Map     // request id -> start time
}

// pendingSince counts the node's requests in flight that started before t.
func (s *nodeStat) pendingSince(t time.Time) int {
	n := 0
	s.inflight.Range(func(_, v any) bool {
		if v.(time.Time).Before(t) {
			n++
		}
		return true
	})
	return n
}

// plan is one batch: the key of each op (by 1 each), and hooks.
type plan struct {
	keys    []string
	skip    bool              // send nothing this slot
	onAck   func(t time.Time) // after a 200, with its time
	release func()            // once the outcome is known, whatever it is
}

// planner chooses a batch for node n.
type planner func(n *node, rnd *rand.Rand, size int) plan

// loadConfig shapes a load.
type loadConfig struct {
	rate    float64 // increments per second over all nodes
	batch   int     // ops per /v1/batch request
	writers int     // concurrent requests per node at most
}

func defaultLoad(t *testing.T) loadConfig {
	return loadConfig{
		rate:    envFloat(t, "COUNTMESH_E2E_RATE", 20000),
		batch:   envInt(t, "COUNTMESH_E2E_BATCH", 100),
		writers: envInt(t, "COUNTMESH_E2E_WRITERS", 8),
	}
}

// load writes batches to every node of a cluster at a paced rate until
// stopped. Each node has its own ticker at rate/len(nodes)/batch batches
// per second; a tick no writer is free to take is dropped, so a slow node
// gets less rather than a burst later, and the rate reached is measured.
type load struct {
	ns      string
	cfg     loadConfig
	plan    planner
	keys    *tally
	nodes   map[string]*nodeStat
	reqID   atomic.Uint64
	started time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
	ended  time.Time
}

func startLoad(t *testing.T, cl *cluster, ns string, cfg loadConfig, p planner) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{ns: ns, cfg: cfg, plan: p, keys: newTally(), nodes: map[string]*nodeStat{}, cancel: cancel, started: time.Now()}
	perNode := cfg.rate / float64(len(cl.nodes)) / float64(cfg.batch)
	interval := time.Duration(float64(time.Second) / perNode)
	for i, n := range cl.nodes {
		st := &nodeStat{}
		l.nodes[n.name] = st
		tick := time.NewTicker(interval)
		var nodeWG sync.WaitGroup
		for w := range cfg.writers {
			nodeWG.Add(1)
			rnd := rand.New(rand.NewPCG(uint64(i), uint64(w)))
			go func() {
				defer nodeWG.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					l.send(n, st, rnd)
				}
			}()
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			nodeWG.Wait()
			tick.Stop()
		}()
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for the requests in flight; idempotent.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
	if l.ended.IsZero() {
		l.ended = time.Now()
	}
}

// lastAck is the time of the latest 200 from any node.
func (l *load) lastAck() time.Time {
	var max int64
	for _, s := range l.nodes {
		max = maxInt64(max, s.lastAck.Load())
	}
	return time.Unix(0, max)
}

// acked is the number of increments answered 200 over all nodes.
func (l *load) acked() int64 {
	var n int64
	for _, s := range l.nodes {
		n += s.acked.Load()
	}
	return n
}

// summary describes what each node did.
func (l *load) summary() string {
	var b bytes.Buffer
	for _, name := range sortedKeys(l.nodes) {
		s := l.nodes[name]
		fmt.Fprintf(&b, "%s: %d incr in %d batches, %d refused, %d unknown; ", name, s.acked.Load(), s.batches.Load(), s.refused.Load(), s.unknown.Load())
	}
	return b.String()
}

func (l *load) send(n *node, st *nodeStat, rnd *rand.Rand) {
	p := l.plan(n, rnd, l.cfg.batch)
	if p.release != nil {
		defer p.release()
	}
	if p.skip || len(p.keys) == 0 {
		return
	}
	counts := map[string]int64{}
	var body bytes.Buffer
	body.WriteString(`{"ops":[`)
	for i, k := range p.keys {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"ns":"` + l.ns + `","key":` + strconv.Quote(k) + `}`)
		counts[k]++
	}
	body.WriteString(`]}`)

	id := l.reqID.Add(1)
	st.inflight.Store(id, time.Now())
	defer st.inflight.Delete(id)
	resp, err := httpc.Post(n.base+"/v1/batch", "application/json", &body)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			st.refused.Add(1) // never connected: nothing was sent
			return
		}
		for k, c := range counts {
			l.keys.get(k).unknown.Add(c)
		}
		st.unknown.Add(1)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		now := time.Now()
		for k, c := range counts {
			l.keys.get(k).acked.Add(c)
		}
		st.acked.Add(int64(len(p.keys)))
		st.batches.Add(1)
		casMax(&st.lastAck, now.UnixNano())
		if p.onAck != nil {
			p.onAck(now)
		}
	case resp.StatusCode < 500 || resp.StatusCode == http.StatusServiceUnavailable:
		// A refused request changes nothing (docs/api.md).
		st.refused.Add(1)
	default:
		for k, c := range counts {
			l.keys.get(k).unknown.Add(c)
		}
		st.unknown.Add(1)
	}
}

func casMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func maxInt64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// converged reports whether every node reads, for every key in want,
// the same value, with acked <= value <= attempted. It reads the nodes
// concurrently.
func converged(ctx context.Context, cl *cluster, ns string, want map[string][2]int64) (bool, string) {
	type res struct {
		vals map[string]int64
		err  error
	}
	out := make([]res, len(cl.nodes))
	var wg sync.WaitGroup
	for i, n := range cl.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := map[string]int64{}
			for k := range want {
				v, err := value(ctx, n, ns, k)
				if err != nil {
					out[i] = res{err: err}
					return
				}
				vals[k] = v
			}
			out[i] = res{vals: vals}
		}()
	}
	wg.Wait()
	for i, r := range out {
		if r.err != nil {
			return false, fmt.Sprintf("%s: %v", cl.nodes[i].name, r.err)
		}
	}
	for _, k := range sortedKeys(want) {
		w := want[k]
		first := out[0].vals[k]
		for i, r := range out {
			v := r.vals[k]
			if v != first {
				return false, fmt.Sprintf("%s: %s reads %d, %s reads %d (acked %d, attempted %d)", k, cl.nodes[0].name, first, cl.nodes[i].name, v, w[0], w[1])
			}
			if v < w[0] || v > w[1] {
				return false, fmt.Sprintf("%s: %s reads %d, want acked %d <= value <= attempted %d", k, cl.nodes[i].name, v, w[0], w[1])
			}
		}
	}
	return true, ""
}

// checkBounds fails the test if any node reads a value above attempted
// for any key: that can never heal.
func checkNeverAbove(t *testing.T, cl *cluster, ns string, want map[string][2]int64) {
	t.Helper()
	for _, n := range cl.nodes {
		for _, k := range sortedKeys(want) {
			v, err := value(context.Background(), n, ns, k)
			if err != nil {
				t.Errorf("%s: read %s: %v", n.name, k, err)
				continue
			}
			if v > want[k][1] {
				t.Errorf("%s reads %s = %d, more than the %d increments attempted", n.name, k, v, want[k][1])
			}
		}
	}
}
