package node

import (
	"fmt"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
)

// Validation of what peers send.
//
// Everything a peer sends reaches the node through Apply (replication
// streams, anti-entropy, and MergeStates of the peer RPC, which goes through
// Apply) and the rights RPC (GrantRights, and the grants acquireRights
// merges). A peer is trusted to be a member, never to be well-formed: before
// anything of a request is merged or stored, the node checks it and refuses
// the whole request with ErrInvalidPeerData when any part is wrong.
//
// The rules, per counter state:
//   - crdt.Counter.Validate with peerLimits: slots and floor strictly sorted
//     by node (no duplicates), every total at most crdt.MaxSlotTotal (2^63,
//     so that no sum the node computes wraps: values are summed in 128 bits
//     and rights with checked int64 arithmetic), the reset's epoch at most
//     crdt.MaxEpoch (2^62, so that epoch+1 never wraps), every floor entry
//     dominated by its slot (else the value wraps).
//   - Every node whose slot adds to the value (the delta's origin, every
//     slot but those equal to their reset floor entry, which add nothing) is
//     a known origin: this node, an origin of its version vector (it has
//     held data of it before), a current member (Config.Peers), or an
//     origin the batch carries a range of (the sending member holds that
//     origin's changes: how a node that joins learns the origins that left
//     before it came). A made-up node would add a slot nobody can ever take
//     back. The node that did a reset is not checked: it adds no count.
//   - Once the node is ready, a state may not set this node's own slot above
//     what this node holds: only durable data leaves a node, so no peer can
//     legitimately hold more of it. (Before MarkReady the node is catching up
//     after a restart and takes max(own disk, peers' copies).)
//   - A reset may move the counter's epoch at most maxEpochAhead past the
//     epoch this node holds: epochs grow by one per reset, so a peer ahead by
//     more has made it up; a forged state cannot carry the epoch to
//     crdt.MaxEpoch in fewer than 2^30 requests.
//   - Id records (idempotency.go): every slot is either empty or holds a body
//     zigzag(by)+1 with |by| <= MaxBy and an apply time no later than now
//     plus Config.MaxClockOffset; no reset (id records are never reset).
//   - Rights records (bounds.go): totals fit in int64 (rights are int64), the
//     receiver id is 8 bytes followed by a key.
//
// Config records: the namespace name is checked as before (a bad one is
// dropped); the payload must decode and normalize, the origin and the bank
// must be known origins (or zero, as in an implicit namespace's record), and
// the HLC's wall time may be at most Config.MaxClockOffset ahead of this
// node's clock.

// peerLimits bound every counter state a peer sends.
var peerLimits = crdt.Limits{}

// rightsLimits bound the states of rights records: rights are int64.
var rightsLimits = crdt.Limits{MaxTotal: math.MaxInt64}

// maxEpochAhead bounds how far past this node's epoch of a counter one
// received reset may be.
const maxEpochAhead = 1 << 32

// maxIDBody is the largest P of an id record's slot: zigzag(by)+1 for
// |by| <= MaxBy.
const maxIDBody = 2*MaxBy + 1

// origins is the set of node ids a peer may name.
type origins map[crdt.NodeID]struct{}

// knownOrigins returns this node, the origins of its version vector and the
// current members.
func (n *Node) knownOrigins() origins {
	set := origins{n.id: {}}
	n.vv.Lock()
	for o := range n.vv.m {
		set[o] = struct{}{}
	}
	n.vv.Unlock()
	if n.cfg.Peers != nil {
		for _, p := range n.cfg.Peers.Peers() {
			id := p.ID
			if id == 0 {
				id = crdt.NodeIDFromName(p.Name)
			}
			set[id] = struct{}{}
		}
	}
	return set
}

// coveredByFloor reports whether slot s is exactly its reset floor entry:
// it then adds nothing to the value (a delta carries such slots to keep
// every floor entry dominated, for nodes that may have left long ago).
func coveredByFloor(r *crdt.Reset, s crdt.Slot) bool {
	if r == nil {
		return false
	}
	for _, f := range r.Floor {
		if f.Node == s.Node {
			return f.P == s.P && f.N == s.N
		}
	}
	return false
}

func (o origins) has(id crdt.NodeID) bool {
	_, ok := o[id]
	return ok
}

// invalidPeerData builds the error of a refused peer input.
func invalidPeerData(ns, key, format string, args ...any) error {
	return fmt.Errorf("%w: %s/%q: %s", ErrInvalidPeerData, ns, key, fmt.Sprintf(format, args...))
}

