package ratelimit

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// fakeClock is a settable clock for windows and leases.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// members is a membership the test changes.
type members struct {
	self string
	mu   sync.Mutex // guards all
	all  []Member
}

func (m *members) Self() string { return m.self }

func (m *members) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Member(nil), m.all...)
}

func (m *members) set(names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.all = m.all[:0]
	for _, n := range names {
		m.all = append(m.all, Member{Name: n, Addr: n})
	}
}

// memNet is an in-process Transport: addresses are node names, and the
// test cuts links between nodes.
type memNet struct {
	mu    sync.Mutex // guards nodes and cut
	nodes map[string]*Limiter
	cut   map[[2]string]bool
	calls atomic.Int64
	// latency is added to every call, like a network would.
	latency time.Duration
}

var errCut = errors.New("memnet: link cut")

func (n *memNet) Lease(ctx context.Context, addr string, req LeaseRequest) (LeaseResponse, error) {
	n.calls.Add(1)
	if n.latency > 0 {
		time.Sleep(n.latency)
	}
	n.mu.Lock()
	to := n.nodes[addr]
	cut := n.cut[[2]string{req.From, addr}]
	n.mu.Unlock()
	if to == nil || cut {
		return LeaseResponse{}, errCut
	}
	return to.HandleLease(ctx, req)
}

// partition cuts every link between side a and side b.
func (n *memNet) partition(a, b []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			n.cut[[2]string{x, y}] = true
			n.cut[[2]string{y, x}] = true
		}
	}
}

func (n *memNet) heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

type mesh struct {
	net     *memNet
	clock   *fakeClock
	names   []string
	nodes   map[string]*Limiter
	members map[string]*members
}

// newMesh starts one limiter per name, all seeing each other, on a fake
// clock set to start.
func newMesh(t testing.TB, start time.Time, mutate func(*Config), names ...string) *mesh {
	t.Helper()
	m := &mesh{
		net:   &memNet{nodes: map[string]*Limiter{}, cut: map[[2]string]bool{}, latency: 100 * time.Microsecond},
		clock: newFakeClock(start), names: names,
		nodes: map[string]*Limiter{}, members: map[string]*members{},
	}
	for _, name := range names {
		ms := &members{self: name}
		ms.set(names...)
		cfg := DefaultConfig()
		cfg.Membership = ms
		cfg.Transport = m.net
		cfg.Now = m.clock.Now
		cfg.MembersTTL = 0
		cfg.SweepInterval = time.Hour // tests sweep by hand
		cfg.Logger = zaptest.NewLogger(t).Named(name)
		if mutate != nil {
			mutate(&cfg)
		}
		l, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		m.nodes[name] = l
		m.members[name] = ms
		m.net.nodes[name] = l
	}
	return m
}

// ownerOf names the owner of the limit among names.
func ownerOf(ns, key string, w time.Duration, names ...string) string {
	ms := Static{SelfName: names[0]}
	for _, n := range names {
		ms.All = append(ms.All, Member{Name: n})
	}
	return newView(ms, time.Now(), 0).owner(keyHash(ns, key, w)).Name
}

// hammer sends requests of cost 1 from workers goroutines on each of the
// given nodes until every worker has been refused refusals times in a row,
// or until the deadline. It returns the admitted count per node.
func hammer(t *testing.T, m *mesh, nodes []string, workers, refusals int, req Request, deadline time.Duration) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var mu sync.Mutex
	got := map[string]int64{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, name := range nodes {
		l := m.nodes[name]
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var admitted int64
				streak := 0
				for streak < refusals && ctx.Err() == nil {
					d, err := l.Decide(ctx, req)
					if err != nil {
						if ctx.Err() == nil {
							t.Errorf("%s: %v", name, err)
						}
						break
					}
					runtime.Gosched() // let the other clients in
					if d.Allowed {
						admitted++
						streak = 0
					} else {
						streak++
					}
				}
				mu.Lock()
				got[name] += admitted
				mu.Unlock()
			}()
		}
	}
	close(start)
	wg.Wait()
	if ctx.Err() != nil {
		t.Logf("hammer stopped at its deadline (%v)", deadline)
	}
	return got
}

func sum(m map[string]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}
