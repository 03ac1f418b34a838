package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/internal/sabotage"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/replica"
	"go.uber.org/zap"
)

// A node's copies (docs/scale.md). A node keeps the counters of a sharded
// namespace's shard it does not own only until every owner holds them: the
// ones it wrote (a write is made durable in the writer's own slot and sent
// to the owners) and what it holds of other writers (a leaving node's
// hand-over, a shard that moved away). Every ReleaseInterval,
// ReleaseCopies asks the owners of each such shard for their durable
// vector entries of the sequence spaces this node holds of it (peer call
// covers) and drops the counters whose changes they all hold
// (replica.DropCopies, after raising the spaces' release marks). A shard
// with fewer than two owners besides this node keeps its copies: dropping
// them would leave a single one.
//
// A slot is a running total, so a write of a counter this node released
// must start from its slot's last total: restoreReleased first brings the
// counter back from an owner whose vector covers the release mark of the
// node's space, under releaseMu's read side, which the drops take
// exclusively. A node with a release mark on a shard answers no read of it
// alone (members.owners), and once it owns the shard it takes every change
// back from a co-owner through anti-entropy (node/replica, release.go).

// releaseChunk bounds the counters one drop takes releaseMu for.
const releaseChunk = 4096

// CoversFetcher is the optional peer call a writer releases and restores
// its copies with (peerrpc.Client has it): a peer's durable vector entries
// of sequence spaces and, read after them, its states of keys.
type CoversFetcher interface {
	Covers(ctx context.Context, p Peer, spaces []crdt.NodeID, keys []KeyRef) ([]uint64, []crdt.Counter, error)
}

// PeerCovers answers Covers: this node's vector entries of spaces, then its
// states of keys, all durable when it returns (a writer drops its copies on
// the strength of the entries).
func (n *Node) PeerCovers(ctx context.Context, spaces []crdt.NodeID, keys []KeyRef) ([]uint64, []crdt.Counter, error) {
	if len(spaces) > MaxGetMany || len(keys) > MaxGetMany {
		return nil, nil, fmt.Errorf("%w: %d sequence spaces and %d keys in one call, more than %d", ErrInvalidArgument, len(spaces), len(keys), MaxGetMany)
	}
	if !n.Ready() {
		return nil, nil, fmt.Errorf("%w: the node is not ready", ErrUnavailable)
	}
	vv := n.rep.VersionVector()
	upto := make([]uint64, len(spaces))
	var m *members
	for i, sp := range spaces {
		// Below a release mark of its own this node does not hold every
		// change its vector covers: it covers nothing of that space
		// until it has taken the space back.
		if vv[sp] == 0 || n.rep.ReleasedThrough(sp) != 0 {
			continue
		}
		// Nor does it vouch for a shard it does not own in its own view
		// of the members (it may release it itself): views that disagree
		// during a membership change must not each rely on the other.
		s, space, _, err := n.rep.SpaceShard(sp, 0)
		if err != nil {
			return nil, nil, kinderr.New(ErrUnavailable, err, "read index: %v", err)
		}
		if space {
			if m == nil {
				m = n.memberSnapshot()
			}
			if _, _, self := m.shardOwners(s); !self {
				continue
			}
		}
		upto[i] = vv[sp]
	}
	// The states are read after the vector, so they hold every change it
	// covers; they are durable once flushed. A state of a shard with a
	// release mark here is answered too: the entries say which spaces of
	// it are whole.
	states := make([]crdt.Counter, len(keys))
	for i, k := range keys {
		if err := ValidateNamespace(k.NS); err != nil {
			return nil, nil, err
		}
		if err := validReplicatedKey(k.Key); err != nil {
			return nil, nil, fmt.Errorf("%w: bad key %q", ErrInvalidArgument, k.Key)
		}
		c, _, err := n.rep.CounterState(k.NS, k.Key)
		if err != nil {
			return nil, nil, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
		}
		states[i] = c
	}
	if err := n.Flush(ctx); err != nil {
		return nil, nil, err
	}
	return upto, states, nil
}

// refuseReleased refuses a peer's read of ns/key when this node released
// changes of the counter's shard and has not taken them back: its state
// may lack them (the asker tries another owner).
func (n *Node) refuseReleased(ns, key string) error {
	r := n.ReplicasOf(ns)
	if r == 0 || !n.rep.ShardReleased(change.ShardOf(ns, key, r)) {
		return nil
	}
	return fmt.Errorf("%w: this node released changes of the shard of %s/%q to its owners and %s; ask another owner", ErrUnavailable, ns, key, releasedRefusal)
}

// releaseLoop runs releasePass every ReleaseInterval until the node closes.
func (n *Node) releaseLoop() {
	if n.cfg.ReleaseInterval <= 0 {
		return
	}
	t := time.NewTicker(n.cfg.ReleaseInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			if !n.Ready() {
				continue
			}
			if _, err := n.ReleaseCopies(n.baseCtx); err != nil {
				n.log.Warn("releasing copies of counters the owners hold failed; the next pass retries", zap.Error(err))
			}
		}
	}
}

