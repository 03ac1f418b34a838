package peerrpc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/node/retire"
)

// The retired list's calls (package node/retire): Forget coordinates one
// entry over every member; SyncRetired keeps the list spread.
type (
	retirePrepareReq struct {
		Index  uint64
		Ballot retire.Ballot
		Stable []retire.Entry
	}
	retirePrepareResp struct {
		Promise retire.Promise
		VV      []retire.OriginSeq
		Self    crdt.NodeID        // the member's slot id: never forgotten
		Held    []retire.OriginSeq // per origin, the highest change held past a gap in VV
	}
	retireAcceptReq struct {
		Index  uint64
		Ballot retire.Ballot
		Entry  retire.Entry
	}
	retireAcceptResp struct {
		OK      bool
		Decided []retire.Entry
	}
	retireSyncReq struct {
		Stable []retire.Entry
	}
	retireSyncResp struct {
		Stable []retire.Entry
	}
)

// serveRetire registers the retired list's handlers.
func serveRetire(m Mesh, n *node.Node) {
	m.Handle(gossip.MethodRetirePrepare, func(ctx context.Context, _ string, decode func(any) error) (any, error) {
		var req retirePrepareReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		p, vv, held, err := n.RetirePrepare(req.Index, req.Ballot, req.Stable)
		if err != nil {
			return nil, err
		}
		return retirePrepareResp{Promise: p, VV: vv, Self: n.ID(), Held: held}, nil
	})
	m.Handle(gossip.MethodRetireAccept, func(ctx context.Context, _ string, decode func(any) error) (any, error) {
		var req retireAcceptReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		ok, decided, err := n.RetireAccept(req.Index, req.Ballot, req.Entry)
		if err != nil {
			return nil, err
		}
		return retireAcceptResp{OK: ok, Decided: decided}, nil
	})
	m.Handle(gossip.MethodRetireSync, func(ctx context.Context, _ string, decode func(any) error) (any, error) {
		var req retireSyncReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		stable, err := n.RetireSync(req.Stable)
		if err != nil {
			return nil, err
		}
		return retireSyncResp{Stable: stable}, nil
	})
}

// ErrForget is the kind of a forget refused for the state of the mesh (the
// node is alive, a member is not, nothing to forget): node.ErrConflict, so
// that the API answers 409. The message says which.
var ErrForget = node.ErrConflict

// forgetAttempts bounds the rounds of one Forget lost to concurrent
// coordinators.
const forgetAttempts = 8

// Forget forgets the node called name for good: it decides the next entry
// of the retired list with every member (package node/retire) and spreads
// it. The entry names every slot of that name (its incarnations) that a
// member holds changes of, but that of a live member: with name alive
// again as a new incarnation (it lost its disk), its earlier ones are
// forgotten. It refuses when another member is suspect or dead (a forget
// needs every member's vector), when the mesh still lists a member called
// name as dead or left (it may come back: a crash, a restart) and gone is
// not set (a node forgotten and back would have what it writes refused by
// every node), or when no member holds data of a slot of that name it may
// forget. It returns the entry and its index; a name whose slots are all
// forgotten already returns its last entry.
func Forget(ctx context.Context, c *Client, n *node.Node, name string, gone bool) (retire.Entry, int, error) {
	if name == "" {
		return retire.Entry{}, 0, fmt.Errorf("%w: a node name is required", node.ErrInvalidArgument)
	}
	for attempt := 0; attempt < forgetAttempts; attempt++ {
		targets, err := forgetTargets(c, n, name, gone)
		if err != nil {
			return retire.Entry{}, 0, err
		}
		e, index, done, err := forgetRound(ctx, c, n, name, targets)
		if err != nil {
			return retire.Entry{}, 0, err
		}
		if done && e.Name == name {
			return e, index, nil
		}
		// A round lost to another coordinator, or that completed another
		// coordinator's entry first: back off and go on.
		select {
		case <-ctx.Done():
			return retire.Entry{}, 0, ctx.Err()
		case <-time.After(time.Duration(20+rand.IntN(100)) * time.Millisecond):
		}
	}
	return retire.Entry{}, 0, fmt.Errorf("%w: %d rounds lost to other forgets running at the same time; retry", ErrForget, forgetAttempts)
}

