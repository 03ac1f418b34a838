package httpapi

import (
	"strings"
	"testing"

	"github.com/countmesh/countmesh/gossip"
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
