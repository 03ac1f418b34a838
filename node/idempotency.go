package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/sabotage"
)

// Idempotent increments.
//
// An increment carrying an id leaves an id record beside the counter: an
// internal counter under kindID, id, 0x00, key, in which the slot of every
// node that applied the increment holds P = zigzag(by)+1 (the body) and
// N = apply time in unix seconds << 1 | compensated. Id records replicate
// and merge like any counter (per-slot max), which makes the set of appliers
// a grow-only set: union by merge.
//
// A retry that reaches a node which holds the record (its own, or one
// replicated from the first node) is answered as a duplicate and changes
// nothing; with a different by it is 409. A retry that reaches a node before
// the first attempt's record does is applied there too; once the records
// meet, every applier but the one with the smallest node id compensates with
// -by on its own slot, exactly once (the compensated bit). So the value is
// exact once the nodes have exchanged the records, and over-counts by the
// duplicated increments only until then (about the convergence time, or a
// partition's length).
//
// A counter and its id records hash to the same lock stripe (stripeOf), so
// they change under one lock and go into the same operation-log record: a
// crash can never keep the increment and lose its id, or the reverse.
//
// Id records expire idempotency_window after the last apply: the expiry pass
// deletes them and a replicated copy that old is dropped on arrival.

// MaxIDBytes bounds an increment id.
const MaxIDBytes = 256

// ValidateID checks an increment id: 1 to 256 bytes of UTF-8 without control
// characters.
func ValidateID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("%w: id must be at most %d bytes, got %d", ErrInvalidArgument, MaxIDBytes, len(id))
	}
	if err := ValidateKey(id); err != nil {
		return fmt.Errorf("%w: id must be 1 to %d bytes of UTF-8 without control characters", ErrInvalidArgument, MaxIDBytes)
	}
	return nil
}

// idKey returns the internal key of the id record of (id, key).
func idKey(id, key string) string { return string([]byte{kindID}) + id + "\x00" + key }

// parseIDKey undoes idKey.
func parseIDKey(k string) (id, key string, ok bool) {
	if len(k) < 3 || k[0] != kindID {
		return "", "", false
	}
	i := bytes.IndexByte([]byte(k[1:]), 0)
	if i < 0 {
		return "", "", false
	}
	return k[1 : 1+i], k[2+i:], true
}

// anchor returns the part of a composite key that picks its stripe: the user
// key for a counter and for the counter's id records, so that they share a
// lock; the whole key otherwise.
func anchor(ck []byte) []byte {
	i := bytes.IndexByte(ck, 0)
	if i < 0 || i+1 >= len(ck) {
		return ck
	}
	key := ck[i+1:]
	if key[0] == kindID {
		if j := bytes.IndexByte(key[1:], 0); j >= 0 {
			return key[j+2:]
		}
		return ck
	}
	if key[0] == kindRights && len(key) > 9 {
		return key[9:]
	}
	if key[0] < 0x20 {
		return ck
	}
	return key
}

