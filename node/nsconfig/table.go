package nsconfig

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/hlc"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/replica"
	"github.com/countmesh/countmesh/store"
)

// TableConfig wires a Table to the node.
type TableConfig struct {
	Store             *store.Store
	Clock             *hlc.Clock
	Log               *zap.Logger
	Now               func() time.Time
	DefaultDurability string        // of a namespace created by a first write
	MaxNamespaces     int           // a new namespace past it is refused
	MaxClockOffset    time.Duration // how far ahead of this node's clock a peer's HLC may be
}

// Table holds the namespaces' records. A record is immutable once
// installed; a change of config installs a new one. It is the replica's
// view of the namespaces (replica.Namespaces): their config records
// replicate last-writer-wins. Its lock is taken before any stripe lock of
// the hot set, never under one.
type Table struct {
	sync.RWMutex // guards m; creation of a namespace holds the write lock
	m            map[string]*Record

	// replicas maps the sharded namespaces to their replicas, copied on
	// write under the lock and read without it: the committer asks for
	// every counter it numbers while it holds the counter's stripe, under
	// which the table's lock must not be taken (PutNamespace holds it
	// while it scans the stripes).
	replicas atomic.Pointer[map[string]int]

	cfg TableConfig
}

// Replicas returns the replicas per region of namespace ns (0: every
// node holds it, or ns is not known here). It takes no lock.
func (t *Table) Replicas(ns string) int {
	if m := t.replicas.Load(); m != nil {
		return (*m)[ns]
	}
	return 0
}

// ReplicaCounts returns the distinct replicas of the sharded namespaces,
// ascending.
func (t *Table) ReplicaCounts() []int {
	var out []int
	if m := t.replicas.Load(); m != nil {
		for _, r := range *m {
			if r > 0 && !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	slices.Sort(out)
	return out
}

// noteReplicasLocked keeps Replicas up to date with the record of ns; t
// is held.
func (t *Table) noteReplicasLocked(ns string, rec *Record) {
	var cur map[string]int
	if m := t.replicas.Load(); m != nil {
		cur = *m
	}
	if cur[ns] == rec.Config.Replicas {
		return
	}
	next := make(map[string]int, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	if rec.Config.Replicas > 0 {
		next[ns] = rec.Config.Replicas
	} else {
		delete(next, ns)
	}
	t.replicas.Store(&next)
}

var _ replica.Namespaces = (*Table)(nil)

// NewTable returns an empty table; Load fills it from the store.
func NewTable(cfg TableConfig) *Table {
	return &Table{m: make(map[string]*Record), cfg: cfg}
}

// GetLocked returns the record of ns, or nil; the caller holds t.
func (t *Table) GetLocked(ns string) *Record { return t.m[ns] }

// Len returns the number of namespaces.
func (t *Table) Len() int {
	t.RLock()
	defer t.RUnlock()
	return len(t.m)
}

// Range calls fn for every namespace, under the table's read lock.
func (t *Table) Range(fn func(ns string, rec *Record)) {
	t.RLock()
	defer t.RUnlock()
	for ns, rec := range t.m {
		fn(ns, rec)
	}
}

// Load reads every namespace config from the store.
func (t *Table) Load() error {
	return t.cfg.Store.ListNamespaces(func(ns string, decode func(out any) error) bool {
		rec := new(Record)
		if err := decode(rec); err != nil {
			t.cfg.Log.Error("skipping unreadable namespace config", zap.String("ns", ns), zap.Error(err))
			return true
		}
		rec.Prepare()
		t.m[ns] = rec
		t.noteReplicasLocked(ns, rec)
		t.cfg.Clock.Observe(rec.HLC)
		return true
	})
}

// ForWrite returns the config of ns, creating the namespace with the
// default config when it does not exist (a first write creates it).
func (t *Table) ForWrite(ns string) (*Record, error) {
	t.RLock()
	rec := t.m[ns]
	t.RUnlock()
	if rec != nil {
		return rec, nil
	}
	t.Lock()
	defer t.Unlock()
	if rec := t.m[ns]; rec != nil {
		return rec, nil
	}
	// An implicit namespace carries the lowest clock, so that any config set
	// explicitly anywhere in the mesh wins over it when it arrives.
	rec = &Record{
		Config:    Default(t.cfg.DefaultDurability),
		CreatedAt: t.cfg.Now().UnixMilli(),
	}
	if err := t.PersistLocked(ns, rec); err != nil {
		return nil, err
	}
	t.cfg.Log.Info("namespace created by first write", zap.String("ns", ns))
	return rec, nil
}

// PersistLocked writes rec durably and installs it; t is held. A new
// namespace past Config.MaxNamespaces is refused, whoever creates it (a
// first write, PUT, or a config record from a peer).
func (t *Table) PersistLocked(ns string, rec *Record) error {
	if t.m[ns] == nil && len(t.m) >= t.cfg.MaxNamespaces {
		return fmt.Errorf("%w: this node holds %d namespaces, its limit; %q would be one more (delete unused namespaces' counters or raise the limit)",
			nodeerr.ErrTooManyNamespaces, len(t.m), ns)
	}
	b := t.cfg.Store.NewBatch()
	defer b.Close()
	if err := b.PutNamespace(ns, rec); err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "encode namespace: %v", err)
	}
	if err := b.Commit(true); err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "store namespace: %v", err)
	}
	rec.Prepare()
	t.m[ns] = rec
	t.noteReplicasLocked(ns, rec)
	return nil
}

