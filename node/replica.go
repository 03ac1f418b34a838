package node

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"maps"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/internal/sabotage"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// Publisher takes the node's own durable changes for replication (a
// gossip.Mesh). Publish must not block.
type Publisher interface {
	Publish(change.Batch)
}

// SetPublisher attaches the replication layer; nil detaches it. Changes
// committed before it is attached are sent by anti-entropy.
func (n *Node) SetPublisher(p Publisher) {
	if p == nil {
		n.publisher.Store(nil)
		return
	}
	n.publisher.Store(&p)
}

// Flush waits until every change made so far is committed (and so handed
// to the publisher).
func (n *Node) Flush(ctx context.Context) error {
	return n.ackError(n.committer.Ticket(true).Wait(ctx))
}

// ID returns the node's slot id.
func (n *Node) ID() crdt.NodeID { return n.id }

// The node is a gossip.Replica.
var _ gossip.Replica = (*Node)(nil)

// Apply implements gossip.Replica: it merges a batch from a peer, then
// advances the version vector by the batch's ranges. It waits until the
// batch is durable only when a delta belongs to a namespace with sync
// durability; changes of async namespaces are acknowledged once merged and
// committed within CommitMaxDelay, and a crash before that loses them here
// together with the version vector that covers them, so anti-entropy brings
// them again. A batch with any malformed or out-of-bounds part is refused
// whole with an error wrapping ErrInvalidPeerData, before anything of it is
// applied (peerinput.go).
func (n *Node) Apply(b change.Batch) error {
	return n.applyBatch(b, false)
}

// applyBatch is Apply; with durable it waits for the commit whatever the
// namespaces' durability (a quorum write's states).
func (n *Node) applyBatch(b change.Batch, durable bool) error {
	if errp := n.failed.Load(); errp != nil {
		return kinderr.New(ErrUnavailable, *errp, "storage failed: %v", *errp)
	}
	if err := n.checkBatch(&b); err != nil {
		n.metrics.peerRefused.Inc()
		return err
	}
	now := n.cfg.Now().UnixMilli()
	var buf []byte
	for i := range b.Deltas {
		d := &b.Deltas[i]
		if ValidateNamespace(d.NS) != nil || validReplicatedKey(d.Key) != nil {
			n.log.Warn("dropping a replicated change with a bad name", zap.String("ns", d.NS), zap.String("key", d.Key))
			continue
		}
		if sabotage.DropDelta && sabotageDrops(d) {
			continue // sabotage (test builds only): lost, yet b.Ranges still count it
		}
		rec, err := n.namespaceForWrite(d.NS)
		if err != nil {
			return err
		}
		durable = durable || rec.Config.Durability == DurabilitySync
		if n.bucketExpired(rec, d.Key) || (len(d.Key) > 0 && d.Key[0] == keyspace.KindID && n.idExpired(rec, &d.State)) {
			continue // expiry has dropped it here; keep it dropped
		}
		buf = keyspace.Composite(buf[:0], d.NS, d.Key)
		s := n.keys.StripeOf(buf)
		s.Lock()
		e, err := n.keys.Lookup(s, buf, d.NS, d.Key, true)
		if err != nil {
			s.Unlock()
			return kinderr.New(ErrUnavailable, err, "read counter: %v", err)
		}
		// checkBatch passed this; the node's state only grew since, so this
		// cannot fail, but nothing unchecked is merged.
		if err := n.checkAgainstLocalLocked(d.NS, d.Key, &e.C, &d.State); err != nil {
			s.Unlock()
			return err
		}
		before, wasLive := e.C.Value(), e.C.Live()
		e.C.Merge(d.State) // Merge copies what it keeps
		e.RaiseSeq(d.Origin, d.Seq)
		if e.C.Value() != before || e.C.Live() != wasLive {
			e.Updated = now
			n.changedLocked(d.NS, d.Key, before, e)
		}
		n.keys.MarkDirty(s, e)
		if d.Key[0] == keyspace.KindID {
			n.compensateLocked(s, d.NS, d.Key, e)
			if id, key, ok := parseIDKey(d.Key); ok {
				n.recent.add(d.NS, id, key)
			}
		}
		s.Unlock()
	}
	for _, rec := range b.Configs {
		if err := n.applyConfig(rec); err != nil {
			n.log.Warn("dropping a replicated namespace config", zap.String("ns", rec.NS), zap.Error(err))
		}
	}
	// The merged counters were marked dirty before the version vector moves
	// below, so every commit that records the moved vector holds them.
	if t := n.committer.Ticket(durable); durable {
		if err := t.Wait(n.ctx()); err != nil {
			return n.ackError(err)
		}
	}
	n.vv.Lock()
	for _, r := range b.Ranges {
		n.advanceLocked(r)
	}
	// Each delta is a change now held here, whatever the ranges say; past a
	// gap it waits in n.vv.ahead for the vector to reach it.
	for i := range b.Deltas {
		n.holdLocked(b.Deltas[i].Origin, b.Deltas[i].Seq)
	}
	n.vv.Unlock()
	n.metrics.replicated.Add(float64(len(b.Deltas)))
	return nil
}

