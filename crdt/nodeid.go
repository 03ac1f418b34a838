package crdt

import (
	"hash/fnv"
	"strconv"
)

// NodeIDFromName derives a node's slot id from its name (64-bit FNV-1a), so
// that a node restarted under the same name keeps writing to its own slot.
// It is never 0 nor a retired id (0..MaxRetiredGen, see RetiredID): a name
// whose hash falls there (probability 2^-44) gets the hash with bit 32 set,
// so that its incarnations (NodeIDOf) share high 32 bits that are not 0.
func NodeIDFromName(name string) NodeID {
	return idFromHash(fnv64a(name))
}

// NodeIDOf is the slot id of incarnation inc of the node called name. An
// incarnation is one life of a data directory: a node whose disk was lost
// comes back as a new incarnation with a new slot, because its old slot may
// be held, higher than anything it could recover, by a peer it cannot reach
// (writing on from a lower copy would mask its new increments there).
// Incarnation 0 is NodeIDFromName(name).
//
// The high 32 bits of every incarnation's id are those of the name's, so
// that an incarnation recognises its predecessors (SameName): it takes back
// the duplicate applications of an idempotency id they left behind. Like
// NodeIDFromName it is never 0 nor a retired id.
func NodeIDOf(name string, inc uint64) NodeID {
	base := NodeIDFromName(name)
	if inc == 0 {
		return base
	}
	return incarnationID(base, fnv64a(name+"#"+strconv.FormatUint(inc, 16)))
}

func fnv64a(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// idFromHash maps a name's hash to its slot id: the hash itself, unless it
// is 0 or a retired id, which get bit 32 set (the result is then above
// 2^32, and its high 32 bits are 1).
func idFromHash(h uint64) NodeID {
	if h <= MaxRetiredGen {
		h |= 1 << 32
	}
	return NodeID(h)
}

// incarnationID is the id of an incarnation of the name of slot id base
// (from idFromHash), from the hash h of the incarnation's name: base's high
// 32 bits and h's low 32 bits, never base itself. Only when base's high 32
// bits are 0 can that land in 0..MaxRetiredGen; the low 32 bits then get
// their top bit set, which keeps the high 32 bits (SameName) and puts the
// id above 2^31.
func incarnationID(base NodeID, h uint64) NodeID {
	lo := uint32(h)
	if lo == uint32(base) {
		lo ^= 1
	}
	id := base&^0xFFFFFFFF | NodeID(lo)
	if uint64(id) <= MaxRetiredGen {
		lo |= 1 << 31
		if lo == uint32(base) {
			lo ^= 1
		}
		id = base&^0xFFFFFFFF | NodeID(lo)
	}
	return id
}

// SameName reports whether a and b may be incarnations of one node name
// (NodeIDOf); distinct names share the high 32 bits with probability 2^-32.
func SameName(a, b NodeID) bool { return a>>32 == b>>32 }
