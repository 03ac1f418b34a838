package change

import (
	"hash/fnv"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/splitmix"
)

// Partitions is how many partitions the keys of a sharded namespace hash
// into. Placement is per partition, and a node numbers its changes of a
// sharded namespace per partition (a sequence space, below), so a version
// vector holds one entry per (writer, owned partition): 64 keeps that to
// about a thousand entries at 100 nodes with 3 replicas per region of 20
// nodes (docs/scale.md), at the price of a coarser balance than the 4,096
// first planned.
const Partitions = 64

// Shard is where a counter of a sharded namespace lives: its partition and
// the namespace's replicas per region. Namespaces with different replica
// counts never share a sequence space, because their changes go to
// different owner sets and a space must reach each of its owners whole.
type Shard struct {
	Replicas int // nodes per region holding the partition, at least 1
	Part     int // 0 <= Part < Partitions
}

// ShardOf returns the shard of ns/key in a namespace with replicas nodes
// per region (replicas > 0).
func ShardOf(ns, key string, replicas int) Shard {
	return Shard{Replicas: replicas, Part: PartitionOf(ns, key)}
}

// PartitionOf returns the partition of ns/key.
func PartitionOf(ns, key string) int {
	h := fnv.New64a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int(splitmix.Mix(h.Sum64()) % Partitions)
}

// PlacementKey is the rendezvous key of the shard's partition: owners are
// the members of a region with the highest scores for it, so the owners of
// a namespace with 1 replica are among those of one with 3.
func (s Shard) PlacementKey() uint64 {
	return splitmix.Mix(0x7061727469000000 | uint64(s.Part))
}

// mask is what Space xors into an origin: nonzero, so that a space never
// equals its origin, and different for every (replicas, partition).
func (s Shard) mask() crdt.NodeID {
	return crdt.NodeID(splitmix.Mix(0x5350414345000000^(uint64(s.Replicas)<<16)^uint64(s.Part)) | 1)
}

// Space returns the sequence space in which origin numbers its changes of
// the shard. Replication (Delta.Origin, Range.Origin, version vectors, the
// (origin, seq) index) treats a space as an origin of its own: dense
// sequence numbers 1, 2, 3, ... that only the shard's owners (and the
// writer) hold, so that a node that does not own a partition never has a
// vector entry for it that it could not back with data. The counter state
// still carries the writer's slot under its real id, Origin(space).
//
// A space is the origin xored with a 64-bit mask of the shard: it could
// equal another node's id only by a 64-bit accident.
func (s Shard) Space(origin crdt.NodeID) crdt.NodeID { return origin ^ s.mask() }

// Origin is the inverse of Space: the slot id of the node that numbers
// its changes of the shard in space.
func (s Shard) Origin(space crdt.NodeID) crdt.NodeID { return space ^ s.mask() }

// MaxReplicas bounds a namespace's replicas per region.
const MaxReplicas = 16

// CarriesWriter reports whether state c holds a change of writer: its
// slot, or a reset it made.
func CarriesWriter(c *crdt.Counter, writer crdt.NodeID) bool {
	if c.Reset != nil && c.Reset.Node == writer {
		return true
	}
	for _, sl := range c.Slots {
		if sl.Node == writer {
			return true
		}
	}
	return false
}

// Writer returns the slot id whose changes origin numbers for ns/key, given
// a state that holds the change: origin itself when the state carries it
// (a node's own sequence), else the writer whose space of the key's shard
// origin is, for the given replicas first and then every other count (a
// namespace's replicas never change, but a peer may have numbered the
// change under another count before the config reached it); origin and
// false when none fits.
func Writer(ns, key string, origin crdt.NodeID, replicas int, c *crdt.Counter) (crdt.NodeID, bool) {
	if CarriesWriter(c, origin) {
		return origin, true
	}
	part := PartitionOf(ns, key)
	if replicas > 0 {
		if w := (Shard{Replicas: replicas, Part: part}).Origin(origin); CarriesWriter(c, w) {
			return w, true
		}
	}
	for r := 1; r <= MaxReplicas; r++ {
		if r == replicas {
			continue
		}
		if w := (Shard{Replicas: r, Part: part}).Origin(origin); CarriesWriter(c, w) {
			return w, true
		}
	}
	return origin, false
}

// SpaceOwner returns the node among known whose sequence space of some
// shard space is, and whether there is one: how a node vouches for a range
// of a space that comes without a change of it.
func SpaceOwner(space crdt.NodeID, known func(crdt.NodeID) bool) (crdt.NodeID, bool) {
	for r := 1; r <= MaxReplicas; r++ {
		for p := range Partitions {
			if w := (Shard{Replicas: r, Part: p}).Origin(space); known(w) {
				return w, true
			}
		}
	}
	return 0, false
}
