package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/retire"
	"go.uber.org/zap"
)

// Sharded namespaces (docs/scale.md). A namespace with replicas R > 0
// keeps each counter on R alive members of each region, chosen for the
// counter's partition (gossip.ShardOwners: rendezvous with bounded loads). Any node
// accepts a write: it is applied to the node's own slot and made durable
// here, numbered in the node's sequence space of the counter's shard, and
// replicated to the owners only (package gossip). Any node answers a read:
// an owner from what it holds, another node from the nearest owner merged
// with what it holds itself (its own writes still on their way); quorum and
// all count the owners. A read merges in memory: a node keeps only the
// counters it owns, and those it wrote or was handed until every owner
// holds them (copies.go).

// ReplicasOf returns the replicas per region of namespace ns: 0 when every
// node holds its counters (and for a namespace not known here).
// It takes no lock (the committer asks under a counter's stripe).
func (n *Node) ReplicasOf(ns string) int { return n.ns.Replicas(ns) }

// errSharded refuses an operation a sharded namespace does not support yet.
func errSharded(ns, what string) error {
	return fmt.Errorf("%w: namespace %q is sharded (replicas > 0), and %s is not built for sharded namespaces yet (docs/scale.md); use a namespace with replicas 0",
		ErrInvalidArgument, ns, what)
}

// refuseSharded returns errSharded when ns is sharded.
func (n *Node) refuseSharded(ns, what string) error {
	if n.ReplicasOf(ns) > 0 {
		return errSharded(ns, what)
	}
	return nil
}

// shardedWriteOptions refuses the write options a sharded namespace does
// not support yet: an increment id (its record would live on other owners
// than its counter), labels (their series too), and quorum or all writes.
func shardedWriteOptions(ns string, id, labels bool, consistency string) error {
	switch {
	case id:
		return errSharded(ns, "an increment id")
	case labels:
		return errSharded(ns, "labels")
	case consistency != "" && consistency != ConsistencyLocal:
		return errSharded(ns, "a "+consistency+" write")
	}
	return nil
}

// StatesFetcher is the optional batch read of a PeerTransport: the states
// of many counters of one peer in one call (peerrpc.Client has it).
type StatesFetcher interface {
	FetchStates(ctx context.Context, p Peer, keys []KeyRef) ([]crdt.Counter, error)
}

// members is a snapshot of the alive members by region, for placing
// counters.
type members struct {
	self, region string
	byRegion     map[string][]string
	byName       map[string]exact.Peer
	regions      []string // sorted
	// released reports whether this node released changes of shard s
	// (node/replica, release.go): it then reads s from the other owners.
	released func(s change.Shard) bool
}

func (n *Node) memberSnapshot() *members {
	m := &members{self: n.cfg.Name, region: n.cfg.Region,
		byRegion: map[string][]string{n.cfg.Region: {n.cfg.Name}}, byName: make(map[string]exact.Peer),
		released: n.rep.ShardReleased}
	if n.cfg.Peers != nil {
		for _, p := range n.cfg.Peers.Peers() {
			// Placement counts the members the mesh routes to: alive ones
			// and those merely suspected (a read tries them, and the next
			// owner when they do not answer).
			if (!p.Alive && !p.Suspect) || p.Name == n.cfg.Name {
				continue
			}
			m.byName[p.Name] = p
			m.byRegion[p.Region] = append(m.byRegion[p.Region], p.Name)
		}
	}
	for r := range m.byRegion {
		m.regions = append(m.regions, r)
	}
	slices.Sort(m.regions)
	return m
}

// owners returns the owners of ns/key other than this node, this region's
// first, each region's in rank order, and whether this node answers for it
// as an owner: it owns it and holds every change of its shard that its
// vector covers (it released none of them, copies.go).
func (m *members) owners(ns, key string, replicas int) (local, remote []exact.Peer, self bool) {
	s := change.ShardOf(ns, key, replicas)
	local, remote, self = m.shardOwners(s)
	if self && m.released != nil && m.released(s) {
		self = false
	}
	return local, remote, self
}

