package exact

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/internal/sabotage"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/replica"
)

// Rights. Bounds (min and max) of exact namespaces: a bounded counter with per-node
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

// Bounds are the min and max of a namespace, with its bank (the node that
// holds the initial rights) and whether they are kept by rights (an exact
// namespace) or by the value this node sees.
type Bounds struct {
	Min, Max *int64
	Bank     crdt.NodeID
	Exact    bool
}

// Any reports whether there is a bound.
func (b Bounds) Any() bool { return b.Min != nil || b.Max != nil }

// RightsConfig holds what the rights need from the node.
type RightsConfig struct {
	Name, Region string      // this node's
	ID           crdt.NodeID // this node's slot
	Keys         *keyspace.Set
	Now          func() time.Time
	Log          *zap.Logger
	// Peers and Transport reach the other nodes; with either nil a node
	// short of rights refuses.
	Peers     Peers
	Transport RightsTransport
	// Timeout is the bound of one quorum operation; a rights request is
	// bounded by the smaller of it and rightsTimeout.
	Timeout func() time.Duration
	// MaxBy bounds what one write can need.
	MaxBy int64
	// Known reports whether id is a node this node knows (an origin it
	// holds data of, or a member).
	Known func(id crdt.NodeID) bool
	// Check refuses a peer's state of ns/key that is malformed or out of
	// bounds; CheckLocal refuses one that contradicts this node's copy
	// (the caller holds its stripe). OnRefused counts a refusal.
	Check      func(ns, key string, c *crdt.Counter) error
	CheckLocal func(ns, key string, local, peer *crdt.Counter) error
	OnRefused  func()
	// OnReceived counts rights received from peers.
	OnReceived func(n int64)
}

// Rights keeps the bounds of exact namespaces by per-node rights. It is
// safe for concurrent use.
type Rights struct{ cfg RightsConfig }

// NewRights returns the rights of a node.
func NewRights(cfg RightsConfig) *Rights { return &Rights{cfg: cfg} }

// RightsKey is the internal key of the rights given to node to on key.
func RightsKey(to crdt.NodeID, key string) string {
	b := make([]byte, 0, 9+len(key))
	b = append(b, keyspace.KindRights)
	b = binary.BigEndian.AppendUint64(b, uint64(to))
	return string(append(b, key...))
}

// HeldLocked returns this node's rights on ns/key: down (to decrement)
// and up (to increment). The caller holds the counter's stripe. The sums
// are checked: rights out of the int64 range (only reachable by records
// that were out of bounds) are an error, never a wrapped number.
func (r *Rights) HeldLocked(s *keyspace.Stripe, b Bounds, ns, key string, c *crdt.Counter) (down, up int64, err error) {
	own := c.Slot(r.cfg.ID)
	d, u := replica.NewChecked(0), replica.NewChecked(0)
	d.AddU(own.P)
	d.SubU(own.N)
	u.AddU(own.N)
	u.SubU(own.P)
	if r.cfg.ID == b.Bank {
		if b.Min != nil {
			d.Sub(*b.Min)
		}
		if b.Max != nil {
			u.Add(*b.Max)
		}
	}
	// Received: the slots of the record addressed to this node.
	if rec, err := r.peekLocked(s, ns, RightsKey(r.cfg.ID, key)); err != nil {
		return 0, 0, err
	} else if rec != nil {
		for _, sl := range rec.C.Slots {
			d.AddU(sl.P)
			u.AddU(sl.N)
		}
	}
	// Given: this node's slot of the record of its gifts to anyone, kept
	// beside the per-receiver records (a receiver this node has never
	// heard from otherwise is still counted).
	if rec, err := r.peekLocked(s, ns, RightsKey(GivenToAll, key)); err != nil {
		return 0, 0, err
	} else if rec != nil {
		g := rec.C.Slot(r.cfg.ID)
		d.SubU(g.P)
		u.SubU(g.N)
	}
	if !d.OK || !u.OK {
		return 0, 0, fmt.Errorf("%w: %s/%s: the rights records of this counter sum beyond int64", nodeerr.ErrOverflow, ns, key)
	}
	return d.V, u.V, nil
}

// GivenToAll is the receiver id of the record of every node's total gifts.
const GivenToAll = crdt.NodeID(^uint64(0))

// peekLocked returns the entry of an internal counter in the stripe the
// caller holds, reading it through without creating or evicting.
func (r *Rights) peekLocked(s *keyspace.Stripe, ns, key string) (*keyspace.Entry, error) {
	e, err := r.cfg.Keys.LookupEvict(s, keyspace.Composite(nil, ns, key), ns, key, false, false)
	if err != nil {
		return nil, kinderr.New(nodeerr.ErrUnavailable, err, "read rights: %v", err)
	}
	return e, nil
}