// InstallNewer persists nr as the config of ns unless this node's is as
// new (last writer wins by HLC, then origin).
func (t *Table) InstallNewer(ns string, nr *Record) error {
	t.Lock()
	defer t.Unlock()
	if cur := t.m[ns]; cur != nil && (cur.HLC > nr.HLC || (cur.HLC == nr.HLC && cur.Origin >= nr.Origin)) {
		return nil
	}
	return t.PersistLocked(ns, nr)
}

// Records implements replica.Namespaces.
func (t *Table) Records() []change.ConfigRecord {
	t.RLock()
	recs := maps.Clone(t.m)
	t.RUnlock()
	out := make([]change.ConfigRecord, 0, len(recs))
	for name, rec := range recs {
		cr, err := ConfigRecord(name, rec)
		if err != nil {
			t.cfg.Log.Error("cannot encode namespace config", zap.String("ns", name), zap.Error(err))
			continue
		}
		out = append(out, cr)
	}
	return out
}

// ConfigRecord encodes a namespace's record for replication.
func ConfigRecord(ns string, rec *Record) (change.ConfigRecord, error) {
	payload, err := msgpack.Marshal(rec)
	if err != nil {
		return change.ConfigRecord{}, err
	}
	return change.ConfigRecord{NS: ns, HLC: rec.HLC, Origin: crdt.NodeID(rec.Origin), Payload: payload}, nil
}

// Check implements replica.Namespaces.
func (t *Table) Check(known func(crdt.NodeID) bool, cr *change.ConfigRecord) error {
	_, err := t.checkRecord(known, cr)
	return err
}

// checkRecord checks a config record from a peer (the rules of package
// node/replica's peerinput.go) and returns its decoded record.
func (t *Table) checkRecord(known func(crdt.NodeID) bool, cr *change.ConfigRecord) (*Record, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: config record of namespace %q: %s", nodeerr.ErrInvalidPeerData, cr.NS, fmt.Sprintf(format, args...))
	}
	rec := new(Record)
	if err := msgpack.Unmarshal(cr.Payload, rec); err != nil {
		return nil, bad("decode: %v", err)
	}
	if _, err := rec.Config.Normalize(); err != nil {
		return nil, bad("%v", err)
	}
	implicit := cr.HLC == 0 && cr.Origin == 0
	if !implicit && !known(cr.Origin) {
		return nil, bad("origin %d is neither this node, an origin it holds data of, nor a member", cr.Origin)
	}
	if rec.Bank != 0 && !known(crdt.NodeID(rec.Bank)) {
		return nil, bad("bank node %d is neither this node, an origin it holds data of, nor a member", rec.Bank)
	}
	if err := t.cfg.Clock.Check(cr.HLC, t.cfg.MaxClockOffset); err != nil {
		return nil, bad("%v", err)
	}
	return rec, nil
}

