package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
)

// Consistency levels of a read or a write (docs/api.md, "Consistency").
const (
	ConsistencyLocal  = "local"
	ConsistencyQuorum = "quorum"
	ConsistencyAll    = "all"
)

// DefaultQuorumTimeout bounds a quorum or all operation when
// Config.QuorumTimeout is zero.
const DefaultQuorumTimeout = 2 * time.Second

// Peer is another node of the mesh as the consistency levels see it.
type Peer struct {
	Name string
	// ID is the peer's slot id; 0 when unknown (crdt.NodeIDFromName(Name)
	// is then assumed).
	ID       crdt.NodeID
	Region   string
	HTTPAddr string
	// Alive is false for a member the failure detector suspects or declared
	// dead. A quorum still asks it (the majority counts every member of the
	// region); all skips it.
	Alive bool
}

// Peers lists the other members of the mesh (cmd/countd builds it from the
// gossip mesh; members that left gracefully are not listed). It may list
// this node too; it is skipped by name. Peers must be safe for concurrent
// use and must not block.
type Peers interface {
	Peers() []Peer
}

// CounterState is one counter's full CRDT state, as peers exchange it for
// the quorum and all levels.
type CounterState struct {
	NS, Key string
	State   crdt.Counter
	// Origin and Seq, when both are set, say that State holds Origin's
	// change Seq of this counter (its latest): the receiver then counts
	// that change as held, as if it had come by Origin's stream. A quorum
	// push sets them (the transport sets Origin to the caller); without
	// them a change that reached some nodes only by pushes would have no
	// place in their version vectors, and if its origin then lost its disk
	// anti-entropy could never carry it to the others (the chaos campaign
	// saw the nodes disagree for good that way).
	Origin crdt.NodeID
	Seq    uint64
}

// PeerTransport is the peer RPC of the quorum and all levels (package
// httpapi implements it over HTTP). Both calls must return when ctx ends.
type PeerTransport interface {
	// FetchState returns p's durable state of ns/key (the zero Counter for
	// a counter p never saw), as Node.PeerState answers it.
	FetchState(ctx context.Context, p Peer, ns, key string) (crdt.Counter, error)
	// PushStates merges states into p and returns once p holds them
	// durably, as Node.MergeStates does.
	PushStates(ctx context.Context, p Peer, states []CounterState) error
}

// consistencyFor resolves the level of an operation on ns: the requested
// one, else quorum for an exact namespace, else local.
func (n *Node) consistencyFor(ns, requested string) string {
	if requested != "" {
		return requested
	}
	n.ns.RLock()
	rec := n.ns.m[ns]
	n.ns.RUnlock()
	if rec != nil && rec.Config.Type == TypeExact {
		return ConsistencyQuorum
	}
	return ConsistencyLocal
}

// quorumSet is who an operation at a level must reach.
type quorumSet struct {
	level   string
	targets []Peer // the other nodes asked
	need    int    // acknowledgements needed from targets
	of      int    // the nodes the level counts, this one included
}

// quorumFor returns the peers a level asks and how many of them must
// answer: for quorum, a majority of this node's region (this node counts as
// one); for all, every live member of every region. Without peers (a single
// node) this node alone is the quorum.
func (n *Node) quorumFor(level string) quorumSet {
	qs := quorumSet{level: level, of: 1}
	if n.cfg.Peers == nil || n.cfg.PeerTransport == nil {
		return qs
	}
	for _, p := range n.cfg.Peers.Peers() {
		if p.Name == n.cfg.Name {
			continue
		}
		switch level {
		case ConsistencyQuorum:
			if p.Region == n.cfg.Region {
				qs.targets = append(qs.targets, p)
				qs.of++
			}
		case ConsistencyAll:
			if p.Alive {
				qs.targets = append(qs.targets, p)
				qs.of++
			}
		}
	}
	switch level {
	case ConsistencyQuorum:
		qs.need = qs.of/2 + 1 - 1 // a majority, this node included
	case ConsistencyAll:
		qs.need = len(qs.targets)
	}
	return qs
}

