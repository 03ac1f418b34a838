package ratelimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/countmesh/countmesh/ratelimit"
)

// A node alone owns every limit; in a mesh, set Membership to the live
// members (MeshMembership) and Transport to the mesh's peer transport
// (peerrpc.Client).
func ExampleLimiter_Decide() {
	cfg := ratelimit.DefaultConfig()
	cfg.Membership = ratelimit.Single("node-1")
	l, err := ratelimit.New(cfg)
	if err != nil {
		panic(err)
	}
	defer l.Close()
	for range 3 {
		d, err := l.Decide(context.Background(), ratelimit.Request{
			NS: "api", Key: "user:1", Limit: 2, Window: time.Minute, Cost: 1,
		})
		if err != nil {
			panic(err)
		}
		fmt.Println(d.Allowed, d.Remaining)
	}
	// Output:
	// true 1
	// true 0
	// false 0
}