// checkPeerState applies the stateless rules to the state of ns/key that a
// peer sent with the given origin.
func (n *Node) checkPeerState(known origins, ns, key string, origin crdt.NodeID, c *crdt.Counter) error {
	lim := peerLimits
	if key[0] == kindRights {
		lim = rightsLimits
	}
	if err := c.Validate(lim); err != nil {
		return invalidPeerData(ns, key, "%v", err)
	}
	if !known.has(origin) {
		return invalidPeerData(ns, key, "origin %d is neither this node, an origin it holds data of, a member, nor an origin the batch carries a range of", origin)
	}
	for _, s := range c.Slots {
		if !known.has(s.Node) && !coveredByFloor(c.Reset, s) {
			return invalidPeerData(ns, key, "slot of node %d, which is neither this node, an origin it holds data of, nor a member", s.Node)
		}
	}
	switch key[0] {
	case kindID:
		return n.checkIDRecord(ns, key, c)
	case kindRights:
		if len(key) < 10 {
			return invalidPeerData(ns, key, "a rights record's key is its receiver (8 bytes) and a key")
		}
	}
	return nil
}

// checkIDRecord applies the rules of id records.
func (n *Node) checkIDRecord(ns, key string, c *crdt.Counter) error {
	if _, _, ok := parseIDKey(key); !ok {
		return invalidPeerData(ns, key, "not an id record key")
	}
	if c.Reset != nil {
		return invalidPeerData(ns, key, "an id record is never reset")
	}
	latest := uint64(max(n.cfg.Now().Add(n.cfg.MaxClockOffset+time.Second).Unix(), 0))
	for _, s := range c.Slots {
		switch {
		case s.P == 0 && s.N <= 1: // empty, or an incarnation's take-back mark
		case s.P == 0:
			return invalidPeerData(ns, key, "id record slot of node %d has an apply time but no body", s.Node)
		case s.P > maxIDBody:
			return invalidPeerData(ns, key, "id record slot of node %d has body %d, beyond |by| <= %d", s.Node, s.P, MaxBy)
		case s.N>>1 > latest:
			return invalidPeerData(ns, key, "id record slot of node %d was applied at %d, in the future", s.Node, s.N>>1)
		}
	}
	return nil
}

// checkAgainstLocalLocked applies the rules that need this node's state of
// the counter (nil: none). The caller holds the counter's stripe.
func (n *Node) checkAgainstLocalLocked(ns, key string, local *crdt.Counter, c *crdt.Counter) error {
	var mine crdt.Slot
	var epoch uint64
	if local != nil {
		mine = local.Slot(n.id)
		if local.Reset != nil {
			epoch = local.Reset.Epoch
		}
	}
	if n.ready.Load() {
		if theirs := c.Slot(n.id); theirs.P > mine.P || theirs.N > mine.N {
			return invalidPeerData(ns, key, "it sets this node's own slot to P %d, N %d, above the P %d, N %d it holds; only this node writes its slot",
				theirs.P, theirs.N, mine.P, mine.N)
		}
	}
	if c.Reset != nil && c.Reset.Epoch > epoch+maxEpochAhead {
		return invalidPeerData(ns, key, "reset epoch %d is more than %d past this node's %d", c.Reset.Epoch, uint64(maxEpochAhead), epoch)
	}
	return nil
}

// needsLocalCheck reports whether checkAgainstLocalLocked could refuse c,
// so that the pre-check reads only those counters.
func (n *Node) needsLocalCheck(c *crdt.Counter) bool {
	if c.Reset != nil {
		return true
	}
	own := c.Slot(n.id)
	return n.ready.Load() && (own.P != 0 || own.N != 0)
}