// maxAhead bounds the changes of one origin held past a gap.
const maxAhead = 4096

// advanceLocked moves the version vector over r, a range of changes this
// node now durably holds: when it follows on from what the vector covers,
// the vector moves to its end and over any single changes held beyond it;
// a single change past a gap is remembered for when the gap fills. The
// caller holds n.vv.
func (n *Node) advanceLocked(r change.Range) {
	cur, known := n.vv.m[r.Origin]
	if !known {
		n.vv.m[r.Origin] = 0 // claims nothing; keeps the origin known
	}
	if cur < r.After {
		// Only a single change is known to be held on its own: a longer
		// range may rely on changes a later batch carries.
		if r.Upto == r.After+1 {
			n.holdLocked(r.Origin, r.Upto)
		}
		return
	}
	n.vv.m[r.Origin] = max(cur, r.Upto)
	n.catchUpLocked(r.Origin)
}

// holdLocked records that this node durably holds origin's change seq (a
// delta of it merged here). Past the vector's end it waits in n.vv.ahead,
// which anti-entropy offers to peers (HeldAhead), until the vector reaches
// it. The caller holds n.vv.
func (n *Node) holdLocked(origin crdt.NodeID, seq uint64) {
	if origin == n.id || seq <= n.vv.m[origin] {
		return // this node's own sequence is the committer's alone
	}
	if _, known := n.vv.m[origin]; !known {
		n.vv.m[origin] = 0
	}
	ahead := n.vv.ahead[origin]
	if ahead == nil {
		if n.vv.ahead == nil {
			n.vv.ahead = make(map[crdt.NodeID]map[uint64]struct{})
		}
		ahead = make(map[uint64]struct{})
		n.vv.ahead[origin] = ahead
	}
	if len(ahead) < maxAhead {
		ahead[seq] = struct{}{}
	}
	n.catchUpLocked(origin)
}

// catchUpLocked moves origin's vector over the held changes that now follow
// on from it and forgets those it covers. The caller holds n.vv.
func (n *Node) catchUpLocked(origin crdt.NodeID) {
	ahead := n.vv.ahead[origin]
	if ahead == nil {
		return
	}
	cur := n.vv.m[origin]
	for {
		if _, ok := ahead[cur+1]; !ok {
			break
		}
		cur++
	}
	for s := range ahead {
		if s <= cur {
			delete(ahead, s)
		}
	}
	if len(ahead) == 0 {
		delete(n.vv.ahead, origin)
	}
	n.vv.m[origin] = cur
}

// HeldAhead implements gossip.Replica.
func (n *Node) HeldAhead() map[crdt.NodeID][]uint64 {
	n.vv.Lock()
	defer n.vv.Unlock()
	out := make(map[crdt.NodeID][]uint64, len(n.vv.ahead))
	for o, ahead := range n.vv.ahead {
		out[o] = slices.Sorted(maps.Keys(ahead))
	}
	return out
}

// recoverHeld finds, in the (origin, seq) index, the changes held past the
// end of the recovered version vector (at most maxAhead per origin) and
// holds them again: n.vv.ahead is not saved, and without this a restarted
// node would never offer them.
func (n *Node) recoverHeld() error {
	vv := n.vvSnapshot()
	for o, after := range vv {
		if o == n.id {
			continue
		}
		var seqs []uint64
		err := n.store.ScanIndex(o, after, func(seq uint64, _, _ string) bool {
			seqs = append(seqs, seq)
			return len(seqs) < maxAhead
		})
		if err != nil {
			return err
		}
		n.vv.Lock()
		for _, s := range seqs {
			n.holdLocked(o, s)
		}
		n.vv.Unlock()
	}
	return nil
}

// sabotageDrops picks about one delta in 50, the same on every node, for
// the sabotage_drop_delta build.
func sabotageDrops(d *change.Delta) bool {
	h := fnv.New64a()
	h.Write([]byte(d.NS))
	h.Write([]byte{0})
	h.Write([]byte(d.Key))
	h.Write(binary.BigEndian.AppendUint64(nil, d.Seq))
	return h.Sum64()%50 == 0
}

// VersionVector implements gossip.Replica.
func (n *Node) VersionVector() map[crdt.NodeID]uint64 {
	return n.vvSnapshot()
}

