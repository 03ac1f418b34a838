package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/internal/sabotage"
)

// Publisher takes the node's own durable changes for replication (a
// gossip.Mesh). Publish must not block.
type Publisher interface {
	Publish(gossip.Batch)
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

// Apply implements gossip.Replica: it merges a batch from a peer, waits until
// it is durable, then advances the version vector by the batch's ranges. A
// batch with any malformed or out-of-bounds part is refused whole with an
// error wrapping ErrInvalidPeerData, before anything of it is applied
// (peerinput.go).
func (n *Node) Apply(b gossip.Batch) error {
	if errp := n.failed.Load(); errp != nil {
		return fmt.Errorf("%w: storage failed: %v", ErrUnavailable, *errp)
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
		if n.bucketExpired(rec, d.Key) || (len(d.Key) > 0 && d.Key[0] == kindID && n.idExpired(rec, &d.State)) {
			continue // expiry has dropped it here; keep it dropped
		}
		buf = compositeKey(buf[:0], d.NS, d.Key)
		s := &n.stripes[n.stripeOf(buf)]
		s.mu.Lock()
		e, err := n.lookupLocked(s, buf, d.NS, d.Key, true)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
		}
		// checkBatch passed this; the node's state only grew since, so this
		// cannot fail, but nothing unchecked is merged.
		if err := n.checkAgainstLocalLocked(d.NS, d.Key, &e.c, &d.State); err != nil {
			s.mu.Unlock()
			return err
		}
		before, wasLive := e.c.Value(), e.c.Live()
		e.c.Merge(d.State) // Merge copies what it keeps
		e.seqs = withSeq(e.seqs, d.Origin, d.Seq)
		if e.c.Value() != before || e.c.Live() != wasLive {
			e.updated = now
			n.changedLocked(d.NS, d.Key, before, e)
		}
		n.markDirtyLocked(s, e)
		if d.Key[0] == kindID {
			n.compensateLocked(s, d.NS, d.Key, e)
			if id, key, ok := parseIDKey(d.Key); ok {
				n.recent.add(d.NS, id, key)
			}
		}
		s.mu.Unlock()
	}
	for _, rec := range b.Configs {
		if err := n.applyConfig(rec); err != nil {
			n.log.Warn("dropping a replicated namespace config", zap.String("ns", rec.NS), zap.Error(err))
		}
	}
	if len(b.Deltas) > 0 {
		if err := n.committer.Ticket(true).Wait(n.ctx()); err != nil {
			return n.ackError(err)
		}
	}
	if len(b.Ranges) > 0 {
		n.vv.Lock()
		for _, r := range b.Ranges {
			n.advanceLocked(r)
		}
		n.vv.Unlock()
	}
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
func (n *Node) advanceLocked(r gossip.Range) {
	cur := n.vv.m[r.Origin]
	if cur < r.After {
		// Only a single change is known to be held on its own: a longer
		// range may rely on changes a later batch carries.
		if r.Upto == r.After+1 {
			ahead := n.vv.ahead[r.Origin]
			if ahead == nil {
				if n.vv.ahead == nil {
					n.vv.ahead = make(map[crdt.NodeID]map[uint64]struct{})
				}
				ahead = make(map[uint64]struct{})
				n.vv.ahead[r.Origin] = ahead
			}
			if len(ahead) < maxAhead {
				ahead[r.Upto] = struct{}{}
			}
		}
		return
	}
	cur = max(cur, r.Upto)
	if ahead := n.vv.ahead[r.Origin]; ahead != nil {
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
			delete(n.vv.ahead, r.Origin)
		}
	}
	n.vv.m[r.Origin] = cur
}

// sabotageDrops picks about one delta in 50, the same on every node, for
// the sabotage_drop_delta build.
func sabotageDrops(d *gossip.Delta) bool {
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
func (n *Node) ScanSince(origin crdt.NodeID, after uint64, fn func(gossip.Delta) bool) error {
	if err := n.checkpoint(); err != nil {
		return fmt.Errorf("%w: checkpoint before a scan: %v", ErrUnavailable, err)
	}
	var scanErr error
	err := n.store.ScanIndex(origin, after, func(seq uint64, ns, key string) bool {
		d := gossip.Delta{NS: ns, Key: key, Origin: origin, Seq: seq}
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
	ck := compositeKey(nil, ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	if e := s.m[string(ck)]; e != nil {
		c := e.c.Clone()
		s.mu.Unlock()
		return c, true, nil
	}
	s.mu.Unlock()
	r, found, err := n.store.GetRecord(ns, key)
	return r.Counter, found, err
}

// ownChange returns a copy of a counter's state and the sequence number of
// this node's latest change of it (0 when it has none).
func (n *Node) ownChange(ns, key string) (crdt.Counter, uint64, error) {
	ck := compositeKey(nil, ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	if e := s.m[string(ck)]; e != nil {
		c, seq := e.c.Clone(), seqOf(e.seqs, n.id)
		s.mu.Unlock()
		return c, seq, nil
	}
	s.mu.Unlock()
	r, _, err := n.store.GetRecord(ns, key)
	return r.Counter, seqOf(r.Seqs, n.id), err
}

// Configs implements gossip.Replica.
func (n *Node) Configs() []gossip.ConfigRecord {
	n.ns.RLock()
	recs := maps.Clone(n.ns.m)
	n.ns.RUnlock()
	out := make([]gossip.ConfigRecord, 0, len(recs))
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

func configRecord(ns string, rec *namespaceRecord) (gossip.ConfigRecord, error) {
	payload, err := msgpack.Marshal(rec)
	if err != nil {
		return gossip.ConfigRecord{}, err
	}
	return gossip.ConfigRecord{NS: ns, HLC: rec.HLC, Origin: crdt.NodeID(rec.Origin), Payload: payload}, nil
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
	(*p).Publish(gossip.Batch{Configs: []gossip.ConfigRecord{cr}})
}

// applyConfig installs a replicated namespace config when it is newer
// (last writer wins by hybrid logical clock, then origin).
func (n *Node) applyConfig(cr gossip.ConfigRecord) error {
	if err := ValidateNamespace(cr.NS); err != nil {
		return err
	}
	rec, err := n.checkConfigRecord(n.knownOrigins(), &cr)
	if err != nil {
		return err
	}
	rec.HLC, rec.Origin = cr.HLC, uint64(cr.Origin)
	if err := n.clock.ObserveWithin(cr.HLC, n.cfg.MaxClockOffset); err != nil {
		return fmt.Errorf("%w: config record of namespace %q: %v", ErrInvalidPeerData, cr.NS, err)
	}
	n.ns.Lock()
	defer n.ns.Unlock()
	if cur := n.ns.m[cr.NS]; cur != nil {
		curRec := gossip.ConfigRecord{HLC: cur.HLC, Origin: crdt.NodeID(cur.Origin)}
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