// forgetTargets returns the members that must take part (every member but
// this node and those that left), refusing as Forget says. A member called
// name that is alive is a new incarnation of it: its earlier incarnations
// may be forgotten, never its own slot, which it names in its answer to
// the prepare (the id gossip advertises for a member that came back under
// its name can lag its restart).
func forgetTargets(c *Client, n *node.Node, name string, gone bool) ([]string, error) {
	ref := c.mesh.Load()
	if ref == nil {
		return nil, fmt.Errorf("%w: this node is not in a mesh", ErrForget)
	}
	var targets []string
	for _, m := range ref.m.Status().Members {
		switch {
		case m.Name == name && (m.State == gossip.StateDead || m.State == gossip.StateLeft) && !gone:
			return nil, fmt.Errorf("%w: %q is %s, and the mesh lists it for a day after: it may come back with its data (a crash, a restart), and every node would then refuse what it writes. If it is gone for good, say so: countctl cluster forget --gone %s", ErrForget, name, m.State, name)
		case m.Name == n.Name() || m.State == gossip.StateLeft:
		case m.Name == name && m.State == gossip.StateDead:
		case m.State != gossip.StateAlive:
			return nil, fmt.Errorf("%w: member %q is %s; a forget needs every member alive (each one's version vector makes the cut), or gone (left)", ErrForget, m.Name, m.State)
		default:
			targets = append(targets, m.Name)
		}
	}
	return targets, nil
}

// forgetRound runs one ballot for the next index. done reports that an
// entry was decided at index (possibly another coordinator's: e says which).
func forgetRound(ctx context.Context, c *Client, n *node.Node, name string, targets []string) (e retire.Entry, index int, done bool, err error) {
	stable := n.Retired()
	index = len(stable)
	b := retire.Ballot{Round: uint64(time.Now().UnixNano()), Node: n.ID()}

	// Prepare.
	prep := retirePrepareReq{Index: uint64(index), Ballot: b, Stable: stable}
	resps := make([]retirePrepareResp, len(targets)+1)
	p, vv, held, err := n.RetirePrepare(prep.Index, b, stable)
	if err != nil {
		return e, index, false, err
	}
	resps[0] = retirePrepareResp{Promise: p, VV: vv, Self: n.ID(), Held: held}
	if err := each(targets, func(i int, to string) error {
		return c.call(ctx, to, gossip.MethodRetirePrepare, prep, &resps[i+1])
	}); err != nil {
		return e, index, false, fmt.Errorf("%w: prepare: %v", ErrForget, err)
	}
	var best *retire.Entry
	var bestBallot retire.Ballot
	for _, r := range resps {
		if len(r.Promise.Decided) > 0 {
			_, err := n.RetireSync(append(slices.Clip(stable), r.Promise.Decided...))
			return e, index, false, err
		}
		if !r.Promise.OK {
			return e, index, false, nil
		}
		if r.Promise.Accepted != nil && (best == nil || bestBallot.Less(r.Promise.AccBallot)) {
			best, bestBallot = r.Promise.Accepted, r.Promise.AccBallot
		}
	}
	if best != nil {
		e = *best // an earlier coordinator's entry may have been chosen: complete it
	} else {
		live := make(map[crdt.NodeID]bool, len(resps))
		for _, r := range resps {
			live[r.Self] = true
		}
		e, err = proposal(name, stable, live, append([]string{n.Name()}, targets...), resps)
	}
	if err != nil {
		if errors.Is(err, errForgotten) {
			for i := len(stable) - 1; i >= 0; i-- {
				if stable[i].Name == name {
					return stable[i], i, true, nil
				}
			}
		}
		return e, index, false, err
	}

	// Accept.
	acc := retireAcceptReq{Index: uint64(index), Ballot: b, Entry: e}
	accs := make([]retireAcceptResp, len(targets)+1)
	ok, decided, err := n.RetireAccept(acc.Index, b, e)
	if err != nil {
		return e, index, false, err
	}
	accs[0] = retireAcceptResp{OK: ok, Decided: decided}
	if err := each(targets, func(i int, to string) error {
		return c.call(ctx, to, gossip.MethodRetireAccept, acc, &accs[i+1])
	}); err != nil {
		return e, index, false, fmt.Errorf("%w: accept: %v", ErrForget, err)
	}
	for _, r := range accs {
		if len(r.Decided) > 0 {
			_, err := n.RetireSync(append(slices.Clip(stable), r.Decided...))
			return e, index, false, err
		}
		if !r.OK {
			return e, index, false, nil
		}
	}

	// Every member accepted: the entry is decided. Install it here, then
	// spread it (a member the spread misses gets it from SyncRetired).
	full := append(slices.Clip(stable), e)
	if _, err := n.RetireSync(full); err != nil {
		return e, index, false, err
	}
	_ = each(targets, func(_ int, to string) error {
		var out retireSyncResp
		return c.call(ctx, to, gossip.MethodRetireSync, retireSyncReq{Stable: full}, &out)
	})
	return e, index, true, nil
}

