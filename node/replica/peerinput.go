package replica

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/idem"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"go.uber.org/zap"
)

// Validation of what peers send.
//
// Everything a peer sends reaches the node through Apply (replication
// streams, anti-entropy, and MergeStates of the peer RPC, which goes through
// ApplyDurable) and the rights RPC (exact.Rights: Grant, and the grants
// Acquire merges, checked with CheckState and CheckAgainstLocalLocked). A
// peer is trusted to be a member, never to be well-formed: before anything of
// a request is merged or stored, the node checks it and refuses the whole
// request with ErrInvalidPeerData when any part is wrong. The import of an
// export file applies the same rules (CheckPeerState, MaxEpochAhead).
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
//     held data of it before), a current member (Config.Members), an
//     origin the batch carries a range of (the sending member holds that
//     origin's changes), or an origin the batch vouches for
//     (change.Batch.Vouched: in anti-entropy, every origin the sending
//     member holds data of). The last two are how a node that joins, or
//     comes back empty, learns the origins that left before it came; the
//     vouch covers what a range cannot: a change held past a gap (sent
//     without a range), a range whose changes the sender no longer holds,
//     a slot named before its origin's chunk. Vouched origins a batch
//     names are known from then on. A made-up node would add a slot nobody
//     can ever take back; a member could name one either way (a change and
//     a range of it), so the vouch trusts a member no further. The node
//     that did a reset is not checked: it adds no count. A node that is
//     not ready refuses a node it does not know as unavailable, not as
//     invalid input: catching up, it may not have learned it yet
//     (notYetKnown).
//   - Once the node is ready, a state may not set this node's own slot above
//     what this node holds: only durable data leaves a node, so no peer can
//     legitimately hold more of it. (Before MarkReady the node is catching up
//     after a restart and takes max(own disk, peers' copies).) The exception
//     is a counter of a sharded namespace whose slot this node released to
//     the counter's owners (release.go): they hold it at totals this node
//     dropped, and hand them back.
//   - A reset may move the counter's epoch at most MaxEpochAhead past the
//     epoch this node holds: epochs grow by one per reset, so a peer ahead by
//     more has made it up; a forged state cannot carry the epoch to
//     crdt.MaxEpoch in fewer than 2^30 requests.
//   - Id records (package node/idem): every slot is either empty or holds a body
//     zigzag(by)+1 with |by| <= MaxBy and an apply time no later than now
//     plus Config.MaxClockOffset; no reset (id records are never reset).
//   - Rights records (package node/exact): totals fit in int64 (rights are int64), the
//     receiver id is 8 bytes followed by a key.
//
// Config records (checked by Config.Namespaces): the namespace name is
// checked as before (a bad one is dropped); the payload must decode and normalize, the origin and the bank
// must be known origins (or zero, as in an implicit namespace's record), and
// the HLC's wall time may be at most Config.MaxClockOffset ahead of this
// node's clock.

// peerLimits bound every counter state a peer sends.
var peerLimits = crdt.Limits{}

// rightsLimits bound the states of rights records: rights are int64.
var rightsLimits = crdt.Limits{MaxTotal: math.MaxInt64}

// MaxEpochAhead bounds how far past this node's epoch of a counter one
// received reset may be.
const MaxEpochAhead = 1 << 32

// Origins is a set of node ids a peer may name.
type Origins map[crdt.NodeID]struct{}

// Has reports whether id is in the set.
func (o Origins) Has(id crdt.NodeID) bool {
	_, ok := o[id]
	return ok
}

// knownOrigins returns this node, the origins of its version vector and the
// current members.
func (r *Replica) knownOrigins() Origins {
	set := Origins{r.cfg.ID: {}}
	r.vv.Lock()
	for o := range r.vv.m {
		set[o] = struct{}{}
	}
	r.vv.Unlock()
	if r.cfg.Members != nil {
		for _, id := range r.cfg.Members() {
			set[id] = struct{}{}
		}
	}
	return set
}

// Known reports whether a peer may name id: this node, an origin of its
// version vector or a current member.
func (r *Replica) Known(id crdt.NodeID) bool { return r.knownOrigins().Has(id) }

