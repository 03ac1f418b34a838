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
func NodeIDOf(name string, inc uint64) NodeID {
	if inc == 0 {
		return NodeIDFromName(name)
	}
	return NodeIDFromName(name + "#" + strconv.FormatUint(inc, 16))
}
