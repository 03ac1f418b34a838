package crdt

import (
	"hash/fnv"
	"strconv"
)

// NodeIDFromName derives a node's slot id from its name (64-bit FNV-1a), so
// that a node restarted under the same name keeps writing to its own slot.
func NodeIDFromName(name string) NodeID {
	h := fnv.New64a()
	h.Write([]byte(name))
	return NodeID(h.Sum64())
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
// the duplicate applications of an idempotency id they left behind.
func NodeIDOf(name string, inc uint64) NodeID {
	base := NodeIDFromName(name)
	if inc == 0 {
		return base
	}
	lo := uint32(NodeIDFromName(name + "#" + strconv.FormatUint(inc, 16)))
	if lo == uint32(base) {
		lo ^= 1
	}
	return base&^0xFFFFFFFF | NodeID(lo)
}

// SameName reports whether a and b may be incarnations of one node name
// (NodeIDOf); distinct names share the high 32 bits with probability 2^-32.
func SameName(a, b NodeID) bool { return a>>32 == b>>32 }