// ReleaseCopies runs one release pass now and returns how many counters it
// dropped (the release loop runs it every ReleaseInterval).
func (n *Node) ReleaseCopies(ctx context.Context) (int, error) {
	f, ok := n.cfg.PeerTransport.(CoversFetcher)
	counts := n.ns.ReplicaCounts()
	if !ok || len(counts) == 0 {
		return 0, nil
	}
	// Pebble's index holds every change made so far (SpaceShard and the
	// drops read it); a counter changed after this is not evictable until
	// the next checkpoint, and the drops leave it.
	if err := n.Checkpoint(); err != nil {
		return 0, err
	}
	vv := n.rep.VersionVector()
	marks := n.rep.ReleaseMarks()
	m := n.memberSnapshot()
	type job struct {
		space  crdt.NodeID
		shard  change.Shard
		upto   uint64 // what every owner covers, once asked
		failed bool   // an owner did not answer
	}
	var jobs []job
	perPeer := make(map[string][]int) // job indexes
	peers := make(map[string]exact.Peer)
	// Every space this node still indexes changes of: what it released is
	// gone from the index, so this is what it holds, the counters an
	// earlier pass kept included (one of their changes was not covered yet).
	for sp := range vv {
		if sp == n.id {
			continue
		}
		if _, no := n.notSpaces.Load(sp); no {
			continue
		}
		s, space, held, err := n.rep.SpaceShard(sp, 0)
		if err != nil {
			return 0, kinderr.New(ErrUnavailable, err, "read index: %v", err)
		}
		if held && !space {
			n.notSpaces.Store(sp, true)
		}
		if !space {
			continue
		}
		local, remote, self := m.shardOwners(s)
		if self || len(local)+len(remote) < 2 {
			continue
		}
		j := len(jobs)
		// Not capped by this node's own vector: a change it holds past a
		// gap of its own (a hand-over's) is dropped once the owners hold
		// the space up to it.
		jobs = append(jobs, job{space: sp, shard: s, upto: math.MaxUint64})
		for _, p := range append(local, remote...) {
			perPeer[p.Name] = append(perPeer[p.Name], j)
			peers[p.Name] = p
		}
	}
	if len(jobs) == 0 {
		return 0, nil
	}
	timeout := n.cfg.QuorumTimeout
	if timeout <= 0 {
		timeout = DefaultQuorumTimeout
	}
	for name, js := range perPeer {
		for from := 0; from < len(js); from += MaxGetMany {
			chunk := js[from:min(from+MaxGetMany, len(js))]
			spaces := make([]crdt.NodeID, len(chunk))
			for x, j := range chunk {
				spaces[x] = jobs[j].space
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			got, _, err := f.Covers(cctx, peers[name], spaces, nil)
			cancel()
			if err != nil {
				n.log.Debug("an owner did not answer for the changes it holds; keeping the copies of its shards", zap.String("peer", name), zap.Error(err))
			}
			for x, j := range chunk {
				if err != nil {
					jobs[j].failed = true
					continue
				}
				jobs[j].upto = min(jobs[j].upto, got[x])
			}
		}
	}
	covered := make(map[crdt.NodeID]uint64)
	raise := make(map[crdt.NodeID]replica.ReleaseMark)
	for _, jb := range jobs {
		if jb.failed || jb.upto == 0 {
			continue
		}
		covered[jb.space] = jb.upto
		if jb.upto > marks[jb.space].Upto {
			raise[jb.space] = replica.ReleaseMark{Shard: jb.shard, Upto: jb.upto}
		}
	}
	if len(covered) == 0 {
		return 0, nil
	}
	// Every space a dropped counter holds changes of is marked first.
	if err := n.rep.RaiseReleased(raise); err != nil {
		return 0, err
	}
	// A change at or below an older mark is covered too: the owners held
	// it when the mark was raised (a counter with changes of two spaces is
	// dropped in the pass that covers the later one).
	coveredOf := func(o crdt.NodeID) uint64 { return max(covered[o], marks[o].Upto) }
	total := 0
	for _, jb := range jobs {
		upto, ok := covered[jb.space]
		for cursor := uint64(0); ok && cursor < upto && ctx.Err() == nil; {
			n.releaseMu.Lock()
			dropped, next, err := n.rep.DropCopies(jb.space, cursor, upto, coveredOf, releaseChunk)
			n.releaseMu.Unlock()
			total += dropped
			if err != nil {
				return total, err
			}
			cursor = next
		}
	}
	if total > 0 {
		n.metrics.Released.Add(float64(total))
		n.log.Debug("released copies of counters their owners hold", zap.Int("counters", total))
	}
	return total, ctx.Err()
}

// guardReleased makes ops safe to apply against the drops of released
// copies: when one is of a sharded namespace, it takes releaseMu's read
// side (the returned func releases it) and restores the counters of ops
// this node released (restoreReleased).
func (n *Node) guardReleased(ctx context.Context, ops []BatchOp) (func(), error) {
	sharded := false
	for i := range ops {
		if n.ReplicasOf(ops[i].NS) > 0 {
			sharded = true
			break
		}
	}
	if !sharded {
		return func() {}, nil
	}
	n.releaseMu.RLock()
	if sabotage.ReleaseNoRestore {
		return n.releaseMu.RUnlock, nil // sabotage (test builds only): the slot restarts from 0
	}
	if err := n.restoreReleased(ctx, ops); err != nil {
		n.releaseMu.RUnlock()
		return nil, err
	}
	return n.releaseMu.RUnlock, nil
}

// restoreReleased brings back, before they are written, the counters of
// ops that this node may have released (its own space of them has a
// release mark, and it holds no change of its own past it): from an owner whose
// vector covers the release mark of the counter's space (so it holds this
// node's slot at its last total), the nearest first. It fails, restoring
// what it could and writing nothing, when no owner that answers covers it.
func (n *Node) restoreReleased(ctx context.Context, ops []BatchOp) error {
	type want struct {
		ref   KeyRef
		space crdt.NodeID
		mark  uint64
		order []exact.Peer // the owners to ask, nearest first
	}
	var wants []want
	seen := make(map[KeyRef]bool)
	var m *members
	for _, op := range ops {
		r := n.ReplicasOf(op.NS)
		if r == 0 {
			continue
		}
		ref := KeyRef{NS: op.NS, Key: op.Key}
		sp := n.rep.OwnSpace(op.NS, op.Key, r)
		mark := n.rep.ReleasedThrough(sp)
		if mark == 0 || seen[ref] {
			continue
		}
		seen[ref] = true
		// A change of its own past the mark says its slot is current: it
		// was made here after anything was released. A state without one
		// may be a copy that came back with an older total of its slot (a
		// hand-over, a refill from a co-owner that lags).
		own, _, err := n.rep.SeqIn(op.NS, op.Key, sp)
		if err != nil {
			return kinderr.New(ErrUnavailable, err, "read counter: %v", err)
		}
		if own > mark {
			continue
		}
		if m == nil {
			m = n.memberSnapshot()
		}
		local, remote, _ := m.shardOwners(change.ShardOf(op.NS, op.Key, r))
		wants = append(wants, want{ref: ref, space: sp, mark: mark, order: append(local, remote...)})
	}
	if len(wants) == 0 {
		return nil
	}
	f, ok := n.cfg.PeerTransport.(CoversFetcher)
	if !ok {
		return fmt.Errorf("%w: %s/%q was released to its owners and this node cannot reach them", ErrUnavailable, wants[0].ref.NS, wants[0].ref.Key)
	}
	timeout := n.cfg.QuorumTimeout
	if timeout <= 0 {
		timeout = DefaultQuorumTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := make([]int, len(wants))
	for i := range pending {
		pending[i] = i
	}
	var errs []error
	for try := 0; len(pending) > 0 && ctx.Err() == nil; try++ {
		perPeer := make(map[string][]int)
		peers := make(map[string]exact.Peer)
		var left []int
		for _, i := range pending {
			if try >= len(wants[i].order) {
				continue // no owner left to ask
			}
			p := wants[i].order[try]
			perPeer[p.Name] = append(perPeer[p.Name], i)
			peers[p.Name] = p
		}
		if len(perPeer) == 0 {
			break
		}
		for name, is := range perPeer {
			for from := 0; from < len(is); from += MaxGetMany {
				chunk := is[from:min(from+MaxGetMany, len(is))]
				spaces := make([]crdt.NodeID, len(chunk))
				refs := make([]KeyRef, len(chunk))
				for x, i := range chunk {
					spaces[x], refs[x] = wants[i].space, wants[i].ref
				}
				upto, states, err := f.Covers(ctx, peers[name], spaces, refs)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					left = append(left, chunk...)
					continue
				}
				for x, i := range chunk {
					w := wants[i]
					if upto[x] < w.mark {
						left = append(left, i) // it lacks some of what was released
						continue
					}
					if err := n.rep.CheckFetchedState(w.ref.NS, w.ref.Key, &states[x]); err != nil {
						n.metrics.PeerRefused.Inc()
						errs = append(errs, fmt.Errorf("%s: %w", name, err))
						left = append(left, i)
						continue
					}
					if err := n.rep.Restore(w.ref.NS, w.ref.Key, states[x]); err != nil {
						return err
					}
				}
			}
		}
		pending = left
	}
	if len(pending) > 0 {
		w := wants[pending[0]]
		return fmt.Errorf("%w: this node released its copy of %s/%q (and %d more of this write) to the counter's owners, and no owner that answered holds every change it released; nothing was written, retry: %w",
			ErrUnavailable, w.ref.NS, w.ref.Key, len(pending)-1, errors.Join(errs...))
	}
	n.metrics.Restored.Add(float64(len(wants)))
	return nil
}
