package idem

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// Config holds what the id records need from the node.
type Config struct {
	ID    crdt.NodeID // this node's slot
	Keys  *keyspace.Set
	Store *store.Store
	Now   func() time.Time
	Log   *zap.Logger
	// Recent returns the key an id of ns counted in, among the ids written
	// or received since the last two checkpoints (the store may not hold
	// their records yet).
	Recent func(ns, id string) (key string, ok bool)
	// Changed tells the node's change feed that ns/key changed from
	// before; the caller holds the counter's stripe lock.
	Changed func(ns, key string, before int64, e *keyspace.Entry)
	// OnCompensate and OnExpired count take-backs and expired records.
	OnCompensate func()
	OnExpired    func(n int)
}

// IDs applies increment ids at most once: the id records, their locks,
// the take-back of an increment another node applied first, and expiry.
// It is safe for concurrent use.
type IDs struct {
	cfg   Config
	locks [64]sync.Mutex // serialise the writes of one id on this node (the cross-key check and the apply)
}

// New returns the id records of a node.
func New(cfg Config) *IDs { return &IDs{cfg: cfg} }

// Key returns the internal key of the id record of (id, key).
func Key(id, key string) string { return string([]byte{keyspace.KindID}) + id + "\x00" + key }

// ParseKey undoes Key.
func ParseKey(k string) (id, key string, ok bool) {
	if len(k) < 3 || k[0] != keyspace.KindID {
		return "", "", false
	}
	i := bytes.IndexByte([]byte(k[1:]), 0)
	if i < 0 {
		return "", "", false
	}
	return k[1 : 1+i], k[2+i:], true
}

// Zigzag maps by to the unsigned body of an id record's slot (less one).
func Zigzag(by int64) uint64 { return uint64((by << 1) ^ (by >> 63)) }

// Unzigzag undoes Zigzag.
func Unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// State summarises an id record.
type State struct {
	Seen     bool
	Winner   crdt.NodeID // the applier with the smallest id
	By       int64       // the winner's body
	LastSec  int64       // the latest apply time of any applier
	Self     crdt.Slot   // this node's slot
	SelfSeen bool
}

// Read summarises the id record c as node self sees it.
func Read(c *crdt.Counter, self crdt.NodeID) State {
	var st State
	for _, s := range c.Slots {
		if s.P == 0 {
			continue
		}
		if !st.Seen || s.Node < st.Winner {
			st.Winner, st.By = s.Node, Unzigzag(s.P-1)
		}
		st.Seen = true
		st.LastSec = max(st.LastSec, int64(s.N>>1))
		if s.Node == self {
			st.Self, st.SelfSeen = s, true
		}
	}
	return st
}

var idSeed = maphash.MakeSeed()

func lockIndex(ns, id string) int {
	return int(maphash.String(idSeed, ns+"\x00"+id) % 64)
}

// usedElsewhere returns the key another increment with this id counted
// in, if any.
func (x *IDs) usedElsewhere(ns, id, key string) (string, bool, error) {
	if other, ok := x.cfg.Recent(ns, id); ok && other != key {
		return other, true, nil
	}
	var other string
	found := false
	prefix := string([]byte{keyspace.KindID}) + id + "\x00"
	err := x.cfg.Store.ScanCounters(ns, prefix, "", func(k string, _ crdt.Counter) bool {
		if _, kk, ok := ParseKey(k); ok && kk != key {
			other, found = kk, true
			return false
		}
		return true
	})
	if err != nil {
		return "", false, kinderr.New(nodeerr.ErrUnavailable, err, "read id records: %v", err)
	}
	return other, found, nil
}

// CompensateLocked runs after an id record of this node changed by a merge:
// when another node with a smaller id applied the same increment, this node
// takes its own application back, once. The caller holds the stripe of the
// record, which is the counter's stripe.
func (x *IDs) CompensateLocked(s *keyspace.Stripe, ns, rk string, re *keyspace.Entry) {
	st := Read(&re.C, x.cfg.ID)
	var mark crdt.Slot // this node's slot of the record once taken back
	var by int64
	switch {
	case st.SelfSeen && st.Winner != x.cfg.ID && st.Self.N&1 == 0:
		by, mark = Unzigzag(st.Self.P-1), crdt.Slot{Node: x.cfg.ID, P: st.Self.P, N: st.Self.N | 1}
	case !st.SelfSeen:
		// An earlier incarnation of this node (its disk was lost since)
		// applied the id, lost to another application, and did not take
		// its own back: nobody else can, so this node does, once for its
		// name (the mark: an empty body with the taken-back bit).
		p, ok := PredecessorOwing(&re.C, x.cfg.ID, st.Winner)
		if !ok {
			return
		}
		by, mark = Unzigzag(p.P-1), crdt.Slot{Node: x.cfg.ID, N: 1}
	default:
		return
	}
	_, key, ok := ParseKey(rk)
	if !ok {
		return
	}
	e, err := x.cfg.Keys.LookupEvict(s, keyspace.Composite(nil, ns, key), ns, key, true, false)
	if err != nil {
		x.cfg.Log.Error("cannot take back a duplicated increment; the next merge of its id retries", zap.String("ns", ns), zap.String("key", key), zap.Error(err))
		return
	}
	before := e.C.Value()
	if _, err := e.C.Add(x.cfg.ID, -by); err != nil {
		x.cfg.Log.Error("cannot take back a duplicated increment: overflow", zap.String("ns", ns), zap.String("key", key), zap.Error(err))
		return
	}
	// The compensated bit: N's low bit, clear above. Set by a merge of this
	// node's own slot, which cannot fail whatever the other slots hold
	// (Add would refuse when their sum left int64).
	re.C.Merge(crdt.Counter{Slots: []crdt.Slot{mark}})
	ms := x.cfg.Now().UnixMilli()
	for _, y := range []*keyspace.Entry{e, re} {
		y.Updated, y.Own = ms, true
		x.cfg.Keys.MarkDirty(s, y)
	}
	x.cfg.Changed(ns, key, before, e)
	x.cfg.OnCompensate()
	x.cfg.Log.Info("took back an increment another node applied first", zap.String("ns", ns), zap.String("key", key), zap.Int64("by", by))
}

