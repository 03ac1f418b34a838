package gossip_test

import (
	"context"
	"fmt"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/gossiptest"
)

// Two nodes in two regions on the loopback interface: the second joins the
// first, catches up, and receives the first's increments.
func Example() {
	start := func(name, region string) (*gossip.Mesh, *gossiptest.Replica) {
		cfg := gossip.DefaultConfig()
		cfg.Name, cfg.Region = name, region
		cfg.HTTPAddr = "127.0.0.1:7070"
		cfg.GossipAddr = "127.0.0.1:0" // any free port (TCP and UDP)
		cfg.ReplAddr = "127.0.0.1:0"
		replica := gossiptest.NewReplica(crdt.NodeIDFromName(name)) // the node implements gossip.Replica
		m, err := gossip.New(cfg, replica)
		if err != nil {
			panic(err)
		}
		if err := m.Start(); err != nil {
			panic(err)
		}
		return m, replica
	}
	eu, euReplica := start("eu-1", "eu")
	defer eu.Close()
	us, usReplica := start("us-1", "us")
	defer us.Close()

	if _, err := us.Join([]string{eu.Self().GossipAddr}); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := us.SyncOnce(ctx); err != nil { // before the node reports ready
		panic(err)
	}

	// eu-1 commits an increment, then publishes it.
	d, _ := euReplica.Add("pages", "/home", 5)
	eu.Publish(gossip.Batch{
		Ranges: []gossip.Range{{Origin: d.Origin, After: d.Seq - 1, Upto: d.Seq}},
		Deltas: []gossip.Delta{d},
	})
	gossiptest.WaitFor(10*time.Second, func() bool { return usReplica.Counter("pages", "/home").Value() == 5 })
	fmt.Println("us-1 reads", usReplica.Counter("pages", "/home").Value())
	for _, mb := range us.Status().Members {
		fmt.Println(mb.Name, mb.Region, mb.State)
	}
	// Output:
	// us-1 reads 5
	// eu-1 eu alive
	// us-1 us alive
}
