package keyspace

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestEvictionKeepsTheBound: with far more counters than room, every
// checkpoint trims each stripe back to its share, round after round, and
// every value reads back through the store.
func TestEvictionKeepsTheBound(t *testing.T) {
	st := openStore(t, vfs.NewMem())
	h := New(Config{Store: st, Stripes: 16, Capacity: 64})
	const keys = 2000
	for round := 1; round <= 3; round++ {
		for i := range keys {
			write(t, h, "ev", fmt.Sprintf("k%04d", i), int64(i))
		}
		checkpoint(t, st, h)
		if got, bound := h.Count(""), 16*h.StripeCap(); got > bound {
			t.Fatalf("round %d, after a checkpoint: %d counters cached, bound %d", round, got, bound)
		}
		for i := range keys {
			if v, ok := read(t, h, "ev", fmt.Sprintf("k%04d", i)); !ok || v != int64(round*i) {
				t.Fatalf("round %d: k%04d = %d (found %v), want %d", round, i, v, ok, round*i)
			}
		}
		if got, bound := h.Count(""), 16*h.StripeCap(); got > bound {
			t.Fatalf("round %d, after reads: %d counters cached, bound %d", round, got, bound)
		}
	}
}