// Install implements replica.Namespaces: it installs a replicated
// namespace config when it is newer (last writer wins by hybrid logical
// clock, then origin).
func (t *Table) Install(known func(crdt.NodeID) bool, cr change.ConfigRecord) error {
	rec, err := t.checkRecord(known, &cr)
	if err != nil {
		return err
	}
	rec.HLC, rec.Origin = cr.HLC, uint64(cr.Origin)
	if err := t.cfg.Clock.ObserveWithin(cr.HLC, t.cfg.MaxClockOffset); err != nil {
		return kinderr.New(nodeerr.ErrInvalidPeerData, err, "config record of namespace %q: %v", cr.NS, err)
	}
	t.Lock()
	defer t.Unlock()
	if cur := t.m[cr.NS]; cur != nil {
		curRec := change.ConfigRecord{HLC: cur.HLC, Origin: crdt.NodeID(cur.Origin)}
		if !cr.Newer(curRec) {
			return nil
		}
	}
	if err := t.PersistLocked(cr.NS, rec); err != nil {
		return err
	}
	t.cfg.Log.Info("namespace config replicated", zap.String("ns", cr.NS), zap.Any("config", rec.Config))
	return nil
}

// Get returns the record of ns, or nil when ns does not exist (it does not
// create it).
func (t *Table) Get(ns string) *Record {
	t.RLock()
	defer t.RUnlock()
	return t.m[ns]
}

// Approx returns the record of ns when ns exists and is approximate, else
// nil.
func (t *Table) Approx(ns string) *Record {
	if rec := t.Get(ns); rec != nil && rec.CounterType().Sketch() {
		return rec
	}
	return nil
}

// ConsistencyFor resolves the level of an operation on ns: the requested
// one, else quorum for an exact namespace, else local.
func (t *Table) ConsistencyFor(ns, requested string) string {
	if requested != "" {
		return requested
	}
	if rec := t.Get(ns); rec != nil {
		return rec.CounterType().Consistency()
	}
	return exact.ConsistencyLocal
}

// Clamp keeps a read of a bounded exact counter within its bounds. The
// merged state never crosses them; a node that has seen a decrement before
// the increment or transfer that allowed it could, until that arrives.
func (t *Table) Clamp(ns string, v int64) int64 { return Clamp(t.Get(ns), v) }

// RefuseBoundedReset refuses resets and deletes in an exact namespace with
// bounds.
func (t *Table) RefuseBoundedReset(ns, what string) error {
	rec := t.Get(ns)
	if rec != nil && rec.CounterType().Escrow() && rec.Bounds().Any() {
		return fmt.Errorf("%w: %s in exact namespace %q with bounds is not supported (it would move the value outside the accounting that keeps the bounds); decrement or increment instead", nodeerr.ErrConflict, what, ns)
	}
	return nil
}

// TTLOf returns the ttl of ns (0 for none). It takes the table's lock: never
// call it under a stripe lock (the lock order is the table, then stripes).
func (t *Table) TTLOf(ns string) time.Duration {
	rec := t.Get(ns)
	if rec == nil {
		return 0
	}
	return rec.Runtime().TTL
}

// With returns the namespaces whose runtime config has a positive duration
// pick (a ttl, an idempotency window).
func (t *Table) With(pick func(*Runtime) time.Duration) []Duration {
	var out []Duration
	t.RLock()
	defer t.RUnlock()
	for ns, rec := range t.m {
		if d := pick(rec.Runtime()); d > 0 {
			out = append(out, Duration{ns, d})
		}
	}
	return out
}

// Duration is a namespace with one of its durations.
type Duration struct {
	NS string
	D  time.Duration
}