// coveredByFloor reports whether slot s is exactly its reset floor entry:
// it then adds nothing to the value (a delta carries such slots to keep
// every floor entry dominated, for nodes that may have left long ago).
func coveredByFloor(rs *crdt.Reset, s crdt.Slot) bool {
	if rs == nil {
		return false
	}
	for _, f := range rs.Floor {
		if f.Node == s.Node {
			return f.P == s.P && f.N == s.N
		}
	}
	return false
}

// unknownNodeError is a refusal of peer input that names a node this node
// does not know. Before the node is ready it may simply not have learned
// that node yet (it came back empty and its catch-up has not named it):
// applyBatch then answers unavailable, not invalid (notYetKnown).
type unknownNodeError struct{ error }

func (e unknownNodeError) Unwrap() error { return e.error }

// notYetKnown returns the error applyBatch answers for a batch checkBatch
// refused with err when the refusal is not invalid peer input (nil when it
// is): a node that is not ready refuses what names a node it has not
// learned yet as unavailable. After every restart on an empty disk, quorum
// writes push full states naming incarnations that left before, and the
// chaos campaigns saw each such push counted as malformed input (the
// metric, and the alert on it), as if from a faulty or hostile peer.
func (r *Replica) notYetKnown(err error) error {
	var unknown unknownNodeError
	if r.cfg.Ready() || !errors.As(err, &unknown) {
		return nil
	}
	detail := strings.TrimPrefix(unknown.Error(), nodeerr.ErrInvalidPeerData.Error()+": ")
	return kinderr.New(nodeerr.ErrUnavailable, nil, "this node is catching up after a restart and does not know yet every node the peer names (%s); retry", detail)
}

// invalidPeerData builds the error of a refused peer input.
func invalidPeerData(ns, key, format string, args ...any) error {
	return fmt.Errorf("%w: %s/%q: %s", nodeerr.ErrInvalidPeerData, ns, key, fmt.Sprintf(format, args...))
}

// CheckState applies the stateless rules to a state of ns/key that a peer
// sent for this node to merge (a quorum read's answer, a rights grant).
func (r *Replica) CheckState(ns, key string, c *crdt.Counter) error {
	return r.CheckPeerState(r.knownOrigins(), ns, key, r.cfg.ID, c)
}

// CheckFetchedState applies the stateless rules to a state of ns/key that
// an owner of a sharded namespace's counter sent for a read, merged for the
// answer and not stored: its slots may be of nodes this node never heard
// of (writers that left, whose changes this node, owning nothing of them,
// never held), so only the shape and the limits are checked.
func (r *Replica) CheckFetchedState(ns, key string, c *crdt.Counter) error {
	if err := c.Validate(peerLimits); err != nil {
		return invalidPeerData(ns, key, "%v", err)
	}
	return nil
}

// CheckPeerState applies the stateless rules to the state of ns/key that a
// peer sent with the given origin; known are the nodes the sender may name.
func (r *Replica) CheckPeerState(known Origins, ns, key string, origin crdt.NodeID, c *crdt.Counter) error {
	lim := peerLimits
	if key[0] == keyspace.KindRights {
		lim = rightsLimits
	}
	if err := c.Validate(lim); err != nil {
		return invalidPeerData(ns, key, "%v", err)
	}
	if err := r.checkRetired(ns, key, c); err != nil {
		return err
	}
	if !known.Has(origin) && !known.Has(r.writerOf(ns, key, origin, c)) {
		return unknownNodeError{invalidPeerData(ns, key, "origin %d is neither this node, an origin it holds data of, a member, an origin the batch carries a range of or vouches for, nor the sequence space of one", origin)}
	}
	for _, s := range c.Slots {
		if crdt.IsRetiredID(s.Node) {
			continue // checkRetired: a generation this node's list holds
		}
		if !known.Has(s.Node) && !coveredByFloor(c.Reset, s) {
			return unknownNodeError{invalidPeerData(ns, key, "slot of node %d, which is neither this node, an origin it holds data of, a member, nor an origin the batch vouches for", s.Node)}
		}
	}
	switch key[0] {
	case keyspace.KindID:
		return r.checkIDRecord(ns, key, c)
	case keyspace.KindRights:
		if len(key) < 10 {
			return invalidPeerData(ns, key, "a rights record's key is its receiver (8 bytes) and a key")
		}
	}
	return nil
}

