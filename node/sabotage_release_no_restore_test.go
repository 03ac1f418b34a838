//go:build sabotage_release_no_restore

package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/countmesh/countmesh/change"
)

// Under sabotage_release_no_restore a write of a counter the writer
// released restarts its slot from 0: the owners keep the older, higher
// total, and the write is lost.
func TestSabotageReleaseNoRestoreLosesWrites(t *testing.T) {
	_, a1, a2, b1, c1 := shardedMesh(t)
	ctx := context.Background()
	pub := newDirect(t, a2, b1, c1)
	a1.SetPublisher(pub)
	m := a1.memberSnapshot()
	key := ""
	for i := 0; key == ""; i++ {
		if _, _, self := m.shardOwners(change.ShardOf("sh", fmt.Sprintf("k%d", i), 1)); !self {
			key = fmt.Sprintf("k%d", i)
		}
	}
	if _, err := a1.Incr(ctx, "sh", key, 5, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pub.wait()
	if n, err := a1.ReleaseCopies(ctx); err != nil || n != 1 {
		t.Fatalf("released %d, %v; want 1", n, err)
	}
	if _, err := a1.Incr(ctx, "sh", key, 1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pub.wait()
	if v := localValue(t, b1, "sh", key); v != 5 {
		t.Fatalf("b1 reads %s = %d; the sabotage should have lost the second write (5, not 6)", key, v)
	}
}
