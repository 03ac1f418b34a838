package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/internal/sabotage"
	"github.com/countmesh/countmesh/node/keyspace"
)

// Bounds (min and max) of exact namespaces: a bounded counter with per-node
// rights (escrow, as in AntidoteDB's bounded counter), chosen over routing
// each counter's writes to one owner because it needs no round trip while a
// node holds rights, and keeps serving on both sides of a partition as far
// as the rights each side holds allow.
//
// For a lower bound min, node i may decrement only within its rights
//
//	r_i = P_i − N_i + bank_i + received_i − given_i
//
// where P_i and N_i are i's own slot of the counter, bank_i is −min for the
// namespace's bank node (the node that set the config) and 0 for the others,
// and received_i/given_i are the rights transferred to and from i. Summed
// over the nodes, transfers cancel and Σ r_i = value − min, and every r_i
// stays >= 0, so the value never goes below min. Node i knows its own terms
// exactly (it writes its slot and its gifts) and its received rights at
// least partly, so the rights it sees are never more than it has. Upper
// bounds are the mirror image (u_i = N_i − P_i + max for the bank ...).
//
// Transfers are internal counters too: keyspace.KindRights, the receiver's node id
// (8 bytes), the key; the giver's slot holds P = down-rights and N =
// up-rights given to that receiver. Only the giver writes its slot, so the
// usual merge (max per slot) is right, and they replicate like any change.
// A node short of rights asks its peers (its region first) over the peer
// RPC; a peer gives half of what it holds (at least what was asked, if it
// can), durably, and answers with the record, which the asker merges before
// it retries. When no peer can give, the write is 409; when a peer that
// might could not be reached, 503.
//
// Bounds need 0 within [min, max] (the counter starts at 0), and an exact
// namespace with bounds refuses resets and deletes (they would move the
// value outside the rights' accounting).

// keyspace.KindRights is declared with the other internal kinds (internal.go).

// RightsRequest asks a peer for rights on a counter.
type RightsRequest struct {
	NS, Key string
	Down    bool  // rights to decrement (min); else to increment (max)
	Want    int64 // at least this many, if the peer can
	To      crdt.NodeID
}

// RightsGrant is a peer's answer: how many rights it gave, and its record of
// gifts to the asker, to merge.
type RightsGrant struct {
	Amount int64
	Record crdt.Counter
}

// RightsTransport asks peers for rights (package httpapi implements it).
type RightsTransport interface {
	TransferRights(ctx context.Context, p Peer, req RightsRequest) (RightsGrant, error)
}

// bounds of a namespace.
type bounds struct {
	min, max *int64
	bank     crdt.NodeID
	exact    bool
}

func (b bounds) any() bool { return b.min != nil || b.max != nil }

func (r *namespaceRecord) bounds() bounds {
	return bounds{min: r.Config.Min, max: r.Config.Max, bank: crdt.NodeID(r.Bank), exact: r.counterType().escrow()}
}

// rightsKey is the internal key of the rights given to node to on key.
func rightsKey(to crdt.NodeID, key string) string {
	b := make([]byte, 0, 9+len(key))
	b = append(b, keyspace.KindRights)
	b = binary.BigEndian.AppendUint64(b, uint64(to))
	return string(append(b, key...))
}

// rightsLocked returns this node's rights on ns/key: down (to decrement)
// and up (to increment). The caller holds the counter's stripe. The sums
// are checked: rights out of the int64 range (only reachable by records
// that were out of bounds) are an error, never a wrapped number.
func (n *Node) rightsLocked(s *keyspace.Stripe, b bounds, ns, key string, c *crdt.Counter) (down, up int64, err error) {
	own := c.Slot(n.id)
	d, u := newRights(0), newRights(0)
	d.addU(own.P)
	d.subU(own.N)
	u.addU(own.N)
	u.subU(own.P)
	if n.id == b.bank {
		if b.min != nil {
			d.sub(*b.min)
		}
		if b.max != nil {
			u.add(*b.max)
		}
	}
	// Received: the slots of the record addressed to this node.
	if rec, err := n.peekLocked(s, ns, rightsKey(n.id, key)); err != nil {
		return 0, 0, err
	} else if rec != nil {
		for _, sl := range rec.C.Slots {
			d.addU(sl.P)
			u.addU(sl.N)
		}
	}
	// Given: this node's slot of the record of its gifts to anyone, kept
	// beside the per-receiver records (a receiver this node has never
	// heard from otherwise is still counted).
	if rec, err := n.peekLocked(s, ns, rightsKey(givenToAll, key)); err != nil {
		return 0, 0, err
	} else if rec != nil {
		g := rec.C.Slot(n.id)
		d.subU(g.P)
		u.subU(g.N)
	}
	if !d.ok || !u.ok {
		return 0, 0, fmt.Errorf("%w: %s/%s: the rights records of this counter sum beyond int64", ErrOverflow, ns, key)
	}
	return d.v, u.v, nil
}