func zigzag(by int64) uint64  { return uint64((by << 1) ^ (by >> 63)) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// idState summarises an id record.
type idState struct {
	seen     bool
	winner   crdt.NodeID // the applier with the smallest id
	by       int64       // the winner's body
	lastSec  int64       // the latest apply time of any applier
	self     crdt.Slot   // this node's slot
	selfSeen bool
}

func readID(c *crdt.Counter, self crdt.NodeID) idState {
	var st idState
	for _, s := range c.Slots {
		if s.P == 0 {
			continue
		}
		if !st.seen || s.Node < st.winner {
			st.winner, st.by = s.Node, unzigzag(s.P-1)
		}
		st.seen = true
		st.lastSec = max(st.lastSec, int64(s.N>>1))
		if s.Node == self {
			st.self, st.selfSeen = s, true
		}
	}
	return st
}

// idLocks serialise the writes of one id on this node (the cross-key check
// and the apply).
type idLocks [64]sync.Mutex

var idSeed = maphash.MakeSeed()

func (l *idLocks) of(ns, id string) *sync.Mutex { return &l[l.index(ns, id)] }

func (l *idLocks) index(ns, id string) int {
	return int(maphash.String(idSeed, ns+"\x00"+id) % uint64(len(l)))
}

// recentIDs remembers the ids written or received since the last two
// checkpoints, for the cross-key check of ids the store does not hold yet.
type recentIDs struct {
	mu        sync.Mutex
	cur, prev map[string]string // ns 0x00 id -> key
}

func (r *recentIDs) add(ns, id, key string) {
	r.mu.Lock()
	if r.cur == nil {
		r.cur = make(map[string]string)
	}
	r.cur[ns+"\x00"+id] = key
	r.mu.Unlock()
}

func (r *recentIDs) get(ns, id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := r.cur[ns+"\x00"+id]; ok {
		return k, true
	}
	k, ok := r.prev[ns+"\x00"+id]
	return k, ok
}

// rotate is called when a checkpoint has committed: what was added before
// the previous one ended is in the store now.
func (r *recentIDs) rotate() {
	r.mu.Lock()
	r.prev, r.cur = r.cur, nil
	r.mu.Unlock()
}

// idUsedElsewhere returns the key another increment with this id counted
// in, if any.
func (n *Node) idUsedElsewhere(ns, id, key string) (string, bool, error) {
	if other, ok := n.recent.get(ns, id); ok && other != key {
		return other, true, nil
	}
	var other string
	found := false
	prefix := string([]byte{kindID}) + id + "\x00"
	err := n.store.ScanCounters(ns, prefix, "", func(k string, _ crdt.Counter) bool {
		if _, kk, ok := parseIDKey(k); ok && kk != key {
			other, found = kk, true
			return false
		}
		return true
	})
	if err != nil {
		return "", false, fmt.Errorf("%w: read id records: %v", ErrUnavailable, err)
	}
	return other, found, nil
}

// applyIncr applies by to ns/key: at most once per id when id is set, and
// within the namespace's bounds (bounds.go). It returns the value after the
// change (or, for a duplicate, now).
func (n *Node) applyIncr(ctx context.Context, rec *namespaceRecord, ns, key string, by int64, id string) (Result, error) {
	for attempt := 0; ; attempt++ {
		res, err := n.applyIncrOnce(rec, ns, key, by, id)
		var need *errNeedRights
		if !errors.As(err, &need) {
			return res, err
		}
		if attempt == 3 {
			return Result{}, fmt.Errorf("%w: %s/%s: the rights to change it by %d moved away while this node was collecting them; retry", ErrUnavailable, ns, key, by)
		}
		// Without the id's lock: the peers' round trips must not hold up
		// other ids (a retry of this one meanwhile is seen on the next
		// attempt, which checks the id again).
		if err := n.acquireRights(ctx, ns, key, need); err != nil {
			return Result{}, err
		}
	}
}

// applyIncrOnce is one attempt of applyIncr, holding the id's lock.
func (n *Node) applyIncrOnce(rec *namespaceRecord, ns, key string, by int64, id string) (Result, error) {
	if id != "" {
		mu := n.idLocks.of(ns, id)
		mu.Lock()
		defer mu.Unlock()
		if other, found, err := n.idUsedElsewhere(ns, id, key); err != nil {
			return Result{}, err
		} else if found {
			return Result{}, fmt.Errorf("%w: id %q was already used for counter %q of %s; an id names one increment", ErrConflict, id, other, ns)
		}
	}
	return n.applyIncrLocked(rec, ns, key, by, id)
}

// applyIncrLocked is one attempt of applyIncr under the counter's stripe.
func (n *Node) applyIncrLocked(rec *namespaceRecord, ns, key string, by int64, id string) (Result, error) {
	var buf [700]byte // the write path allocates no key
	ck := compositeKey(buf[:0], ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	defer s.mu.Unlock()
	var re *entry
	if id != "" {
		rk := idKey(id, key)
		var err error
		if re, err = n.lookupLocked(s, compositeKey(nil, ns, rk), ns, rk, true); err != nil {
			return Result{}, fmt.Errorf("%w: read id record: %v", ErrUnavailable, err)
		}
	}
	e, err := n.lookupEvictLocked(s, ck, ns, key, true, re == nil) // keeps re
	if err != nil {
		return Result{}, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	if re != nil {
		if st := readID(&re.c, n.id); st.seen {
			if st.by != by {
				return Result{}, fmt.Errorf("%w: id %q was used for an increment of %d on %s/%s; a retry must send the same body (got %d)", ErrConflict, id, st.by, ns, key, by)
			}
			if !sabotage.IDTwice {
				return Result{Value: clampRec(rec, e.c.Value()), Duplicate: true}, nil
			}
			re = nil // sabotage (test builds only): counted again, the record left as it was
		}
	}
	if n.idle(rec.runtime().ttl, e.updated) && e.c.Live() {
		// Idle past its ttl, it reads 0 already: it counts from 0, as
		// after the expiry pass.
		e.c.SetReset(n.id, 0, true)
	}
	if err := n.checkBoundsLocked(s, rec, ns, key, e, by); err != nil {
		return Result{}, err
	}
	before := e.c.Value()
	v, err := e.c.Add(n.id, by)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s/%s is %d; adding %d would leave the int64 range", ErrOverflow, ns, key, v, by)
	}
	now := n.cfg.Now()
	e.updated, e.own = now.UnixMilli(), true
	n.markDirtyLocked(s, e)
	if re != nil {
		n.setIDLocked(s, re, by, now)
		n.recent.add(ns, id, key)
	}
	n.changedLocked(ns, key, before, e)
	return Result{Value: clampRec(rec, v)}, nil
}

// compensateLocked runs after an id record of this node changed by a merge:
// when another node with a smaller id applied the same increment, this node
// takes its own application back, once. The caller holds the stripe of the
// record, which is the counter's stripe.
func (n *Node) compensateLocked(s *stripe, ns, rk string, re *entry) {
	st := readID(&re.c, n.id)
	var mark crdt.Slot // this node's slot of the record once taken back
	var by int64
	switch {
	case st.selfSeen && st.winner != n.id && st.self.N&1 == 0:
		by, mark = unzigzag(st.self.P-1), crdt.Slot{Node: n.id, P: st.self.P, N: st.self.N | 1}
	case !st.selfSeen:
		// An earlier incarnation of this node (its disk was lost since)
		// applied the id, lost to another application, and did not take
		// its own back: nobody else can, so this node does, once for its
		// name (the mark: an empty body with the taken-back bit).
		p, ok := predecessorOwing(&re.c, n.id, st.winner)
		if !ok {
			return
		}
		by, mark = unzigzag(p.P-1), crdt.Slot{Node: n.id, N: 1}
	default:
		return
	}
	_, key, ok := parseIDKey(rk)
	if !ok {
		return
	}
	e, err := n.lookupEvictLocked(s, compositeKey(nil, ns, key), ns, key, true, false)
	if err != nil {
		n.log.Error("cannot take back a duplicated increment; the next merge of its id retries", zap.String("ns", ns), zap.String("key", key), zap.Error(err))
		return
	}
	before := e.c.Value()
	if _, err := e.c.Add(n.id, -by); err != nil {
		n.log.Error("cannot take back a duplicated increment: overflow", zap.String("ns", ns), zap.String("key", key), zap.Error(err))
		return
	}
	// The compensated bit: N's low bit, clear above. Set by a merge of this
	// node's own slot, which cannot fail whatever the other slots hold
	// (Add would refuse when their sum left int64).
	re.c.Merge(crdt.Counter{Slots: []crdt.Slot{mark}})
	ms := n.cfg.Now().UnixMilli()
	for _, x := range []*entry{e, re} {
		x.updated, x.own = ms, true
		n.markDirtyLocked(s, x)
	}
	n.changedLocked(ns, key, before, e)
	n.metrics.compensations.Inc()
	n.log.Info("took back an increment another node applied first", zap.String("ns", ns), zap.String("key", key), zap.Int64("by", by))
}

// predecessorOwing returns the application of an earlier incarnation of
// self (crdt.SameName) that lost to winner and was not taken back, unless
// an incarnation of the name has already taken one back for it.
func predecessorOwing(c *crdt.Counter, self, winner crdt.NodeID) (crdt.Slot, bool) {
	var owed crdt.Slot
	found := false
	for _, s := range c.Slots {
		if !crdt.SameName(s.Node, self) {
			continue
		}
		if s.P == 0 && s.N&1 == 1 {
			return crdt.Slot{}, false // taken back by an incarnation already
		}
		if s.Node != self && s.Node != winner && s.P != 0 && s.N&1 == 0 && !found {
			owed, found = s, true
		}
	}
	return owed, found
}

// idExpired reports whether a replicated id record is older than the
// namespace's idempotency window.
func (n *Node) idExpired(rec *namespaceRecord, c *crdt.Counter) bool {
	win := rec.runtime().idWindow
	if win <= 0 {
		return false
	}
	st := readID(c, n.id)
	return st.seen && st.lastSec < n.cfg.Now().Add(-win).Unix()
}

// expireIDs deletes the id records older than their namespace's
// idempotency window. Records are removed from the store (not reset): they
// hold no value, and the window is the promise.
func (n *Node) expireIDs(ctx context.Context) error {
	type job struct {
		ns  string
		win time.Duration
	}
	var jobs []job
	n.ns.RLock()
	for ns, rec := range n.ns.m {
		if w := rec.runtime().idWindow; w > 0 {
			jobs = append(jobs, job{ns, w})
		}
	}
	n.ns.RUnlock()
	for _, j := range jobs {
		edge := n.cfg.Now().Add(-j.win).Unix()
		var old []string
		err := n.store.ScanCounters(j.ns, string([]byte{kindID}), "", func(k string, c crdt.Counter) bool {
			if st := readID(&c, n.id); st.seen && st.lastSec < edge {
				old = append(old, k)
			}
			return len(old) < maxExpirePerPass && ctx.Err() == nil
		})
		if err != nil {
			return fmt.Errorf("%w: scan id records: %v", ErrUnavailable, err)
		}
		if len(old) == 0 {
			continue
		}
		b := n.store.NewBatch()
		for _, k := range old {
			ck := compositeKey(nil, j.ns, k)
			s := &n.stripes[n.stripeOf(ck)]
			s.mu.Lock()
			if e := s.m[string(ck)]; e != nil {
				if !n.evictableLocked(e) || readID(&e.c, n.id).lastSec >= edge {
					s.mu.Unlock()
					continue
				}
				delete(s.m, string(ck))
			}
			s.mu.Unlock()
			b.DeleteCounter(j.ns, k)
		}
		err = b.Commit(false)
		b.Close()
		if err != nil {
			return fmt.Errorf("%w: delete id records: %v", ErrUnavailable, err)
		}
		n.metrics.expiredIDs.Add(float64(len(old)))
	}
	return nil
}

// setIDLocked records in re that this node applied an increment of by: its
// slot becomes P = zigzag(by)+1, N = apply time << 1. re has no applier yet
// (its slots' P are 0), so this node's slot is below that; it is set by a
// merge, which cannot fail whatever the other slots hold.
func (n *Node) setIDLocked(s *stripe, re *entry, by int64, now time.Time) {
	applied := uint64(max(now.Unix(), 0)) << 1
	re.c.Merge(crdt.Counter{Slots: []crdt.Slot{{Node: n.id, P: zigzag(by) + 1, N: applied}}})
	re.updated, re.own = now.UnixMilli(), true
	n.markDirtyLocked(s, re)
}

// batchIDs checks the ids of a batch before anything is locked: an id used
// twice in the batch must name the same increment (the repeat is a
// duplicate), and an id must not have counted in another key. It locks the
// batch's ids (the returned func unlocks them) and returns, per op, the
// index of the earlier op it repeats, or -1.
func (n *Node) batchIDs(ops []BatchOp) ([]int, func(), error) {
	var locks []int // indexes into n.idLocks, locked in ascending order
	repeatOf := make([]int, len(ops))
	first := map[string]int{}
	for i, op := range ops {
		repeatOf[i] = -1
		if op.ID == "" {
			continue
		}
		k := op.NS + "\x00" + op.ID
		if j, ok := first[k]; ok {
			if ops[j].Key != op.Key || ops[j].By != op.By {
				return nil, func() {}, fmt.Errorf("op %d: %w: id %q is also op %d's, with a different body; an id names one increment", i, ErrConflict, op.ID, j)
			}
			repeatOf[i] = j
			continue
		}
		first[k] = i
		if li := n.idLocks.index(op.NS, op.ID); !slices.Contains(locks, li) {
			locks = append(locks, li)
		}
	}
	slices.Sort(locks)
	for _, li := range locks {
		n.idLocks[li].Lock()
	}
	unlock := func() {
		for _, li := range locks {
			n.idLocks[li].Unlock()
		}
	}
	for i, op := range ops {
		if op.ID == "" || repeatOf[i] >= 0 {
			continue
		}
		if other, found, err := n.idUsedElsewhere(op.NS, op.ID, op.Key); err != nil {
			unlock()
			return nil, func() {}, err
		} else if found {
			unlock()
			return nil, func() {}, fmt.Errorf("op %d: %w: id %q was already used for counter %q of %s; an id names one increment", i, ErrConflict, op.ID, other, op.NS)
		}
	}
	return repeatOf, unlock, nil
}

// batchDuplicatesLocked resolves the id records of a batch's ops and tells
// which ops are duplicates; a known id with another body is 409. The caller
// holds every touched stripe.
func (n *Node) batchDuplicatesLocked(ops []BatchOp, prepared []batchOp, repeatOf []int) ([]*entry, []bool, error) {
	records := make([]*entry, len(ops))
	dup := make([]bool, len(ops))
	for i, op := range ops {
		if op.ID == "" {
			continue
		}
		if repeatOf[i] >= 0 {
			dup[i] = true
			continue
		}
		s := &n.stripes[prepared[i].stripe]
		re := s.m[prepared[i].rck]
		if re == nil {
			rk := idKey(op.ID, op.Key)
			var err error
			if re, err = n.lookupEvictLocked(s, []byte(prepared[i].rck), op.NS, rk, true, false); err != nil {
				return nil, nil, fmt.Errorf("%w: read id record: %v", ErrUnavailable, err)
			}
		}
		if st := readID(&re.c, n.id); st.seen {
			if st.by != op.By {
				return nil, nil, fmt.Errorf("op %d: %w: id %q was used for an increment of %d on %s/%s; a retry must send the same body (got %d)", i, ErrConflict, op.ID, st.by, op.NS, op.Key, op.By)
			}
			if sabotage.IDTwice {
				continue // sabotage (test builds only): counted again, without a record
			}
			dup[i] = true
			continue
		}
		records[i] = re
	}
	return records, dup, nil
}
