package crdt

import "hash/fnv"

// NodeIDFromName derives a node's slot id from its name (64-bit FNV-1a), so
// that a node restarted under the same name keeps writing to its own slot.
func NodeIDFromName(name string) NodeID {
	h := fnv.New64a()
	h.Write([]byte(name))
	return NodeID(h.Sum64())
}