// retiredBehindError refuses a state folded at a retired generation beyond
// the retired list this node holds: the list has not reached it yet.
// applyBatch answers it unavailable and asks for the list
// (Config.RetiredBehind).
type retiredBehindError struct{ error }

func (e retiredBehindError) Unwrap() error { return e.error }

// checkRetired applies the rules of retired slots (package node/retire): a
// state folded at generation g holds the retired slot of g and no slot or
// floor entry of an id folded by g, g is within this node's retired list
// (else retiredBehindError), and id and rights records are never folded.
func (r *Replica) checkRetired(ns, key string, c *crdt.Counter) error {
	gen := c.Gen()
	if gen == 0 {
		return nil
	}
	if key[0] == keyspace.KindID || key[0] == keyspace.KindRights {
		return invalidPeerData(ns, key, "an id or rights record holds the retired slot of generation %d; those records are never folded", gen)
	}
	ids := r.retiredIDs()
	if gen > uint64(len(ids)) {
		return retiredBehindError{kinderr.New(nodeerr.ErrUnavailable, nil, "%s/%q: folded at retired generation %d, beyond the %d retired ids this node holds; retry once the retired list has reached it", ns, key, gen, len(ids))}
	}
	if err := c.ValidateRetired(peerLimits, ids); err != nil {
		return invalidPeerData(ns, key, "%v", err)
	}
	return nil
}

// checkForgotten refuses a change that a forgotten node made after its
// entry's cut: the forget was a mistake (the node was not gone), and
// counting what it writes now would count its folded total twice.
func (r *Replica) checkForgotten(d *change.Delta) error {
	if r.cfg.Retired == nil {
		return nil
	}
	f, ok := r.cfg.Retired.ForgottenID(d.Origin)
	if !ok || d.Seq <= f.Cut {
		return nil
	}
	r.cfg.Log.Error("forgotten node is writing: refusing its change made after it was forgotten; the forget was a mistake",
		zap.String("node", f.Name), zap.Uint64("seq", d.Seq), zap.Uint64("cut", f.Cut))
	return invalidPeerData(d.NS, d.Key, "change %d of node %q (id %d), forgotten with its changes up to %d", d.Seq, f.Name, d.Origin, f.Cut)
}

// checkIDRecord applies the rules of id records.
func (r *Replica) checkIDRecord(ns, key string, c *crdt.Counter) error {
	if _, _, ok := idem.ParseKey(key); !ok {
		return invalidPeerData(ns, key, "not an id record key")
	}
	if c.Reset != nil {
		return invalidPeerData(ns, key, "an id record is never reset")
	}
	// The largest P of an id record's slot: zigzag(by)+1 for |by| <= MaxBy.
	maxIDBody := uint64(2*r.cfg.MaxBy + 1)
	latest := uint64(max(r.cfg.Now().Add(r.cfg.MaxClockOffset+time.Second).Unix(), 0))
	for _, s := range c.Slots {
		switch {
		case s.P == 0 && s.N <= 1: // empty, or an incarnation's take-back mark
		case s.P == 0:
			return invalidPeerData(ns, key, "id record slot of node %d has an apply time but no body", s.Node)
		case s.P > maxIDBody:
			return invalidPeerData(ns, key, "id record slot of node %d has body %d, beyond |by| <= %d", s.Node, s.P, r.cfg.MaxBy)
		case s.N>>1 > latest:
			return invalidPeerData(ns, key, "id record slot of node %d was applied at %d, in the future", s.Node, s.N>>1)
		}
	}
	return nil
}

// CheckAgainstLocalLocked applies the rules that need this node's state of
// the counter (nil: none). The caller holds the counter's stripe.
func (r *Replica) CheckAgainstLocalLocked(ns, key string, local *crdt.Counter, c *crdt.Counter) error {
	var mine crdt.Slot
	var epoch uint64
	if local != nil {
		mine = local.Slot(r.cfg.ID)
		if local.Reset != nil {
			epoch = local.Reset.Epoch
		}
	}
	if r.cfg.Ready() {
		if theirs := c.Slot(r.cfg.ID); (theirs.P > mine.P || theirs.N > mine.N) && !r.releasedOwnSlot(ns, key) {
			return invalidPeerData(ns, key, "it sets this node's own slot to P %d, N %d, above the P %d, N %d it holds; only this node writes its slot",
				theirs.P, theirs.N, mine.P, mine.N)
		}
	}
	if c.Reset != nil && c.Reset.Epoch > epoch+MaxEpochAhead {
		return invalidPeerData(ns, key, "reset epoch %d is more than %d past this node's %d", c.Reset.Epoch, uint64(MaxEpochAhead), epoch)
	}
	return nil
}

