package node_test

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/node"
)

// A node on an in-memory file system: two increments and a batch, then a
// read and a listing.
func Example() {
	cfg := node.DefaultConfig()
	cfg.Name = "example"
	cfg.Store.FS = vfs.NewMem()
	cfg.Store.Dir = "data"
	n, err := node.Open(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	ctx := context.Background()
	n.Incr(ctx, "pages", "home", 2, node.WriteOptions{})
	res, _ := n.Incr(ctx, "pages", "home", 1, node.WriteOptions{ID: "req-1"})
	fmt.Println("home:", res.Value)
	retry, _ := n.Incr(ctx, "pages", "home", 1, node.WriteOptions{ID: "req-1"})
	fmt.Println("retry counted again:", !retry.Duplicate, "value:", retry.Value)
	batch, _ := n.Batch(ctx, []node.BatchOp{{NS: "pages", Key: "about", By: 5}, {NS: "pages", Key: "home", By: 1}}, "", true)
	fmt.Println("batch values:", batch.Values)
	page, _ := n.List(ctx, "pages", "", "", 10)
	for _, c := range page.Items {
		fmt.Println(c.Key, c.Value)
	}
	// Output:
	// home: 3
	// retry counted again: false value: 3
	// batch values: [5 4]
	// about 5
	// home 4
}