// ScanSince implements gossip.Replica. It checkpoints first, so that the
// index in Pebble covers the version vector read before the call.
func (n *Node) ScanSince(origin crdt.NodeID, after uint64, fn func(change.Delta) bool) error {
	if err := n.ckpt.Checkpoint(); err != nil {
		return kinderr.New(ErrUnavailable, err, "checkpoint before a scan: %v", err)
	}
	var scanErr error
	err := n.store.ScanIndex(origin, after, func(seq uint64, ns, key string) bool {
		d := change.Delta{NS: ns, Key: key, Origin: origin, Seq: seq}
		state, ok, err := n.counterState(ns, key)
		if err != nil {
			scanErr = err
			return false
		}
		if !ok {
			return true
		}
		// The current state is at least what change seq set; sending it
		// under seq keeps the scan's seq order.
		d.State = state.Delta(true, origin)
		return fn(d)
	})
	return errors.Join(err, scanErr)
}

// counterState returns a copy of a counter's state, from memory or Pebble.
func (n *Node) counterState(ns, key string) (crdt.Counter, bool, error) {
	ck := keyspace.Composite(nil, ns, key)
	s := n.keys.StripeOf(ck)
	s.Lock()
	if e := s.Get(string(ck)); e != nil {
		c := e.C.Clone()
		s.Unlock()
		return c, true, nil
	}
	s.Unlock()
	r, found, err := n.store.GetRecord(ns, key)
	return r.Counter, found, err
}

// ownChange returns a copy of a counter's state and the sequence number of
// this node's latest change of it (0 when it has none).
func (n *Node) ownChange(ns, key string) (crdt.Counter, uint64, error) {
	ck := keyspace.Composite(nil, ns, key)
	s := n.keys.StripeOf(ck)
	s.Lock()
	if e := s.Get(string(ck)); e != nil {
		c, seq := e.C.Clone(), e.SeqOf(n.id)
		s.Unlock()
		return c, seq, nil
	}
	s.Unlock()
	r, _, err := n.store.GetRecord(ns, key)
	return r.Counter, store.SeqOf(r.Seqs, n.id), err
}

// Configs implements gossip.Replica.
func (n *Node) Configs() []change.ConfigRecord {
	n.ns.RLock()
	recs := maps.Clone(n.ns.m)
	n.ns.RUnlock()
	out := make([]change.ConfigRecord, 0, len(recs))
	for name, rec := range recs {
		cr, err := configRecord(name, rec)
		if err != nil {
			n.log.Error("cannot encode namespace config", zap.String("ns", name), zap.Error(err))
			continue
		}
		out = append(out, cr)
	}
	return out
}

func configRecord(ns string, rec *namespaceRecord) (change.ConfigRecord, error) {
	payload, err := msgpack.Marshal(rec)
	if err != nil {
		return change.ConfigRecord{}, err
	}
	return change.ConfigRecord{NS: ns, HLC: rec.HLC, Origin: crdt.NodeID(rec.Origin), Payload: payload}, nil
}

// publishConfig sends a namespace config set here to the mesh.
func (n *Node) publishConfig(ns string, rec *namespaceRecord) {
	p := n.publisher.Load()
	if p == nil {
		return
	}
	cr, err := configRecord(ns, rec)
	if err != nil {
		n.log.Error("cannot encode namespace config", zap.String("ns", ns), zap.Error(err))
		return
	}
	(*p).Publish(change.Batch{Configs: []change.ConfigRecord{cr}})
}

// applyConfig installs a replicated namespace config when it is newer
// (last writer wins by hybrid logical clock, then origin).
func (n *Node) applyConfig(cr change.ConfigRecord) error {
	if err := ValidateNamespace(cr.NS); err != nil {
		return err
	}
	rec, err := n.checkConfigRecord(n.knownOrigins(), &cr)
	if err != nil {
		return err
	}
	rec.HLC, rec.Origin = cr.HLC, uint64(cr.Origin)
	if err := n.clock.ObserveWithin(cr.HLC, n.cfg.MaxClockOffset); err != nil {
		return kinderr.New(ErrInvalidPeerData, err, "config record of namespace %q: %v", cr.NS, err)
	}
	n.ns.Lock()
	defer n.ns.Unlock()
	if cur := n.ns.m[cr.NS]; cur != nil {
		curRec := change.ConfigRecord{HLC: cur.HLC, Origin: crdt.NodeID(cur.Origin)}
		if !cr.Newer(curRec) {
			return nil
		}
	}
	if err := n.persistNamespaceLocked(cr.NS, rec); err != nil {
		return err
	}
	n.log.Info("namespace config replicated", zap.String("ns", cr.NS), zap.Any("config", rec.Config))
	return nil
}
