package crdt

import (
	"math"
	"testing"
)

// A name whose hash falls on 0 or a retired id (probability 2^-44) gets an
// id above them, deterministically, and so does every incarnation of it,
// all recognised as one name (SameName); other hashes are kept as they are.
func TestIDFromHashAvoidsRetiredIDs(t *testing.T) {
	for _, tt := range []struct {
		h    uint64
		want NodeID
	}{
		{0, 1 << 32},
		{1, 1<<32 | 1},
		{7, 1<<32 | 7},
		{MaxRetiredGen, 1<<32 | NodeID(MaxRetiredGen)},
		{MaxRetiredGen + 1, NodeID(MaxRetiredGen) + 1},
		{1<<32 | 5, 1<<32 | 5}, // the mapped id of the hash 5, kept: a 64-bit collision
		{math.MaxUint64, math.MaxUint64},
	} {
		if got := idFromHash(tt.h); got != tt.want {
			t.Errorf("idFromHash(%#x) = %#x, want %#x", tt.h, uint64(got), uint64(tt.want))
		}
	}

	for _, tt := range []struct {
		base NodeID
		h    uint64
		want NodeID
	}{
		// The base of a small hash: high 32 bits 1, incarnations above 2^32.
		{idFromHash(5), 0, 1 << 32},
		{idFromHash(5), 5, 1<<32 | 4}, // the base's own low bits: flipped
		// High 32 bits 0, base above the retired ids: an incarnation's low
		// bits that would land on 0..MaxRetiredGen get their top bit set.
		{0x8000_0003, 3, 0x8000_0002}, // 3, then 0x80000003, the base: flipped
		{0x8000_0003, 0, 0x8000_0000},
		{0x8000_0003, MaxRetiredGen, 0x8000_0000 | NodeID(MaxRetiredGen)},
		{0x8000_0003, MaxRetiredGen + 1, NodeID(MaxRetiredGen) + 1},
		{NodeID(MaxRetiredGen) + 1, MaxRetiredGen + 1, NodeID(MaxRetiredGen) | 1<<31}, // flipped to the range, then out
		{0xAB_0000_0001, 0xFFFF_0000_0007, 0xAB_0000_0007},
	} {
		got := incarnationID(tt.base, tt.h)
		if got != tt.want {
			t.Errorf("incarnationID(%#x, %#x) = %#x, want %#x", uint64(tt.base), tt.h, uint64(got), uint64(tt.want))
		}
		if uint64(got) <= MaxRetiredGen || got == tt.base || !SameName(got, tt.base) {
			t.Errorf("incarnationID(%#x, %#x) = %#x: a retired id or 0, the base, or not SameName", uint64(tt.base), tt.h, uint64(got))
		}
	}
}

func TestNodeIDsAreNeverRetired(t *testing.T) {
	for _, name := range []string{"", "a", "n1", "countd-1", "gone"} {
		base := NodeIDFromName(name)
		if base != idFromHash(fnv64a(name)) || uint64(base) <= MaxRetiredGen {
			t.Errorf("NodeIDFromName(%q) = %d", name, base)
		}
		for inc := range uint64(50) {
			id := NodeIDOf(name, inc)
			if uint64(id) <= MaxRetiredGen || IsRetiredID(id) || !SameName(id, base) || (inc > 0 && id == base) {
				t.Errorf("NodeIDOf(%q, %d) = %d (base %d)", name, inc, id, base)
			}
		}
	}
}