// NeedRights is returned under the lock when this node lacks rights; the
// caller releases its locks and calls Acquire.
type NeedRights struct {
	Down    bool
	Need    int64
	NS, Key string // set by batches, which may lack rights on any op's counter
}

func (e *NeedRights) Error() string { return fmt.Sprintf("needs %d more rights", e.Need) }

// CheckLocked refuses an increment by of e that the bounds b forbid: in an
// exact namespace by the node's rights (*NeedRights when it may get more),
// elsewhere by the value this node sees. The caller holds e's stripe s.
func (r *Rights) CheckLocked(s *keyspace.Stripe, b Bounds, ns, key string, e *keyspace.Entry, by int64) error {
	if !b.Any() || by == 0 {
		return nil
	}
	if !b.Exact {
		v := e.C.Value()
		if b.Min != nil && by < 0 && v+by < *b.Min {
			return fmt.Errorf("%w: %s/%s is %d; decrementing by %d would cross its minimum %d", nodeerr.ErrConflict, ns, key, v, -by, *b.Min)
		}
		if b.Max != nil && by > 0 && v+by > *b.Max {
			return fmt.Errorf("%w: %s/%s is %d; incrementing by %d would cross its maximum %d", nodeerr.ErrConflict, ns, key, v, by, *b.Max)
		}
		return nil
	}
	down, up, err := r.HeldLocked(s, b, ns, key, &e.C)
	if err != nil {
		return err
	}
	if sabotage.BoundsNoRights {
		return nil // sabotage (test builds only): spend rights this node may not hold
	}
	switch {
	case by < 0 && b.Min != nil && -by > down:
		return &NeedRights{Down: true, Need: -by - max(down, 0)}
	case by > 0 && b.Max != nil && by > up:
		return &NeedRights{Down: false, Need: by - max(up, 0)}
	}
	return nil
}

// rightsTimeout bounds one rights request to a peer.
const rightsTimeout = 750 * time.Millisecond

// Acquire asks the peers for need.Need rights: the live peers of this
// node's region one by one, then the live peers elsewhere all at once (one
// round trip, however many regions). Peers the failure detector does not
// see alive are not asked; they count as unreachable.
func (r *Rights) Acquire(ctx context.Context, ns, key string, nr *NeedRights) error {
	dir, bound := "increment", "maximum"
	if nr.Down {
		dir, bound = "decrement", "minimum"
	}
	if r.cfg.Peers == nil || r.cfg.Transport == nil {
		return fmt.Errorf("%w: %s/%s cannot %s by that much without crossing its %s", nodeerr.ErrConflict, ns, key, dir, bound)
	}
	var local, remote []Peer
	unreachable := 0
	for _, p := range r.cfg.Peers.Peers() {
		switch {
		case p.Name == r.cfg.Name:
		case !p.Alive:
			unreachable++
		case p.Region == r.cfg.Region:
			local = append(local, p)
		default:
			remote = append(remote, p)
		}
	}
	need := nr.Need
	ask := func(p Peer, want int64) (int64, error) {
		cctx, cancel := context.WithTimeout(ctx, min(rightsTimeout, r.cfg.Timeout()))
		defer cancel()
		g, err := r.cfg.Transport.TransferRights(cctx, p, RightsRequest{NS: ns, Key: key, Down: nr.Down, Want: want, To: r.cfg.ID})
		if err != nil {
			r.cfg.Log.Debug("rights transfer failed", zap.String("peer", p.Name), zap.Error(err))
			return 0, err
		}
		if g.Amount <= 0 {
			return 0, nil
		}
		if err := r.mergeRights(ns, key, g.Record); err != nil {
			return 0, err
		}
		// The amount only counts down what is still needed (the rights
		// themselves are in the record): bounded, so that no sum wraps.
		got := min(g.Amount, r.cfg.MaxBy)
		r.cfg.OnReceived(got)
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
		return fmt.Errorf("%w: %s/%s: this node holds too few rights to %s without crossing its %s, and %d peer(s) that may hold some could not be reached; retry", nodeerr.ErrUnavailable, ns, key, dir, bound, unreachable)
	}
	return fmt.Errorf("%w: %s/%s cannot %s by that much without crossing its %s", nodeerr.ErrConflict, ns, key, dir, bound)
}