// givenToAll is the receiver id of the record of every node's total gifts.
const givenToAll = crdt.NodeID(^uint64(0))

// peekLocked returns the entry of an internal counter in the stripe the
// caller holds, reading it through without creating or evicting.
func (n *Node) peekLocked(s *keyspace.Stripe, ns, key string) (*keyspace.Entry, error) {
	e, err := n.keys.LookupEvict(s, keyspace.Composite(nil, ns, key), ns, key, false, false)
	if err != nil {
		return nil, kinderr.New(ErrUnavailable, err, "read rights: %v", err)
	}
	return e, nil
}

// errNeedRights is returned under the lock when this node lacks rights.
type errNeedRights struct {
	down    bool
	need    int64
	ns, key string // set by batches, which may lack rights on any op's counter
}

func (e *errNeedRights) Error() string { return fmt.Sprintf("needs %d more rights", e.need) }

// checkBoundsLocked refuses an increment by of e that the bounds forbid:
// in an exact namespace by the node's rights (errNeedRights when it may get
// more), elsewhere by the value this node sees.
func (n *Node) checkBoundsLocked(s *keyspace.Stripe, rec *namespaceRecord, ns, key string, e *keyspace.Entry, by int64) error {
	b := rec.bounds()
	if !b.any() || by == 0 {
		return nil
	}
	if !b.exact {
		v := e.C.Value()
		if b.min != nil && by < 0 && v+by < *b.min {
			return fmt.Errorf("%w: %s/%s is %d; decrementing by %d would cross its minimum %d", ErrConflict, ns, key, v, -by, *b.min)
		}
		if b.max != nil && by > 0 && v+by > *b.max {
			return fmt.Errorf("%w: %s/%s is %d; incrementing by %d would cross its maximum %d", ErrConflict, ns, key, v, by, *b.max)
		}
		return nil
	}
	down, up, err := n.rightsLocked(s, b, ns, key, &e.C)
	if err != nil {
		return err
	}
	if sabotage.BoundsNoRights {
		return nil // sabotage (test builds only): spend rights this node may not hold
	}
	switch {
	case by < 0 && b.min != nil && -by > down:
		return &errNeedRights{down: true, need: -by - max(down, 0)}
	case by > 0 && b.max != nil && by > up:
		return &errNeedRights{down: false, need: by - max(up, 0)}
	}
	return nil
}

// rightsTimeout bounds one rights request to a peer.
const rightsTimeout = 750 * time.Millisecond

