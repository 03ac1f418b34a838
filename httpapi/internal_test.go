package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/node"
)

// staticCluster is a Cluster whose members a test sets.
type staticCluster struct {
	mu      sync.Mutex // guards members
	members []gossip.Member
}

func (c *staticCluster) Status() gossip.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return gossip.Status{Members: append([]gossip.Member(nil), c.members...)}
}

func TestPeerRPCRoundTrip(t *testing.T) {
	b := newTestAPI(t, nil)
	pc := NewPeerClient()
	t.Cleanup(pc.Close)
	peer := node.Peer{Name: "b", HTTPAddr: strings.TrimPrefix(b.url, "http://")}
	ctx := context.Background()

	var c crdt.Counter
	if _, err := c.Add(crdt.NodeIDFromName("a"), 41); err != nil {
		t.Fatal(err)
	}
	c.SetReset(crdt.NodeIDFromName("a"), 2, false)
	if _, err := c.Add(crdt.NodeIDFromName("a"), 1); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"plain", "with/slash and space", "\x03internal\x00series"} {
		if err := pc.PushStates(ctx, peer, []node.CounterState{{NS: "ns", Key: key, State: c}}); err != nil {
			t.Fatalf("push %q: %v", key, err)
		}
		got, err := pc.FetchState(ctx, peer, "ns", key)
		if err != nil {
			t.Fatalf("fetch %q: %v", key, err)
		}
		if !got.Equal(c) || got.Value() != 3 {
			t.Fatalf("fetch %q = %+v (value %d), want the pushed state %+v (value 3)", key, got, got.Value(), c)
		}
	}
	// A counter never seen is the zero state, not an error.
	got, err := pc.FetchState(ctx, peer, "ns", "never")
	if err != nil || got.Value() != 0 || len(got.Slots) != 0 {
		t.Fatalf("fetch of an unknown counter = %+v, %v; want the zero state", got, err)
	}
}

func TestPeerRPCRefusesBadRequests(t *testing.T) {
	b := newTestAPI(t, nil)
	pc := NewPeerClient()
	t.Cleanup(pc.Close)
	peer := node.Peer{Name: "b", HTTPAddr: strings.TrimPrefix(b.url, "http://")}
	ctx := context.Background()

	status, body := b.do(http.MethodPost, "/internal/v1/state", mediaMsgpack, []byte{0xc1})
	if status != http.StatusBadRequest || errCode(body) != codeInvalidArgument {
		t.Fatalf("garbage body: %d %v, want 400 invalid_argument", status, body)
	}
	if _, err := pc.FetchState(ctx, peer, "Bad", "k"); !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("fetch with a bad namespace: %v, want a 400 ErrPeer", err)
	}
	if err := pc.PushStates(ctx, peer, []node.CounterState{{NS: "ns", Key: "\x7fbad"}}); !errors.Is(err, ErrPeer) {
		t.Fatalf("push with a bad key: %v, want ErrPeer", err)
	}
	// Nothing listens there: the call fails, within its context.
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := pc.FetchState(cctx, node.Peer{HTTPAddr: "127.0.0.1:1"}, "ns", "k"); !errors.Is(err, ErrPeer) {
		t.Fatalf("fetch from a closed port: %v, want ErrPeer", err)
	}
}

func TestPeerRPCNotReadyRefusesReads(t *testing.T) {
	b := newTestAPI(t, func(c *node.Config) { c.StartUnready = true })
	status, body := b.do(http.MethodGet, "/internal/v1/state/ns/k", "", nil)
	if status != http.StatusServiceUnavailable || errCode(body) != codeUnavailable {
		t.Fatalf("state of a node not ready: %d %v, want 503", status, body)
	}
}

// Three nodes of one region over real HTTP: the public API's consistency
// parameter reaches the peers through the internal routes.
func TestQuorumOverHTTP(t *testing.T) {
	cluster := &staticCluster{}
	pc := NewPeerClient()
	t.Cleanup(pc.Close)
	var apis []*testAPI
	for _, name := range []string{"a1", "a2", "a3"} {
		peers := new(ClusterPeers)
		peers.Set(cluster)
		apis = append(apis, newTestAPI(t, func(c *node.Config) {
			c.Name, c.Region = name, "a"
			c.Peers, c.PeerTransport = peers, pc
			c.QuorumTimeout = 500 * time.Millisecond
		}))
		cluster.members = append(cluster.members, gossip.Member{Name: name, Region: "a", State: gossip.StateAlive,
			HTTPAddr: strings.TrimPrefix(apis[len(apis)-1].url, "http://")})
	}
	// A member that left is not counted: the region stays 3 nodes.
	cluster.members = append(cluster.members, gossip.Member{Name: "gone", Region: "a", State: gossip.StateLeft, HTTPAddr: "127.0.0.1:1"})

	status, body := apis[0].do(http.MethodPost, "/v1/counters/ns/k/incr", "", []byte(`{"by":3,"consistency":"quorum"}`))
	if status != http.StatusOK {
		t.Fatalf("quorum incr: %d %v", status, body)
	}
	holders := 0
	for _, a := range apis {
		c, err := a.node.Get(context.Background(), "ns", "k", node.ReadOptions{Consistency: node.ConsistencyLocal})
		if err != nil {
			t.Fatal(err)
		}
		if c.Value == 3 {
			holders++
		}
	}
	if holders < 2 {
		t.Fatalf("after a quorum incr, %d of 3 nodes hold it; want a majority", holders)
	}
	status, body = apis[2].do(http.MethodGet, "/v1/counters/ns/k?consistency=quorum", "", nil)
	if status != http.StatusOK || body["value"] != float64(3) {
		t.Fatalf("quorum read on a3: %d %v, want value 3", status, body)
	}

	// With both peers unreachable: 503 within the quorum timeout.
	cluster.mu.Lock()
	cluster.members[1].HTTPAddr, cluster.members[2].HTTPAddr = "127.0.0.1:1", "127.0.0.1:1"
	cluster.mu.Unlock()
	for _, req := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/counters/ns/k/incr", `{"consistency":"quorum"}`},
		{http.MethodGet, "/v1/counters/ns/k?consistency=quorum", ""},
		{http.MethodGet, "/v1/counters/ns/k?consistency=all", ""},
	} {
		start := time.Now()
		status, body := apis[0].do(req.method, req.path, "", []byte(req.body))
		if status != http.StatusServiceUnavailable || errCode(body) != codeUnavailable {
			t.Fatalf("%s %s with the peers down: %d %v, want 503", req.method, req.path, status, body)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%s %s took %v, want at most about the quorum timeout", req.method, req.path, took)
		}
	}
}
