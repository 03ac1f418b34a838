package change

import "github.com/countmesh/countmesh/crdt"

// Delta is one change of one origin's slot of one counter.
type Delta struct {
	NS, Key string
	Origin  crdt.NodeID
	// Seq is the origin's sequence number for this change: dense per origin
	// (1, 2, 3, ...); a later seq for the same counter supersedes earlier
	// ones.
	Seq uint64
	// State holds at least Origin's slot, and the counter's reset record
	// when there is one (always when the change was a reset). It is a
	// crdt.Counter state below the origin's, so merging it is always safe.
	State crdt.Counter
}

// Range says that a batch carries every change of Origin with
// After < seq <= Upto that its sender still holds. Superseded changes are
// omitted: a later change of the same counter, also in the batch (or sent
// before it on the same stream), carries the full slot.
type Range struct {
	Origin      crdt.NodeID
	After, Upto uint64
}

// Batch is the unit of replication: what a node publishes after a commit
// and what a replica applies. Ranges are sorted by (Origin, After) and do
// not overlap; a batch may carry deltas that no range covers (their vector
// stays where it is).
type Batch struct {
	Ranges  []Range
	Deltas  []Delta
	Configs []ConfigRecord
	// Vouched are origins the sending member holds data of (in an
	// anti-entropy session, the origins of its version vector and of its
	// changes held past a gap), which the receiver may accept in this
	// batch although it never heard of them: nodes that left before it
	// came. Empty on streams. Not a change: Empty ignores it.
	Vouched []crdt.NodeID
}

// Empty reports whether b carries nothing.
func (b Batch) Empty() bool {
	return len(b.Ranges) == 0 && len(b.Deltas) == 0 && len(b.Configs) == 0
}

// ConfigRecord is a namespace config, replicated last-writer-wins by
// (HLC, Origin). Payload is opaque to replication.
type ConfigRecord struct {
	NS      string
	HLC     uint64
	Origin  crdt.NodeID
	Payload []byte
}

// Newer reports whether c wins over o under last-writer-wins: a higher HLC,
// or the same HLC and a higher Origin.
func (c ConfigRecord) Newer(o ConfigRecord) bool {
	if c.HLC != o.HLC {
		return c.HLC > o.HLC
	}
	return c.Origin > o.Origin
}