// PredecessorOwing returns the application of an earlier incarnation of
// self (crdt.SameName) that lost to winner and was not taken back, unless
// an incarnation of the name has already taken one back for it.
func PredecessorOwing(c *crdt.Counter, self, winner crdt.NodeID) (crdt.Slot, bool) {
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

// Expired reports whether a replicated id record is older than its
// namespace's idempotency window win (0: never).
func (x *IDs) Expired(win time.Duration, c *crdt.Counter) bool {
	if win <= 0 {
		return false
	}
	st := Read(c, x.cfg.ID)
	return st.Seen && st.LastSec < x.cfg.Now().Add(-win).Unix()
}

// Window is a namespace with its idempotency window.
type Window struct {
	NS  string
	Win time.Duration
}

// MaxExpirePerPass bounds the deletes of one expiry pass per namespace; the
// next pass takes the rest.
const MaxExpirePerPass = 100_000

// Expire deletes the id records older than their namespace's idempotency
// window (ws lists the namespaces with one). Records are removed from the
// store (not reset): they hold no value, and the window is the promise.
func (x *IDs) Expire(ctx context.Context, ws []Window) error {
	for _, j := range ws {
		edge := x.cfg.Now().Add(-j.Win).Unix()
		var old []string
		err := x.cfg.Store.ScanCounters(j.NS, string([]byte{keyspace.KindID}), "", func(k string, c crdt.Counter) bool {
			if st := Read(&c, x.cfg.ID); st.Seen && st.LastSec < edge {
				old = append(old, k)
			}
			return len(old) < MaxExpirePerPass && ctx.Err() == nil
		})
		if err != nil {
			return kinderr.New(nodeerr.ErrUnavailable, err, "scan id records: %v", err)
		}
		if len(old) == 0 {
			continue
		}
		b := x.cfg.Store.NewBatch()
		for _, k := range old {
			ck := keyspace.Composite(nil, j.NS, k)
			s := x.cfg.Keys.StripeOf(ck)
			s.Lock()
			if e := s.Get(string(ck)); e != nil && (!x.cfg.Keys.Evictable(e) || Read(&e.C, x.cfg.ID).LastSec >= edge) {
				s.Unlock()
				continue
			}
			// Also when the map does not hold it: the compact tier may.
			s.Remove(string(ck))
			s.Unlock()
			b.DeleteCounter(j.NS, k)
		}
		err = b.Commit(false)
		b.Close()
		if err != nil {
			return kinderr.New(nodeerr.ErrUnavailable, err, "delete id records: %v", err)
		}
		x.cfg.OnExpired(len(old))
	}
	return nil
}

// SetLocked records in re that this node applied an increment of by: its
// slot becomes P = Zigzag(by)+1, N = apply time << 1. re has no applier yet
// (its slots' P are 0), so this node's slot is below that; it is set by a
// merge, which cannot fail whatever the other slots hold.
func (x *IDs) SetLocked(s *keyspace.Stripe, re *keyspace.Entry, by int64, now time.Time) {
	applied := uint64(max(now.Unix(), 0)) << 1
	re.C.Merge(crdt.Counter{Slots: []crdt.Slot{{Node: x.cfg.ID, P: Zigzag(by) + 1, N: applied}}})
	re.Updated, re.Own = now.UnixMilli(), true
	x.cfg.Keys.MarkDirty(s, re)
}

// Op is what LockBatch needs of one op of a batch.
type Op struct {
	NS, Key, ID string
	By          int64
}

// LockBatch checks the ids of a batch before anything is locked: an id used
// twice in the batch must name the same increment (the repeat is a
// duplicate), and an id must not have counted in another key. It locks the
// batch's ids (the returned func unlocks them) and returns, per op, the
// index of the earlier op it repeats, or -1. opErr names the op an error is
// about.
func (x *IDs) LockBatch(ops []Op, opErr func(i int, err error) error) ([]int, func(), error) {
	var locks []int // indexes into x.locks, locked in ascending order
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
				return nil, func() {}, opErr(i, fmt.Errorf("%w: id %q is also op %d's, with a different body; an id names one increment", nodeerr.ErrConflict, op.ID, j))
			}
			repeatOf[i] = j
			continue
		}
		first[k] = i
		if li := lockIndex(op.NS, op.ID); !slices.Contains(locks, li) {
			locks = append(locks, li)
		}
	}
	slices.Sort(locks)
	for _, li := range locks {
		x.locks[li].Lock()
	}
	unlock := func() {
		for _, li := range locks {
			x.locks[li].Unlock()
		}
	}
	for i, op := range ops {
		if op.ID == "" || repeatOf[i] >= 0 {
			continue
		}
		if other, found, err := x.usedElsewhere(op.NS, op.ID, op.Key); err != nil {
			unlock()
			return nil, func() {}, err
		} else if found {
			unlock()
			return nil, func() {}, opErr(i, fmt.Errorf("%w: id %q was already used for counter %q of %s; an id names one increment", nodeerr.ErrConflict, op.ID, other, op.NS))
		}
	}
	return repeatOf, unlock, nil
}
