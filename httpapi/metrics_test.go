package httpapi

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/ratelimit"
)

// fakeCluster answers a fixed status.
type fakeCluster struct{ st gossip.Status }

func (f fakeCluster) Status() gossip.Status { return f.st }

// TestMeshMetrics checks the members by state and the replication lag per
// peer that /metrics exports from the cluster's status.
func TestMeshMetrics(t *testing.T) {
	st := gossip.Status{
		Members:     []gossip.Member{{Name: "a", State: "alive"}, {Name: "b", State: "alive"}, {Name: "c", State: "suspect"}},
		Replication: []gossip.PeerLag{{Peer: "b", Region: "eu", LagMS: 1500}, {Peer: "c", Region: "us", LagMS: 20}},
	}
	a := newTestAPIWith(t, nil, func(c *Config) { c.Cluster = fakeCluster{st} })
	text := a.metricsText()
	for _, want := range []string{
		`countmesh_members{state="alive"} 2`,
		`countmesh_members{state="suspect"} 1`,
		`countmesh_members{state="dead"} 0`,
		`countmesh_replication_lag_seconds{peer="b",region="eu"} 1.5`,
		`countmesh_replication_lag_seconds{peer="c",region="us"} 0.02`,
		"countmesh_ready 1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestRateLimitMetrics checks that /metrics counts the limiter's decisions
// by source: with a second member that cannot be reached, the limits it
// owns are decided on this node's share, and those decisions and the
// failed lease calls show.
func TestRateLimitMetrics(t *testing.T) {
	rcfg := ratelimit.DefaultConfig()
	rcfg.Membership = ratelimit.Static{SelfName: "a", All: []ratelimit.Member{{Name: "a", Addr: "a"}, {Name: "b", Addr: "b"}}}
	rcfg.Transport = &localLeases{limiters: map[string]*ratelimit.Limiter{}} // b is not there
	rcfg.Logger = zaptest.NewLogger(t)
	l, err := ratelimit.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := newTestAPIWith(t, nil, func(c *Config) { c.RateLimit = l })
	for i := range 40 {
		if _, err := l.Decide(context.Background(), ratelimit.Request{NS: "api", Key: fmt.Sprintf("u%d", i), Limit: 100, Window: time.Minute, Cost: 1}); err != nil {
			t.Fatal(err)
		}
	}
	st := l.Stats()
	if st.Owner == 0 || st.Fallback == 0 {
		t.Fatalf("40 keys over two members: %d decided as owner, %d on the share; want some of each", st.Owner, st.Fallback)
	}
	text := a.metricsText()
	for _, want := range []string{
		fmt.Sprintf(`countmesh_ratelimit_decisions_total{source="owner"} %d`, st.Owner),
		`countmesh_ratelimit_decisions_total{source="lease"} 0`,
		fmt.Sprintf(`countmesh_ratelimit_decisions_total{source="share"} %d`, st.Fallback),
		fmt.Sprintf("countmesh_ratelimit_lease_calls_total %d", st.LeaseCalls),
		fmt.Sprintf("countmesh_ratelimit_lease_errors_total %d", st.LeaseErrors),
		"countmesh_ratelimit_active_limits 40",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if st.LeaseErrors == 0 {
		t.Errorf("no failed lease call counted with the owner away")
	}
}
