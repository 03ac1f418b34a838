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

// TestDropScratchLetsABurstsListsGo: after a burst is drained and saved,
// the stripes' change lists keep the room the burst grew them to until
// DropScratch; afterwards they hold none, the counters are all there, and
// the next changes and checkpoint work as before.
func TestDropScratchLetsABurstsListsGo(t *testing.T) {
	st := openStore(t, vfs.NewMem())
	h := New(Config{Store: st, Stripes: 2, Capacity: 10000})
	const keys = 4000
	for i := range keys {
		write(t, h, "b", fmt.Sprintf("k%04d", i), 1)
	}
	checkpoint(t, st, h)
	room := func() (n int) {
		for i := range h.stripes {
			s := &h.stripes[i]
			s.mu.Lock()
			n += cap(s.dirty) + cap(s.unsaved) + cap(s.saving)
			s.mu.Unlock()
		}
		return n
	}
	if r := room(); r < keys {
		t.Fatalf("after the burst the lists keep room for %d entries; want at least %d (the test no longer sees the burst)", r, keys)
	}
	h.DropScratch()
	if r := room(); r != 0 {
		t.Fatalf("after DropScratch the lists keep room for %d entries, want 0", r)
	}
	write(t, h, "b", "k0001", 5)
	checkpoint(t, st, h)
	for i := range keys {
		want := int64(1)
		if i == 1 {
			want = 6
		}
		if v, ok := read(t, h, "b", fmt.Sprintf("k%04d", i)); !ok || v != want {
			t.Fatalf("k%04d = %d (found %v), want %d", i, v, ok, want)
		}
	}
	if d, u := h.Changed(); d != 0 || u != 0 {
		t.Fatalf("after the last checkpoint: %d dirty, %d unsaved; want none", d, u)
	}
}