// acquireRights asks the peers for need rights: the live peers of this
// node's region one by one, then the live peers elsewhere all at once (one
// round trip, however many regions). Peers the failure detector does not
// see alive are not asked; they count as unreachable.
func (n *Node) acquireRights(ctx context.Context, ns, key string, r *errNeedRights) error {
	dir, bound := "increment", "maximum"
	if r.down {
		dir, bound = "decrement", "minimum"
	}
	if n.cfg.Peers == nil || n.cfg.Rights == nil {
		return fmt.Errorf("%w: %s/%s cannot %s by that much without crossing its %s", ErrConflict, ns, key, dir, bound)
	}
	var local, remote []Peer
	unreachable := 0
	for _, p := range n.cfg.Peers.Peers() {
		switch {
		case p.Name == n.cfg.Name:
		case !p.Alive:
			unreachable++
		case p.Region == n.cfg.Region:
			local = append(local, p)
		default:
			remote = append(remote, p)
		}
	}
	need := r.need
	ask := func(p Peer, want int64) (int64, error) {
		cctx, cancel := context.WithTimeout(ctx, min(rightsTimeout, n.quorum.Timeout()))
		defer cancel()
		g, err := n.cfg.Rights.TransferRights(cctx, p, RightsRequest{NS: ns, Key: key, Down: r.down, Want: want, To: n.id})
		if err != nil {
			n.log.Debug("rights transfer failed", zap.String("peer", p.Name), zap.Error(err))
			return 0, err
		}
		if g.Amount <= 0 {
			return 0, nil
		}
		if err := n.mergeRights(ns, key, g.Record); err != nil {
			return 0, err
		}
		// The amount only counts down what is still needed (the rights
		// themselves are in the record): bounded, so that no sum wraps.
		got := min(g.Amount, MaxBy)
		n.metrics.rightsReceived.Add(float64(got))
		return got, nil
	}
	for _, p := range local {
		if need <= 0 {
			break
		}
		got, err := ask(p, need)
		if err != nil {
			unreachable++
		}
		need -= got
	}
	if need > 0 && len(remote) > 0 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		want := need
		for _, p := range remote {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := ask(p, want)
				mu.Lock()
				need -= got
				if err != nil {
					unreachable++
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	if need <= 0 {
		return nil
	}
	if unreachable > 0 {
		return fmt.Errorf("%w: %s/%s: this node holds too few rights to %s without crossing its %s, and %d peer(s) that may hold some could not be reached; retry", ErrUnavailable, ns, key, dir, bound, unreachable)
	}
	return fmt.Errorf("%w: %s/%s cannot %s by that much without crossing its %s", ErrConflict, ns, key, dir, bound)
}

// mergeRights merges a giver's record of gifts to this node, after the
// checks of every peer state (peerinput.go): the record comes from a peer.
func (n *Node) mergeRights(ns, key string, rec crdt.Counter) error {
	rk := rightsKey(n.id, key)
	if err := n.checkPeerState(n.knownOrigins(), ns, rk, n.id, &rec); err != nil {
		n.metrics.peerRefused.Inc()
		return err
	}
	ck := keyspace.Composite(nil, ns, rk)
	s := n.keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := n.keys.Lookup(s, ck, ns, rk, true)
	if err != nil {
		return kinderr.New(ErrUnavailable, err, "read rights: %v", err)
	}
	if err := n.checkAgainstLocalLocked(ns, rk, &e.C, &rec); err != nil {
		n.metrics.peerRefused.Inc()
		return err
	}
	e.C.Merge(rec)
	e.Updated = n.cfg.Now().UnixMilli()
	n.keys.MarkDirty(s, e)
	return nil
}

// checkRightsRequest refuses a rights request that is malformed: a bad
// name, an amount that is not positive or beyond what one write can need
// (MaxBy), or a receiver that is this node, the gifts total, or not a known
// node.
func (n *Node) checkRightsRequest(req RightsRequest) error {
	if err := validateName(req.NS, req.Key); err != nil {
		return err
	}
	if req.Want <= 0 || req.Want > MaxBy {
		return fmt.Errorf("%w: a rights request wants between 1 and %d rights, got %d", ErrInvalidPeerData, MaxBy, req.Want)
	}
	if req.To == n.id || req.To == givenToAll {
		return fmt.Errorf("%w: a rights request is for another node, not %d", ErrInvalidPeerData, req.To)
	}
	if !n.knownOrigins().has(req.To) {
		return fmt.Errorf("%w: a rights request for node %d, which is neither an origin this node holds data of nor a member", ErrInvalidPeerData, req.To)
	}
	return nil
}

// GrantRights answers a peer's RightsRequest: this node gives half of the
// rights it holds on the counter (at least what was asked, if it holds that
// many), durably, and returns its record of gifts to the asker.
func (n *Node) GrantRights(ctx context.Context, req RightsRequest) (RightsGrant, error) {
	if err := n.checkRightsRequest(req); err != nil {
		if errors.Is(err, ErrInvalidPeerData) {
			n.metrics.peerRefused.Inc()
		}
		return RightsGrant{}, err
	}
	if err := n.checkWritable(1); err != nil {
		return RightsGrant{}, err
	}
	n.ns.RLock()
	rec := n.ns.m[req.NS]
	n.ns.RUnlock()
	if rec == nil || !rec.bounds().any() || !rec.bounds().exact {
		return RightsGrant{}, nil // nothing to give (yet)
	}
	out, err := n.grantLocked(rec, req)
	if err != nil || out.Amount == 0 {
		return RightsGrant{}, err
	}
	// Durable before the asker may spend it: a crash must not let this
	// node give the same rights twice.
	if err := n.durable(ctx, true); err != nil {
		return RightsGrant{}, err
	}
	n.metrics.rightsGiven.Add(float64(out.Amount))
	return out, nil
}

// grantLocked is GrantRights under the counter's stripe, which it takes and
// releases on every path. It changes nothing unless it gives.
func (n *Node) grantLocked(rec *namespaceRecord, req RightsRequest) (RightsGrant, error) {
	ck := keyspace.Composite(nil, req.NS, req.Key)
	s := n.keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	// A node may hold rights on a counter it does not hold (the bank's
	// initial rights, rights received): its rights then come from an empty
	// counter.
	e, err := n.keys.Lookup(s, ck, req.NS, req.Key, false)
	if err != nil {
		return RightsGrant{}, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
	}
	var c crdt.Counter
	if e != nil {
		c = e.C
	}
	down, up, err := n.rightsLocked(s, rec.bounds(), req.NS, req.Key, &c)
	if err != nil {
		return RightsGrant{}, err
	}
	have := up
	if req.Down {
		have = down
	}
	if have <= 0 {
		return RightsGrant{}, nil
	}
	give := min(have, max(req.Want, have/2+have%2))
	rk := rightsKey(req.To, req.Key)
	re, err := n.keys.LookupEvict(s, keyspace.Composite(nil, req.NS, rk), req.NS, rk, true, false)
	if err != nil {
		return RightsGrant{}, kinderr.New(ErrUnavailable, err, "read rights: %v", err)
	}
	tk := rightsKey(givenToAll, req.Key)
	te, err := n.keys.LookupEvict(s, keyspace.Composite(nil, req.NS, tk), req.NS, tk, true, false)
	if err != nil {
		return RightsGrant{}, kinderr.New(ErrUnavailable, err, "read rights: %v", err)
	}
	// This node's slots of both records grow by give: down-rights are the
	// P of the giver's slot, up-rights its N. Both new totals are checked
	// before either changes, and set by merging this node's own slot,
	// which cannot fail whatever the other slots hold.
	gift, total := re.C.Slot(n.id), te.C.Slot(n.id)
	for _, sl := range []*crdt.Slot{&gift, &total} {
		t := &sl.N
		if req.Down {
			t = &sl.P
		}
		if *t > math.MaxInt64-uint64(give) {
			return RightsGrant{}, fmt.Errorf("%w: %s/%s: this node's record of rights given would leave int64", ErrOverflow, req.NS, req.Key)
		}
		*t += uint64(give)
	}
	re.C.Merge(crdt.Counter{Slots: []crdt.Slot{gift}})
	te.C.Merge(crdt.Counter{Slots: []crdt.Slot{total}})
	now := n.cfg.Now().UnixMilli()
	for _, x := range []*keyspace.Entry{re, te} {
		x.Updated, x.Own = now, true
		n.keys.MarkDirty(s, x)
	}
	return RightsGrant{Amount: give, Record: re.C.Clone()}, nil
}

// clampToBounds keeps a read of a bounded exact counter within its bounds.
// The merged state never crosses them; a node that has seen a decrement
// before the increment or transfer that allowed it could, until that
// arrives.
func (n *Node) clampToBounds(ns string, v int64) int64 {
	n.ns.RLock()
	rec := n.ns.m[ns]
	n.ns.RUnlock()
	return clampRec(rec, v)
}

// clampRec is clampToBounds with the namespace's record (callers under a
// stripe lock must not take n.ns).
func clampRec(rec *namespaceRecord, v int64) int64 {
	if rec == nil {
		return v
	}
	return rec.counterType().clamp(&rec.Config, v)
}

// refuseBoundedReset refuses resets and deletes in an exact namespace with
// bounds.
func (n *Node) refuseBoundedReset(ns, what string) error {
	n.ns.RLock()
	rec := n.ns.m[ns]
	n.ns.RUnlock()
	if rec != nil && rec.counterType().escrow() && rec.bounds().any() {
		return fmt.Errorf("%w: %s in exact namespace %q with bounds is not supported (it would move the value outside the accounting that keeps the bounds); decrement or increment instead", ErrConflict, what, ns)
	}
	return nil
}