// checkBatch checks a batch from a peer before anything of it is applied:
// every rule above, for every delta and config record. Deltas with a bad
// name are skipped here as in Apply (which drops them).
func (n *Node) checkBatch(b *gossip.Batch) error {
	if len(b.Deltas) == 0 && len(b.Configs) == 0 && len(b.Ranges) == 0 {
		return nil
	}
	known := n.knownOrigins()
	// A range of an origin this node does not know, sent with changes of
	// that origin, is the sending member's word that it holds them: that
	// is how a node that joins learns the origins that left before it
	// came (anti-entropy sends each origin's chunks with their ranges). A
	// range alone vouches for nothing.
	carried := make(map[crdt.NodeID]bool)
	for i := range b.Deltas {
		carried[b.Deltas[i].Origin] = true
	}
	for _, r := range b.Ranges {
		if !known.has(r.Origin) && carried[r.Origin] {
			known[r.Origin] = struct{}{}
		}
	}
	for _, r := range b.Ranges {
		if !known.has(r.Origin) {
			return fmt.Errorf("%w: range of origin %d, which is neither this node, an origin it holds data of, a member, nor an origin whose changes the batch carries", ErrInvalidPeerData, r.Origin)
		}
		if r.After > r.Upto {
			return fmt.Errorf("%w: range of origin %d ends (%d) before it starts (%d)", ErrInvalidPeerData, r.Origin, r.Upto, r.After)
		}
	}
	for i := range b.Deltas {
		d := &b.Deltas[i]
		if ValidateNamespace(d.NS) != nil || validReplicatedKey(d.Key) != nil {
			continue
		}
		if err := n.checkPeerState(known, d.NS, d.Key, d.Origin, &d.State); err != nil {
			return err
		}
	}
	for i := range b.Configs {
		if ValidateNamespace(b.Configs[i].NS) != nil {
			continue
		}
		if _, err := n.checkConfigRecord(known, &b.Configs[i]); err != nil {
			return err
		}
	}
	// The rules that need the local state, for the deltas they could
	// refuse. They only grow more permissive as the node's state grows, so
	// what passes here still passes when Apply merges it.
	var buf []byte
	for i := range b.Deltas {
		d := &b.Deltas[i]
		if ValidateNamespace(d.NS) != nil || validReplicatedKey(d.Key) != nil || !n.needsLocalCheck(&d.State) {
			continue
		}
		buf = compositeKey(buf[:0], d.NS, d.Key)
		if err := n.checkLocal(buf, d.NS, d.Key, &d.State); err != nil {
			return err
		}
	}
	return nil
}

// checkLocal runs checkAgainstLocalLocked under the counter's stripe.
func (n *Node) checkLocal(ck []byte, ns, key string, c *crdt.Counter) error {
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := n.lookupLocked(s, ck, ns, key, false)
	if err != nil {
		return fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	var local *crdt.Counter
	if e != nil {
		local = &e.c
	}
	return n.checkAgainstLocalLocked(ns, key, local, c)
}

// checkConfigRecord checks a config record from a peer and returns its
// decoded record.
func (n *Node) checkConfigRecord(known origins, cr *gossip.ConfigRecord) (*namespaceRecord, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: config record of namespace %q: %s", ErrInvalidPeerData, cr.NS, fmt.Sprintf(format, args...))
	}
	rec := new(namespaceRecord)
	if err := msgpack.Unmarshal(cr.Payload, rec); err != nil {
		return nil, bad("decode: %v", err)
	}
	if _, err := rec.Config.normalize(); err != nil {
		return nil, bad("%v", err)
	}
	implicit := cr.HLC == 0 && cr.Origin == 0
	if !implicit && !known.has(cr.Origin) {
		return nil, bad("origin %d is neither this node, an origin it holds data of, nor a member", cr.Origin)
	}
	if rec.Bank != 0 && !known.has(crdt.NodeID(rec.Bank)) {
		return nil, bad("bank node %d is neither this node, an origin it holds data of, nor a member", rec.Bank)
	}
	if err := n.clock.Check(cr.HLC, n.cfg.MaxClockOffset); err != nil {
		return nil, bad("%v", err)
	}
	return rec, nil
}

// checkedRights sums rights in int64, refusing rather than wrapping.
type checkedRights struct {
	v  int64
	ok bool
}

func newRights(v int64) checkedRights { return checkedRights{v: v, ok: true} }

func (r *checkedRights) add(x int64) {
	s := r.v + x
	if (x >= 0) != (s >= r.v) {
		r.ok = false
	}
	r.v = s
}

func (r *checkedRights) sub(x int64) {
	if x == math.MinInt64 {
		r.ok = false
		return
	}
	r.add(-x)
}

func (r *checkedRights) addU(x uint64) {
	if x > math.MaxInt64 {
		r.ok = false
		return
	}
	r.add(int64(x))
}

func (r *checkedRights) subU(x uint64) {
	if x > math.MaxInt64 {
		r.ok = false
		return
	}
	r.add(-int64(x))
}