// describe says who the level waits for, for error messages.
func (qs quorumSet) describe(region string) string {
	if qs.level == ConsistencyAll {
		return fmt.Sprintf("all %d live nodes of the mesh", qs.of)
	}
	return fmt.Sprintf("%d of the %d nodes of region %q", qs.need+1, qs.of, region)
}

// quorumTimeout returns the bound of one quorum operation.
func (n *Node) quorumTimeout() time.Duration {
	if n.cfg.QuorumTimeout > 0 {
		return n.cfg.QuorumTimeout
	}
	return DefaultQuorumTimeout
}

// replicateTo makes the counters ns/keys reach the nodes a level asks for,
// after a write applied here: it waits until this node holds them durably
// (whatever the namespace's durability: only what is durable leaves the
// node), then pushes their state to the level's targets and returns once
// enough acknowledged, or ErrUnavailable after Config.QuorumTimeout. On
// failure the write stays applied here and may still reach the others (the
// pushes in flight and replication go on).
func (n *Node) replicateTo(ctx context.Context, level, ns string, keys ...string) error {
	qs := n.quorumFor(level)
	ctx, cancel := context.WithTimeout(ctx, n.quorumTimeout())
	defer cancel()
	if err := n.Flush(ctx); err != nil {
		return err
	}
	if qs.need == 0 {
		return nil
	}
	states := make([]CounterState, 0, len(keys))
	for _, key := range keys {
		c, seq, err := n.ownChange(ns, key)
		if err != nil {
			return fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
		}
		states = append(states, CounterState{NS: ns, Key: key, State: c, Origin: n.id, Seq: seq})
	}
	acked, errs := n.push(ctx, qs.targets, qs.need, states)
	if acked >= qs.need {
		return nil
	}
	n.log.Debug("write did not reach its quorum", zap.String("level", level), zap.String("ns", ns),
		zap.Strings("keys", keys), zap.Int("acked", acked), zap.Int("need", qs.need), zap.Error(errs))
	return fmt.Errorf("%w: consistency %s needs %s to acknowledge the write; %d did within %v (%w). "+
		"The write is applied on this node and may still reach the others; "+
		"retry with the same id to have it counted once, or use consistency local",
		ErrUnavailable, level, qs.describe(n.cfg.Region), acked+1, n.quorumTimeout(), orUnknown(errs))
}

// push sends states to every target in parallel and returns when need of
// them acknowledged, when too many failed for that, or when ctx ends. It
// returns the acknowledgements counted and the failures seen.
func (n *Node) push(ctx context.Context, targets []Peer, need int, states []CounterState) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the pushes still in flight stop with it
	results := make(chan error, len(targets))
	for _, p := range targets {
		go func() {
			err := n.cfg.PeerTransport.PushStates(ctx, p, states)
			if err != nil {
				err = fmt.Errorf("%s: %w", p.Name, err)
			}
			results <- err
		}()
	}
	acked, failed := 0, 0
	var errs []error
	for acked < need && len(targets)-failed >= need {
		select {
		case err := <-results:
			if err == nil {
				acked++
			} else {
				failed++
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return acked, errors.Join(append(errs, ctx.Err())...)
		}
	}
	return acked, errors.Join(errs...)
}