// shardOwners returns the owners of shard s other than this node, this
// region's first, each region's in rank order, and whether this node owns
// s too.
func (m *members) shardOwners(s change.Shard) (local, remote []exact.Peer, self bool) {
	for _, r := range m.regions {
		for _, name := range gossip.ShardOwners(s, m.byRegion[r]) {
			switch {
			case name == m.self:
				self = true
			case r == m.region:
				local = append(local, m.byName[name])
			default:
				remote = append(remote, m.byName[name])
			}
		}
	}
	return local, remote, self
}

// readPlan is who a read of one counter of a sharded namespace asks: need
// answers from targets (none: this node's own state answers).
type readPlan struct {
	targets []exact.Peer
	need    int
}

// planRead returns the read plan of a counter at level, given its owners.
func planRead(level string, local, remote []exact.Peer, self bool) (readPlan, error) {
	switch level {
	case ConsistencyLocal:
		if self {
			return readPlan{}, nil
		}
		// The nearest owners, in order: the first that answers is enough.
		return readPlan{targets: append(local, remote...), need: 1}, nil
	case ConsistencyQuorum:
		// A majority of this region's owners, this node counting when it
		// is one; a region without an owner asks the nearest other
		// region's.
		owners := len(local)
		if self {
			owners++
		}
		if owners == 0 {
			return readPlan{targets: remote, need: 1}, nil
		}
		need := owners/2 + 1
		if self {
			need--
		}
		return readPlan{targets: local, need: need}, nil
	case ConsistencyAll:
		return readPlan{targets: append(local, remote...), need: len(local) + len(remote)}, nil
	}
	return readPlan{}, fmt.Errorf("%w: consistency %q", ErrInvalidArgument, level)
}

