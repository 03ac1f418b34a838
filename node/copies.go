package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/exact"
	"go.uber.org/zap"
)

// A writer's copies (docs/scale.md). A node that writes a counter of a
// sharded namespace it does not own makes the change durable in its own
// slot and sends it to the owners; it keeps its copy only until the owners
// hold it. Every ReleaseInterval, releasePass asks the owners of each shard
// this node wrote to but does not own for their durable vector entries of
// its sequence space of that shard, and drops the counters whose changes
// they all hold (replica.DropCopies, which raises the space's release mark
// first). A shard with fewer than two owners besides this node keeps its
// copies: dropping one would leave a single one.
//
// A slot is a running total, so a write of a counter this node released
// must start from the slot's last total: restoreReleased first brings the
// counter back from an owner whose vector covers the release mark, under
// releaseMu's read side, which the drops take exclusively. A node that
// released part of a shard answers no read of it alone, even once it owns
// the shard again (members.owners).

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
	if len(spaces) > MaxGetMany {
		return nil, nil, fmt.Errorf("%w: %d sequence spaces in one call, more than %d", ErrInvalidArgument, len(spaces), MaxGetMany)
	}
	if !n.Ready() {
		return nil, nil, fmt.Errorf("%w: the node is not ready", ErrUnavailable)
	}
	vv := n.rep.VersionVector()
	upto := make([]uint64, len(spaces))
	for i, sp := range spaces {
		upto[i] = vv[sp]
	}
	// The states are read after the vector, so they hold every change it
	// covers; PeerStates flushes, so both are durable.
	states, err := n.PeerStates(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	return upto, states, nil
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
	vv := n.rep.VersionVector()
	m := n.memberSnapshot()
	type job struct {
		space  crdt.NodeID
		upto   uint64 // the owners' vectors cover it, once asked
		failed bool   // an owner did not answer
	}
	var jobs []job
	perPeer := make(map[string][]int) // job indexes
	peers := make(map[string]exact.Peer)
	for _, r := range counts {
		for part := range change.Partitions {
			s := change.Shard{Replicas: r, Part: part}
			sp := s.Space(n.id)
			upto := vv[sp]
			if upto <= n.rep.ReleasedThrough(sp) {
				continue
			}
			local, remote, self := m.shardOwners(s)
			if self || len(local)+len(remote) < 2 {
				continue
			}
			j := len(jobs)
			jobs = append(jobs, job{space: sp, upto: upto})
			for _, p := range append(local, remote...) {
				perPeer[p.Name] = append(perPeer[p.Name], j)
				peers[p.Name] = p
			}
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
		spaces := make([]crdt.NodeID, len(js))
		for x, j := range js {
			spaces[x] = jobs[j].space
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		got, _, err := f.Covers(cctx, peers[name], spaces, nil)
		cancel()
		if err != nil {
			n.log.Debug("an owner did not answer for the changes it holds; keeping the copies of its shards", zap.String("peer", name), zap.Error(err))
		}
		for x, j := range js {
			if err != nil {
				jobs[j].failed = true
				continue
			}
			jobs[j].upto = min(jobs[j].upto, got[x])
		}
	}
	// Every change the owners hold is in Pebble and its index before the
	// drops look; a counter changed since is not evictable and stays.
	if err := n.Checkpoint(); err != nil {
		return 0, err
	}
	total := 0
	for _, jb := range jobs {
		if jb.failed || jb.upto <= n.rep.ReleasedThrough(jb.space) {
			continue
		}
		for {
			n.releaseMu.Lock()
			dropped, done, err := n.rep.DropCopies(jb.space, jb.upto, releaseChunk)
			n.releaseMu.Unlock()
			total += dropped
			if err != nil {
				return total, err
			}
			if done || ctx.Err() != nil {
				break
			}
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
	if err := n.restoreReleased(ctx, ops); err != nil {
		n.releaseMu.RUnlock()
		return nil, err
	}
	return n.releaseMu.RUnlock, nil
}

// restoreReleased brings back, before they are written, the counters of
// ops that this node released and does not hold: from an owner whose
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
		held, err := n.rep.Held(op.NS, op.Key)
		if err != nil {
			return kinderr.New(ErrUnavailable, err, "read counter: %v", err)
		}
		if held {
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