// errForgotten is proposal's answer when every id of the name is forgotten
// already.
var errForgotten = errors.New("already forgotten")

// proposal builds this coordinator's entry for name from the members'
// vectors: the ids are every origin of that name's (crdt.SameName) that a
// member holds changes of, that is not a live member's slot, and that no
// entry of stable names yet (a name may be reused: a node that lost its
// disk comes back as a new incarnation), and the cut is the element-wise
// maximum of the vectors and of the changes held past their gaps. It
// refuses while a member's vector lacks a change of those ids that another
// member holds: every change a forgotten id made must be in the cut, or it
// would be refused when it arrives (a campaign forgot a node that had just
// left while its last changes were on their way).
func proposal(name string, stable []retire.Entry, live map[crdt.NodeID]bool, members []string, resps []retirePrepareResp) (retire.Entry, error) {
	base := crdt.NodeIDFromName(name)
	forgotten := make(map[crdt.NodeID]bool)
	for _, e := range stable {
		for _, id := range e.IDs {
			forgotten[id] = true
		}
	}
	named := false
	cut := make(map[crdt.NodeID]uint64)
	for _, r := range resps {
		for _, os := range r.VV {
			cut[os.Origin] = max(cut[os.Origin], os.Seq)
		}
		for _, os := range r.Held {
			cut[os.Origin] = max(cut[os.Origin], os.Seq)
		}
	}
	e := retire.Entry{Name: name}
	for o, s := range cut {
		if crdt.SameName(o, base) && s > 0 && !live[o] {
			named = true
			if !forgotten[o] {
				e.IDs = append(e.IDs, o)
			}
		}
		e.Cut = append(e.Cut, retire.OriginSeq{Origin: o, Seq: s})
	}
	if len(e.IDs) == 0 && named {
		return e, errForgotten
	}
	if len(e.IDs) == 0 {
		return e, fmt.Errorf("%w: no member holds a change of a node called %q that may be forgotten (a live member's own slot never is); there is nothing to forget", ErrForget, name)
	}
	slices.Sort(e.IDs)
	for _, id := range e.IDs {
		for i, r := range resps {
			if got := retire.SeqOf(r.VV, id); got < cut[id] {
				return e, fmt.Errorf("%w: not every member holds the last changes of %q yet (%s holds its slot %d up to change %d of %d); anti-entropy brings them within seconds: retry", ErrForget, name, members[i], id, got, cut[id])
			}
		}
	}
	retire.SortOrigins(e.Cut)
	return e, e.Validate()
}

// each calls f for every target at once and returns the first error.
func each(targets []string, f func(i int, to string) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, to := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(i, to); err != nil {
				errs[i] = fmt.Errorf("%s: %w", to, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// SyncInterval is how often SyncRetired exchanges the retired list with a
// random member when nothing asks for it sooner.
const SyncInterval = 10 * time.Second

// SyncRetired spreads the retired list until done closes: every
// SyncInterval, and at once when a peer sent a state folded beyond this
// node's list (node.RetiredBehind), it sends its stable list to a random
// alive member and installs the member's.
func SyncRetired(done <-chan struct{}, c *Client, n *node.Node) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if !n.RetiredBehind() && time.Since(last) < SyncInterval {
			continue
		}
		last = time.Now()
		var alive []string
		for _, p := range c.Peers() {
			if p.Alive && p.Name != n.Name() {
				alive = append(alive, p.Name)
			}
		}
		if len(alive) == 0 {
			continue
		}
		to := alive[rand.IntN(len(alive))]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var out retireSyncResp
		err := c.call(ctx, to, gossip.MethodRetireSync, retireSyncReq{Stable: n.Retired()}, &out)
		cancel()
		if err == nil {
			_, _ = n.RetireSync(out.Stable) // refusals are logged and counted there
		}
	}
}
