package crdtfuzz

import "github.com/countmesh/countmesh/crdt"

// Reader reads states from fuzz bytes. Node ids come from a small pool, so
// that states share nodes, and numbers from 0xf0 up map to Edges, values
// at the bounds the rules care about. Past the end of B it reads zeros.
type Reader struct {
	B     []byte
	Nodes []crdt.NodeID // the node ids states may name (at least one)
	Edges []uint64      // up to 16 numbers that 0xf0..0xff map to (at least one)
	// MaxSlots bounds the slots of a state and of a reset's floor (the
	// count read is byte % MaxSlots).
	MaxSlots int
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.B) == 0 {
		return 0
	}
	x := r.B[0]
	r.B = r.B[1:]
	return x
}

// U64 reads a number: the byte itself below 0xf0, else an edge.
func (r *Reader) U64() uint64 {
	x := r.Byte()
	if x < 0xf0 {
		return uint64(x)
	}
	return r.Edges[int(x&0x0f)%len(r.Edges)]
}

// Node reads a node id of the pool.
func (r *Reader) Node() crdt.NodeID { return r.Nodes[int(r.Byte())%len(r.Nodes)] }

// Slots reads up to MaxSlots-1 slots, in the order read (unsorted and
// duplicate slots included: validation must refuse them).
func (r *Reader) Slots() []crdt.Slot {
	var out []crdt.Slot
	for range int(r.Byte()) % r.MaxSlots {
		out = append(out, crdt.Slot{Node: r.Node(), P: r.U64(), N: r.U64()})
	}
	return out
}

// Counter reads a state: slots, and a reset record half of the time.
func (r *Reader) Counter() crdt.Counter {
	c := crdt.Counter{Slots: r.Slots()}
	if r.Byte()%2 == 1 {
		c.Reset = &crdt.Reset{Epoch: r.U64(), Node: r.Node(), Value: int64(r.U64()), Deleted: r.Byte()%2 == 1, Floor: r.Slots()}
	}
	return c
}