// gatherFrom brings this node's copy of ns/key up to what the level's nodes
// hold, before a read answers from it: it fetches the counter's state from
// the targets in parallel, merges what need of them returned into the local
// copy (durably, through Apply), and when the merged state is more than
// some of those nodes held, writes it back until need of the targets hold
// it. So a read returns every write that a quorum acknowledged before it
// started, and a later read anywhere in the region returns at least as
// much (a quorum read is linearizable for a counter of unit increments).
// It returns the merged state, which the read must answer rather than the
// local copy: that may have moved on since (a write in flight here, not yet
// on a majority). ErrUnavailable when that cannot be done within
// Config.QuorumTimeout.
func (n *Node) gatherFrom(ctx context.Context, level, ns, key string) (crdt.Counter, error) {
	// A node that is not ready may have lost what it acknowledged (a
	// restart with an empty disk): its copy cannot count toward a quorum,
	// least of all when it is the whole quorum (a region of one). Found
	// by the chaos campaign (seed 20261201): a wiped node of a one-node
	// region answered a quorum read with 0 before it had caught up.
	if err := n.checkReadable(); err != nil {
		return crdt.Counter{}, err
	}
	qs := n.quorumFor(level)
	ctx, cancel := context.WithTimeout(ctx, n.quorumTimeout())
	defer cancel()
	if qs.need == 0 {
		// This node alone: answer only what is durable here.
		local, _, err := n.counterState(ns, key)
		if err != nil {
			return crdt.Counter{}, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
		}
		return local, n.Flush(ctx)
	}
	type fetched struct {
		peer  Peer
		state crdt.Counter
		err   error
	}
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	results := make(chan fetched, len(qs.targets))
	for _, p := range qs.targets {
		go func() {
			c, err := n.cfg.PeerTransport.FetchState(fctx, p, ns, key)
			if err != nil {
				err = fmt.Errorf("%s: %w", p.Name, err)
			}
			results <- fetched{p, c, err}
		}()
	}
	var got []fetched
	var errs []error
	failed := 0
	known := n.knownOrigins()
	for len(got) < qs.need && len(qs.targets)-failed >= qs.need {
		select {
		case f := <-results:
			if f.err == nil {
				// A peer's answer is peer input: checked like a pushed
				// state before it is merged or answered.
				if err := n.checkPeerState(known, ns, key, n.id, &f.state); err != nil {
					n.metrics.peerRefused.Inc()
					f.err = fmt.Errorf("%s: %w", f.peer.Name, err)
				}
			}
			if f.err != nil {
				failed++
				errs = append(errs, f.err)
				continue
			}
			got = append(got, f)
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			failed = len(qs.targets) // leave the loop
		}
	}
	fcancel()
	if len(got) < qs.need {
		return crdt.Counter{}, fmt.Errorf("%w: consistency %s needs %s to answer the read; %d did within %v (%w); "+
			"retry, or use consistency local for this node's value",
			ErrUnavailable, level, qs.describe(n.cfg.Region), len(got)+1, n.quorumTimeout(), orUnknown(errors.Join(errs...)))
	}

	local, _, err := n.counterState(ns, key)
	if err != nil {
		return crdt.Counter{}, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	merged := local.Clone()
	for _, f := range got {
		merged.Merge(f.state)
	}
	if !merged.Equal(local) {
		if err := n.mergeStates([]CounterState{{NS: ns, Key: key, State: merged}}); err != nil {
			return crdt.Counter{}, err
		}
	}
	// Every write this node saw before the read is part of the answer:
	// make it durable before it is shown.
	if err := n.Flush(ctx); err != nil {
		return crdt.Counter{}, err
	}
	// Write back: the merged state must sit on enough nodes that any later
	// read meets it. The nodes that returned it already hold it.
	var behind []Peer
	for _, f := range got {
		if !f.state.Equal(merged) {
			behind = append(behind, f.peer)
		}
	}
	if len(behind) == 0 {
		return merged, nil
	}
	held := len(got) - len(behind)
	var others []Peer
	for _, p := range qs.targets {
		holds := false
		for _, f := range got {
			if f.peer.Name == p.Name && f.state.Equal(merged) {
				holds = true
			}
		}
		if !holds {
			others = append(others, p)
		}
	}
	acked, perr := n.push(ctx, others, qs.need-held, []CounterState{{NS: ns, Key: key, State: merged}})
	if acked >= qs.need-held {
		return merged, nil
	}
	return crdt.Counter{}, fmt.Errorf("%w: consistency %s: the read's value could not be written back to %s within %v (%w); retry",
		ErrUnavailable, level, qs.describe(n.cfg.Region), n.quorumTimeout(), orUnknown(perr))
}

// PeerState answers a peer's quorum read: the state of ns/key as this node
// holds it durably (the zero Counter when it never saw the counter). A
// node that is not ready refuses with ErrUnavailable: it may have lost what
// it acknowledged before a disk loss, and must not count in a quorum.
func (n *Node) PeerState(ctx context.Context, ns, key string) (crdt.Counter, error) {
	if err := ValidateNamespace(ns); err != nil {
		return crdt.Counter{}, err
	}
	if err := validReplicatedKey(key); err != nil {
		return crdt.Counter{}, fmt.Errorf("%w: bad key %q", ErrInvalidArgument, key)
	}
	if !n.Ready() {
		return crdt.Counter{}, fmt.Errorf("%w: the node is not ready", ErrUnavailable)
	}
	c, _, err := n.counterState(ns, key)
	if err != nil {
		return crdt.Counter{}, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	// Only what is durable leaves the node: the state read above is
	// covered by a commit that starts after the read.
	if err := n.Flush(ctx); err != nil {
		return crdt.Counter{}, err
	}
	return c, nil
}

// MergeStates answers a peer's quorum write: it merges the states into this
// node's counters and returns once they are durable. States that are
// malformed or out of bounds (peerinput.go) are refused, all of them, with
// an error wrapping ErrInvalidPeerData, and nothing is merged.
func (n *Node) MergeStates(ctx context.Context, states []CounterState) error {
	if len(states) > MaxBatchOps {
		n.metrics.peerRefused.Inc()
		return fmt.Errorf("%w: %d states in one merge, more than %d", ErrInvalidPeerData, len(states), MaxBatchOps)
	}
	for _, s := range states {
		if err := ValidateNamespace(s.NS); err != nil {
			return err
		}
		if err := validReplicatedKey(s.Key); err != nil {
			return fmt.Errorf("%w: bad key %q", ErrInvalidArgument, s.Key)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return n.mergeStates(states)
}

// mergeStates merges full counter states through Apply (which waits until
// they are durable). The deltas carry this node as origin and no sequence:
// they advance no version vector, and the origins' own changes still come
// with their sequence numbers by the delta streams and anti-entropy.
//
// A state with Origin and Seq holds that origin's change Seq: it is
// recorded under it (the index anti-entropy scans), and the version vector
// moves past Seq when it already held every change before it.
func (n *Node) mergeStates(states []CounterState) error {
	b := gossip.Batch{Deltas: make([]gossip.Delta, len(states))}
	for i, s := range states {
		b.Deltas[i] = gossip.Delta{NS: s.NS, Key: s.Key, Origin: n.id, State: s.State}
		if s.Origin != 0 && s.Seq != 0 {
			b.Deltas[i].Origin, b.Deltas[i].Seq = s.Origin, s.Seq
			b.Ranges = append(b.Ranges, gossip.Range{Origin: s.Origin, After: s.Seq - 1, Upto: s.Seq})
		}
	}
	// Apply advances the vector range by range: in sequence order, a run
	// of consecutive changes moves it as far as it goes.
	slices.SortFunc(b.Ranges, func(x, y gossip.Range) int {
		return cmp.Or(cmp.Compare(x.Origin, y.Origin), cmp.Compare(x.After, y.After))
	})
	return n.Apply(b)
}

// errNoAnswer stands for the failures of a quorum operation that saw none.
var errNoAnswer = errors.New("no answer")

func orUnknown(err error) error {
	if err == nil {
		return errNoAnswer
	}
	return err
}

// checkReadable refuses a read, at any consistency, on a node that is not
// ready: one restarted with an empty disk holds whatever part of the state
// has reached it so far, and may not even know its namespaces' configs (the
// chaos campaign saw a wiped node answer -1 for a counter whose minimum is
// 0, 200 ms after it restarted).
func (n *Node) checkReadable() error {
	if !n.ready.Load() {
		return fmt.Errorf("%w: the node is not ready (it is catching up with its peers after a restart); retry, or read from another node", ErrUnavailable)
	}
	return nil
}
