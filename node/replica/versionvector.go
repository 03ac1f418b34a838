package replica

import (
	"sync"

	"github.com/countmesh/countmesh/crdt"
)

// versionVector is what this node durably holds of every origin's changes.
type versionVector struct {
	sync.Mutex // guards m and ahead
	// m is the version vector: origin -> highest seq such that every
	// change of that origin up to it is durably held here.
	m map[crdt.NodeID]uint64
	// ahead holds single changes past a gap in m, durably held here
	// (quorum pushes, deltas of a batch that did not follow on): m
	// moves over them once the gap is filled. In memory only; recovery
	// finds them again in the (origin, seq) index.
	ahead map[crdt.NodeID]map[uint64]struct{}
}

// VouchFor makes the given origins known to this node (see package
// node/export): entries at sequence 0 of the version vector, which claim
// nothing.
func (r *Replica) VouchFor(ids ...crdt.NodeID) {
	r.vv.Lock()
	defer r.vv.Unlock()
	for _, id := range ids {
		if _, ok := r.vv.m[id]; !ok && id != 0 {
			r.vv.m[id] = 0
		}
	}
}