// releasedOwnSlot reports whether this node may have dropped its own slot
// of ns/key, a counter of a sharded namespace, in a release (release.go):
// its sequence space of the counter's shard has a release mark, so the
// owners hold its slot at totals it no longer has, and hand them back in
// anti-entropy (a refill, a co-owner's chunk) and in reads.
func (r *Replica) releasedOwnSlot(ns, key string) bool {
	if r.cfg.Replicas == nil {
		return false
	}
	n := r.cfg.Replicas(ns)
	return n > 0 && r.ReleasedThrough(r.OwnSpace(ns, key, n)) != 0
}

// needsLocalCheck reports whether CheckAgainstLocalLocked could refuse c,
// so that the pre-check reads only those counters.
func (r *Replica) needsLocalCheck(c *crdt.Counter) bool {
	if c.Reset != nil {
		return true
	}
	own := c.Slot(r.cfg.ID)
	return r.cfg.Ready() && (own.P != 0 || own.N != 0)
}

// checkBatch checks a batch from a peer before anything of it is applied:
// every rule above, for every delta and config record. Deltas with a bad
// name are skipped here as in Apply (which drops them). It returns the
// origins the batch may name (nil for an empty batch), for the config
// records' install.
func (r *Replica) checkBatch(b *change.Batch) (Origins, error) {
	if len(b.Deltas) == 0 && len(b.Configs) == 0 && len(b.Ranges) == 0 {
		return nil, nil
	}
	if len(b.Vouched) > MaxVouched {
		return nil, fmt.Errorf("%w: %d origins vouched for, more than %d", nodeerr.ErrInvalidPeerData, len(b.Vouched), MaxVouched)
	}
	known := r.knownOrigins()
	// The origins the sending member vouches for (anti-entropy: every
	// origin it holds data of) are known for this batch, and those it
	// names are learned once it is applied (learnVouched).
	for _, id := range b.Vouched {
		if id != 0 {
			known[id] = struct{}{}
		}
	}
	// A range of an origin this node does not know, sent with changes of
	// that origin, is the sending member's word that it holds them: that
	// is how a node that joins learns the origins that left before it
	// came (anti-entropy sends each origin's chunks with their ranges). A
	// range alone vouches for nothing; the batch's vouch does.
	carried := make(map[crdt.NodeID]bool)
	for i := range b.Deltas {
		carried[b.Deltas[i].Origin] = true
	}
	for _, rg := range b.Ranges {
		if !known.Has(rg.Origin) && carried[rg.Origin] {
			known[rg.Origin] = struct{}{}
		}
	}
	// A range of a sharded namespace's sequence space, without a change of
	// it (the last chunk of an exchange), is vouched for by the known node
	// whose space it is.
	if r.cfg.Replicas != nil {
		for _, rg := range b.Ranges {
			if !known.Has(rg.Origin) {
				if _, ok := change.SpaceOwner(rg.Origin, known.Has); ok {
					known[rg.Origin] = struct{}{}
				}
			}
		}
		// And a space vouched for (one this node holds, or one the batch
		// carries a range of) vouches for its writer's slot: the writer may
		// have left the mesh before this node learned of it.
		for i := range b.Deltas {
			d := &b.Deltas[i]
			if !known.Has(d.Origin) || !r.validName(d.NS, d.Key) {
				continue
			}
			if w := r.writerOf(d.NS, d.Key, d.Origin, &d.State); w != d.Origin {
				known[w] = struct{}{}
			}
		}
	}
	for _, rg := range b.Ranges {
		if !known.Has(rg.Origin) {
			return nil, unknownNodeError{fmt.Errorf("%w: range of origin %d, which is neither this node, an origin it holds data of, a member, nor an origin whose changes the batch carries or that it vouches for", nodeerr.ErrInvalidPeerData, rg.Origin)}
		}
		if rg.After > rg.Upto {
			return nil, fmt.Errorf("%w: range of origin %d ends (%d) before it starts (%d)", nodeerr.ErrInvalidPeerData, rg.Origin, rg.Upto, rg.After)
		}
	}
	for i := range b.Deltas {
		d := &b.Deltas[i]
		if !r.validName(d.NS, d.Key) {
			continue
		}
		if err := r.CheckPeerState(known, d.NS, d.Key, d.Origin, &d.State); err != nil {
			return nil, err
		}
		if err := r.checkForgotten(d); err != nil {
			return nil, err
		}
	}
	for i := range b.Configs {
		if r.cfg.ValidNamespace(b.Configs[i].NS) != nil {
			continue
		}
		if err := r.cfg.Namespaces.Check(known.Has, &b.Configs[i]); err != nil {
			return nil, err
		}
	}
	// The rules that need the local state, for the deltas they could
	// refuse. They only grow more permissive as the node's state grows, so
	// what passes here still passes when Apply merges it.
	var buf []byte
	for i := range b.Deltas {
		d := &b.Deltas[i]
		if !r.validName(d.NS, d.Key) || !r.needsLocalCheck(&d.State) {
			continue
		}
		buf = keyspace.Composite(buf[:0], d.NS, d.Key)
		if err := r.checkLocal(buf, d.NS, d.Key, &d.State); err != nil {
			return nil, err
		}
	}
	return known, nil
}