// mergeRights merges a giver's record of gifts to this node, after the
// checks of every peer state (Config.Check): the record comes from a peer.
func (r *Rights) mergeRights(ns, key string, rec crdt.Counter) error {
	rk := RightsKey(r.cfg.ID, key)
	if err := r.cfg.Check(ns, rk, &rec); err != nil {
		r.cfg.OnRefused()
		return err
	}
	ck := keyspace.Composite(nil, ns, rk)
	s := r.cfg.Keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := r.cfg.Keys.Lookup(s, ck, ns, rk, true)
	if err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "read rights: %v", err)
	}
	if err := r.cfg.CheckLocal(ns, rk, &e.C, &rec); err != nil {
		r.cfg.OnRefused()
		return err
	}
	e.C.Merge(rec)
	e.Updated = r.cfg.Now().UnixMilli()
	r.cfg.Keys.MarkDirty(s, e)
	return nil
}

// CheckRequest refuses a rights request that is malformed: an amount that
// is not positive or beyond what one write can need (Config.MaxBy), or a
// receiver that is this node, the gifts total, or not a known node. The
// caller has checked the names.
func (r *Rights) CheckRequest(req RightsRequest) error {
	if req.Want <= 0 || req.Want > r.cfg.MaxBy {
		return fmt.Errorf("%w: a rights request wants between 1 and %d rights, got %d", nodeerr.ErrInvalidPeerData, r.cfg.MaxBy, req.Want)
	}
	if req.To == r.cfg.ID || req.To == GivenToAll {
		return fmt.Errorf("%w: a rights request is for another node, not %d", nodeerr.ErrInvalidPeerData, req.To)
	}
	if !r.cfg.Known(req.To) {
		return fmt.Errorf("%w: a rights request for node %d, which is neither an origin this node holds data of nor a member", nodeerr.ErrInvalidPeerData, req.To)
	}
	return nil
}

// Grant gives rights on req's counter of bounds b to the asker: half of the
// rights this node holds (at least what was asked, if it holds that many).
// It takes and releases the counter's stripe on every path, and changes
// nothing unless it gives; the caller makes the gift durable before it
// answers, so that a crash cannot let this node give the same rights twice.
func (r *Rights) Grant(b Bounds, req RightsRequest) (RightsGrant, error) {
	ck := keyspace.Composite(nil, req.NS, req.Key)
	s := r.cfg.Keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	// A node may hold rights on a counter it does not hold (the bank's
	// initial rights, rights received): its rights then come from an empty
	// counter.
	e, err := r.cfg.Keys.Lookup(s, ck, req.NS, req.Key, false)
	if err != nil {
		return RightsGrant{}, kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
	}
	var c crdt.Counter
	if e != nil {
		c = e.C
	}
	down, up, err := r.HeldLocked(s, b, req.NS, req.Key, &c)
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
	rk := RightsKey(req.To, req.Key)
	re, err := r.cfg.Keys.LookupEvict(s, keyspace.Composite(nil, req.NS, rk), req.NS, rk, true, false)
	if err != nil {
		return RightsGrant{}, kinderr.New(nodeerr.ErrUnavailable, err, "read rights: %v", err)
	}
	tk := RightsKey(GivenToAll, req.Key)
	te, err := r.cfg.Keys.LookupEvict(s, keyspace.Composite(nil, req.NS, tk), req.NS, tk, true, false)
	if err != nil {
		return RightsGrant{}, kinderr.New(nodeerr.ErrUnavailable, err, "read rights: %v", err)
	}
	// This node's slots of both records grow by give: down-rights are the
	// P of the giver's slot, up-rights its N. Both new totals are checked
	// before either changes, and set by merging this node's own slot,
	// which cannot fail whatever the other slots hold.
	gift, total := re.C.Slot(r.cfg.ID), te.C.Slot(r.cfg.ID)
	for _, sl := range []*crdt.Slot{&gift, &total} {
		t := &sl.N
		if req.Down {
			t = &sl.P
		}
		if *t > math.MaxInt64-uint64(give) {
			return RightsGrant{}, fmt.Errorf("%w: %s/%s: this node's record of rights given would leave int64", nodeerr.ErrOverflow, req.NS, req.Key)
		}
		*t += uint64(give)
	}
	re.C.Merge(crdt.Counter{Slots: []crdt.Slot{gift}})
	te.C.Merge(crdt.Counter{Slots: []crdt.Slot{total}})
	now := r.cfg.Now().UnixMilli()
	for _, x := range []*keyspace.Entry{re, te} {
		x.Updated, x.Own = now, true
		r.cfg.Keys.MarkDirty(s, x)
	}
	return RightsGrant{Amount: give, Record: re.C.Clone()}, nil
}