// shardedState returns the state of ns/key that a read at level answers on
// a sharded namespace: this node's own state merged with the owners' the
// level asks for. Nothing fetched is stored here.
func (n *Node) shardedState(ctx context.Context, level, ns, key string, replicas int) (crdt.Counter, error) {
	state, _, err := n.rep.CounterState(ns, key)
	if err != nil {
		return crdt.Counter{}, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
	}
	local, remote, self := n.memberSnapshot().owners(ns, key, replicas)
	plan, err := planRead(level, local, remote, self)
	if err != nil {
		return crdt.Counter{}, err
	}
	targets, need := plan.targets, plan.need
	if need == 0 {
		return state, nil
	}
	timeout := n.cfg.QuorumTimeout
	if timeout <= 0 {
		timeout = DefaultQuorumTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if n.cfg.PeerTransport == nil || len(targets) < need {
		return crdt.Counter{}, fmt.Errorf("%w: %s read of %s/%q needs %d owner(s) of the counter, and %d are alive", ErrUnavailable, level, ns, key, need, len(targets))
	}
	if level == ConsistencyLocal {
		return n.shardedStateFrom(ctx, state, ns, key, targets) // the nearest owner that answers
	}
	type fetched struct {
		c   crdt.Counter
		err error
	}
	results := make(chan fetched, len(targets))
	for _, p := range targets {
		go func() {
			c, err := n.fetchOwnerState(ctx, p, ns, key)
			results <- fetched{c, err}
		}()
	}
	// An owner that released part of the shard (and has not taken it back)
	// refuses, and does not count: every other one the level asks must
	// answer.
	got, failed, released := 0, 0, 0
	var errs []error
	for got < need-released && got+failed < len(targets) {
		r := <-results
		if r.err != nil {
			failed++
			errs = append(errs, r.err)
			if strings.Contains(r.err.Error(), releasedRefusal) {
				released++
			}
			continue
		}
		if err := retire.Merge(&state, r.c, n.retired.IDs()); err != nil {
			failed++
			errs = append(errs, err)
			continue
		}
		got++
	}
	if got >= need-released && (got > 0 || self) {
		// This node, an owner holding its shard whole, counts as one.
		return state, nil
	}
	if got == 0 && released > 0 && level == ConsistencyQuorum && len(remote) > 0 && !slices.Equal(targets, remote) {
		// This region's owners all released part of the shard: the
		// nearest other region's answer, as for a region without an owner.
		return n.shardedStateFrom(ctx, state, ns, key, remote)
	}
	if got < need {
		return crdt.Counter{}, fmt.Errorf("%w: %s read of %s/%q: %d of the %d owner(s) it needs answered: %w", ErrUnavailable, level, ns, key, got, need, errors.Join(errs...))
	}
	return state, nil
}

// releasedRefusal is in the error of an owner that refuses a read of a
// shard it released part of (refuseReleased), as a peer's error text.
const releasedRefusal = "has not taken them back yet"

// shardedStateFrom merges into state the first answer of targets, in order.
func (n *Node) shardedStateFrom(ctx context.Context, state crdt.Counter, ns, key string, targets []exact.Peer) (crdt.Counter, error) {
	var errs []error
	for _, p := range targets {
		c, err := n.fetchOwnerState(ctx, p, ns, key)
		if err == nil {
			err = retire.Merge(&state, c, n.retired.IDs())
		}
		if err == nil {
			return state, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return crdt.Counter{}, fmt.Errorf("%w: no owner of %s/%q answered: %w", ErrUnavailable, ns, key, errors.Join(errs...))
}

// fetchOwnerState asks owner p for its state of ns/key and checks it as
// any peer input.
func (n *Node) fetchOwnerState(ctx context.Context, p exact.Peer, ns, key string) (crdt.Counter, error) {
	c, err := n.cfg.PeerTransport.FetchState(ctx, p, ns, key)
	if err != nil {
		return crdt.Counter{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	if err := n.rep.CheckFetchedState(ns, key, &c); err != nil {
		n.metrics.PeerRefused.Inc()
		return crdt.Counter{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return c, nil
}

// getSharded is Get on a sharded namespace.
func (n *Node) getSharded(ctx context.Context, ns, key string, replicas int, opts ReadOptions) (Counter, error) {
	if !opts.At.IsZero() {
		return Counter{}, errSharded(ns, "a point-in-time read (at)")
	}
	lvl := cmp.Or(opts.Consistency, ConsistencyLocal)
	c, err := n.shardedState(ctx, lvl, ns, key, replicas)
	if err != nil {
		return Counter{}, err
	}
	n.metrics.Reads.Inc()
	out := Counter{NS: ns, Key: key, Value: c.Value()}
	var buf [600]byte
	ck := keyspace.Composite(buf[:0], ns, key)
	s := n.keys.StripeOf(ck)
	s.Lock()
	if e := s.Get(string(ck)); e != nil && e.Updated > 0 {
		out.UpdatedAt = time.UnixMilli(e.Updated)
	}
	s.Unlock()
	return out, nil
}

// getManySharded reads the counters keys[i] for i in idx, all of sharded
// namespaces, into values: each owner asked once for all the counters it
// is asked for (StatesFetcher); a counter whose owners did not answer
// enough is read alone (shardedState), which tries the other owners.
func (n *Node) getManySharded(ctx context.Context, keys []KeyRef, idx []int, level string, values []int64) error {
	m := n.memberSnapshot()
	plans := make([]readPlan, len(idx))
	states := make([]crdt.Counter, len(idx))
	got := make([]int, len(idx))
	perPeer := make(map[string][]int) // positions in idx
	peers := make(map[string]exact.Peer)
	for j, i := range idx {
		k := keys[i]
		st, _, err := n.rep.CounterState(k.NS, k.Key)
		if err != nil {
			return kinderr.New(ErrUnavailable, err, "read counter: %v", err)
		}
		states[j] = st
		local, remote, self := m.owners(k.NS, k.Key, n.ReplicasOf(k.NS))
		if plans[j], err = planRead(level, local, remote, self); err != nil {
			return err
		}
		// The first owners the plan needs; the rest are tried one key at a
		// time if those fail.
		for _, p := range plans[j].targets[:min(plans[j].need, len(plans[j].targets))] {
			perPeer[p.Name] = append(perPeer[p.Name], j)
			peers[p.Name] = p
		}
	}
	if f, ok := n.cfg.PeerTransport.(StatesFetcher); ok && len(perPeer) > 0 {
		timeout := n.cfg.QuorumTimeout
		if timeout <= 0 {
			timeout = DefaultQuorumTimeout
		}
		fctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		type answer struct {
			js     []int
			states []crdt.Counter
		}
		answers := make(chan answer)
		calls := 0
		for name, js := range perPeer {
			for from := 0; from < len(js); from += MaxGetMany {
				chunk := js[from:min(from+MaxGetMany, len(js))]
				calls++
				go func() {
					refs := make([]KeyRef, len(chunk))
					for x, j := range chunk {
						refs[x] = keys[idx[j]]
					}
					sts, err := f.FetchStates(fctx, peers[name], refs)
					if err != nil {
						n.log.Debug("batch read from an owner failed; reading its counters one by one", zap.String("peer", name), zap.Error(err))
						sts = nil
					}
					answers <- answer{chunk, sts}
				}()
			}
		}
		for range calls {
			a := <-answers
			for x, j := range a.js {
				if a.states == nil {
					continue
				}
				k := keys[idx[j]]
				if err := n.rep.CheckFetchedState(k.NS, k.Key, &a.states[x]); err != nil {
					n.metrics.PeerRefused.Inc()
					continue
				}
				if err := retire.Merge(&states[j], a.states[x], n.retired.IDs()); err != nil {
					continue
				}
				got[j]++
			}
		}
	}
	for j, i := range idx {
		if got[j] < plans[j].need {
			k := keys[i]
			st, err := n.shardedState(ctx, level, k.NS, k.Key, n.ReplicasOf(k.NS))
			if err != nil {
				return fmt.Errorf("key %d: %w", i, err)
			}
			states[j] = st
		}
		values[i] = states[j].Value()
	}
	n.metrics.Reads.Add(float64(len(idx)))
	return nil
}

// pullForReset returns, for a reset or delete of a counter of a sharded
// namespace at a node that does not own it, the state of the nearest
// owner merged with this node's (nil elsewhere): the reset is made on it,
// so that its floor covers the counts the owners hold and its epoch
// follows theirs, as a reset at an owner would. The state is merged into
// this node's counter with the reset.
func (n *Node) pullForReset(ctx context.Context, ns, key string) (*crdt.Counter, error) {
	r := n.ReplicasOf(ns)
	if r == 0 {
		return nil, nil
	}
	if _, _, self := n.memberSnapshot().owners(ns, key, r); self {
		return nil, nil
	}
	if err := readable(n.ready.Load()); err != nil {
		return nil, err
	}
	st, err := n.shardedState(ctx, ConsistencyLocal, ns, key, r)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// shardedValues corrects the values a write answers for the counters of
// sharded namespaces this node does not own: the write path answers from
// the node's own state, which lacks the other writers' counts. Each such
// counter's value is raised by what its nearest owner holds beyond this
// node's state (one batch read per owner). When no owner answers, the
// values stay this node's: the write is done, and failing it now would
// invite a retry that counts it twice.
func (n *Node) shardedValues(ctx context.Context, ops []BatchOp, values []int64) error {
	var idx []int
	var keys []KeyRef
	var m *members
	for i, op := range ops {
		r := n.ReplicasOf(op.NS)
		if r == 0 {
			continue
		}
		if m == nil {
			m = n.memberSnapshot()
		}
		if _, _, self := m.owners(op.NS, op.Key, r); self {
			continue
		}
		idx = append(idx, i)
		keys = append(keys, KeyRef{NS: op.NS, Key: op.Key})
	}
	if len(idx) == 0 {
		return nil
	}
	all := make([]int, len(keys))
	for i := range all {
		all[i] = i
	}
	merged := make([]int64, len(keys))
	if err := n.getManySharded(ctx, keys, all, ConsistencyLocal, merged); err != nil {
		// The write is applied and acknowledged: an error now would make
		// the client retry it. Answer this node's values.
		n.log.Debug("no owner answered for the value of a write at a node that does not own the counter; answering this node's value", zap.Error(err))
		return nil
	}
	// The batch's last value of each counter is its value after the batch
	// here; every value of it moves by what the owner adds.
	last := make(map[KeyRef]int64, len(keys))
	for j, i := range idx {
		last[keys[j]] = values[i]
	}
	for j, i := range idx {
		values[i] += merged[j] - last[keys[j]]
	}
	return nil
}