// MaxVouched bounds the origins one batch may vouch for: every node and
// sequence space that ever wrote, far above what a mesh holds.
const MaxVouched = 1 << 20

// learnVouched makes known the origins of an applied batch b that only its
// sender vouched for, as the nodes its changes name (origins, ranges,
// slots and reset floors): a change held past a gap moves no vector, yet
// its origin's slot is now held here, and later inputs (a quorum write's
// full state, a peer's stream) may name it without a vouch.
func (r *Replica) learnVouched(b *change.Batch) {
	if len(b.Vouched) == 0 {
		return
	}
	known := r.knownOrigins()
	vouched := make(Origins, len(b.Vouched))
	for _, id := range b.Vouched {
		if !known.Has(id) {
			vouched[id] = struct{}{}
		}
	}
	if len(vouched) == 0 {
		return
	}
	var learn []crdt.NodeID
	note := func(id crdt.NodeID) {
		if vouched.Has(id) {
			learn = append(learn, id)
			delete(vouched, id)
		}
	}
	for _, rg := range b.Ranges {
		note(rg.Origin)
	}
	for i := range b.Configs {
		note(b.Configs[i].Origin)
	}
	for i := range b.Deltas {
		d := &b.Deltas[i]
		note(d.Origin)
		for _, s := range d.State.Slots {
			note(s.Node)
		}
		if rs := d.State.Reset; rs != nil {
			for _, f := range rs.Floor {
				note(f.Node)
			}
		}
	}
	r.VouchFor(learn...)
}

// checkLocal runs CheckAgainstLocalLocked under the counter's stripe.
func (r *Replica) checkLocal(ck []byte, ns, key string, c *crdt.Counter) error {
	s := r.cfg.Keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := r.cfg.Keys.Lookup(s, ck, ns, key, false)
	if err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
	}
	var local *crdt.Counter
	if e != nil {
		local = &e.C
	}
	return r.CheckAgainstLocalLocked(ns, key, local, c)
}

// Checked sums rights in int64, refusing rather than wrapping: the rights
// of records that were out of bounds are an error, never a wrapped number.
type Checked struct {
	V  int64
	OK bool
}

// NewChecked starts a sum at v.
func NewChecked(v int64) Checked { return Checked{V: v, OK: true} }

// Add adds x.
func (c *Checked) Add(x int64) {
	s := c.V + x
	if (x >= 0) != (s >= c.V) {
		c.OK = false
	}
	c.V = s
}

// Sub subtracts x.
func (c *Checked) Sub(x int64) {
	if x == math.MinInt64 {
		c.OK = false
		return
	}
	c.Add(-x)
}

// AddU adds x, which must fit in int64.
func (c *Checked) AddU(x uint64) {
	if x > math.MaxInt64 {
		c.OK = false
		return
	}
	c.Add(int64(x))
}

// SubU subtracts x, which must fit in int64.
func (c *Checked) SubU(x uint64) {
	if x > math.MaxInt64 {
		c.OK = false
		return
	}
	c.Add(-int64(x))
}
