package node

import (
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/hlc"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/replica"
	"github.com/countmesh/countmesh/store"
)

// nsTable holds the namespaces' records. A record is immutable once
// installed; a change of config installs a new one. It is the replica's
// view of the namespaces (replica.Namespaces): their config records
// replicate last-writer-wins.
type nsTable struct {
	sync.RWMutex // guards m; creation of a namespace holds the write lock
	m            map[string]*namespaceRecord

	// Set in Open, read-only after.
	cfg   *Config
	store *store.Store
	clock *hlc.Clock
	log   *zap.Logger
}

var _ replica.Namespaces = (*nsTable)(nil)

// load reads every namespace config from the store.
func (t *nsTable) load() error {
	return t.store.ListNamespaces(func(ns string, decode func(out any) error) bool {
		rec := new(namespaceRecord)
		if err := decode(rec); err != nil {
			t.log.Error("skipping unreadable namespace config", zap.String("ns", ns), zap.Error(err))
			return true
		}
		rec.prepare()
		t.m[ns] = rec
		t.clock.Observe(rec.HLC)
		return true
	})
}

// forWrite returns the config of ns, creating the namespace with the
// default config when it does not exist (a first write creates it).
func (t *nsTable) forWrite(ns string) (*namespaceRecord, error) {
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
	rec = &namespaceRecord{
		Config:    DefaultNamespaceConfig(t.cfg.DefaultDurability),
		CreatedAt: t.cfg.Now().UnixMilli(),
	}
	if err := t.persistLocked(ns, rec); err != nil {
		return nil, err
	}
	t.log.Info("namespace created by first write", zap.String("ns", ns))
	return rec, nil
}

// persistLocked writes rec durably and installs it; t is held. A new
// namespace past Config.MaxNamespaces is refused, whoever creates it (a
// first write, PUT, or a config record from a peer).
func (t *nsTable) persistLocked(ns string, rec *namespaceRecord) error {
	if t.m[ns] == nil && len(t.m) >= t.cfg.MaxNamespaces {
		return fmt.Errorf("%w: this node holds %d namespaces, its limit; %q would be one more (delete unused namespaces' counters or raise the limit)",
			ErrTooManyNamespaces, len(t.m), ns)
	}
	b := t.store.NewBatch()
	defer b.Close()
	if err := b.PutNamespace(ns, rec); err != nil {
		return kinderr.New(ErrUnavailable, err, "encode namespace: %v", err)
	}
	if err := b.Commit(true); err != nil {
		return kinderr.New(ErrUnavailable, err, "store namespace: %v", err)
	}
	rec.prepare()
	t.m[ns] = rec
	return nil
}

// installNewer persists nr as the config of ns unless this node's is as
// new (last writer wins by HLC, then origin).
func (t *nsTable) installNewer(ns string, nr *namespaceRecord) error {
	t.Lock()
	defer t.Unlock()
	if cur := t.m[ns]; cur != nil && (cur.HLC > nr.HLC || (cur.HLC == nr.HLC && cur.Origin >= nr.Origin)) {
		return nil
	}
	return t.persistLocked(ns, nr)
}

// Records implements replica.Namespaces.
func (t *nsTable) Records() []change.ConfigRecord {
	t.RLock()
	recs := maps.Clone(t.m)
	t.RUnlock()
	out := make([]change.ConfigRecord, 0, len(recs))
	for name, rec := range recs {
		cr, err := configRecord(name, rec)
		if err != nil {
			t.log.Error("cannot encode namespace config", zap.String("ns", name), zap.Error(err))
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

// Check implements replica.Namespaces.
func (t *nsTable) Check(known func(crdt.NodeID) bool, cr *change.ConfigRecord) error {
	_, err := t.checkRecord(known, cr)
	return err
}

// checkRecord checks a config record from a peer (the rules of package
// node/replica's peerinput.go) and returns its decoded record.
func (t *nsTable) checkRecord(known func(crdt.NodeID) bool, cr *change.ConfigRecord) (*namespaceRecord, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: config record of namespace %q: %s", ErrInvalidPeerData, cr.NS, fmt.Sprintf(format, args...))
	}
	rec := new(namespaceRecord)
	if err := msgpack.Unmarshal(cr.Payload, rec); err != nil {
		return nil, bad("decode: %v", err)
	}
	if _, err := rec.Config.normalize(); err != nil {
		return nil, bad("%v", err)
	}
	implicit := cr.HLC == 0 && cr.Origin == 0
	if !implicit && !known(cr.Origin) {
		return nil, bad("origin %d is neither this node, an origin it holds data of, nor a member", cr.Origin)
	}
	if rec.Bank != 0 && !known(crdt.NodeID(rec.Bank)) {
		return nil, bad("bank node %d is neither this node, an origin it holds data of, nor a member", rec.Bank)
	}
	if err := t.clock.Check(cr.HLC, t.cfg.MaxClockOffset); err != nil {
		return nil, bad("%v", err)
	}
	return rec, nil
}

// Install implements replica.Namespaces: it installs a replicated
// namespace config when it is newer (last writer wins by hybrid logical
// clock, then origin).
func (t *nsTable) Install(known func(crdt.NodeID) bool, cr change.ConfigRecord) error {
	rec, err := t.checkRecord(known, &cr)
	if err != nil {
		return err
	}
	rec.HLC, rec.Origin = cr.HLC, uint64(cr.Origin)
	if err := t.clock.ObserveWithin(cr.HLC, t.cfg.MaxClockOffset); err != nil {
		return kinderr.New(ErrInvalidPeerData, err, "config record of namespace %q: %v", cr.NS, err)
	}
	t.Lock()
	defer t.Unlock()
	if cur := t.m[cr.NS]; cur != nil {
		curRec := change.ConfigRecord{HLC: cur.HLC, Origin: crdt.NodeID(cur.Origin)}
		if !cr.Newer(curRec) {
			return nil
		}
	}
	if err := t.persistLocked(cr.NS, rec); err != nil {
		return err
	}
	t.log.Info("namespace config replicated", zap.String("ns", cr.NS), zap.Any("config", rec.Config))
	return nil
}

// get returns the record of ns, or nil when ns does not exist (it does not
// create it).
func (t *nsTable) get(ns string) *namespaceRecord {
	t.RLock()
	defer t.RUnlock()
	return t.m[ns]
}

// approx returns the record of ns when ns exists and is approximate, else
// nil.
func (t *nsTable) approx(ns string) *namespaceRecord {
	if rec := t.get(ns); rec != nil && rec.counterType().sketch() {
		return rec
	}
	return nil
}

// consistencyFor resolves the level of an operation on ns: the requested
// one, else quorum for an exact namespace, else local.
func (t *nsTable) consistencyFor(ns, requested string) string {
	if requested != "" {
		return requested
	}
	if rec := t.get(ns); rec != nil {
		return rec.counterType().consistency()
	}
	return ConsistencyLocal
}

// clamp keeps a read of a bounded exact counter within its bounds. The
// merged state never crosses them; a node that has seen a decrement before
// the increment or transfer that allowed it could, until that arrives.
func (t *nsTable) clamp(ns string, v int64) int64 { return clampRec(t.get(ns), v) }

// refuseBoundedReset refuses resets and deletes in an exact namespace with
// bounds.
func (t *nsTable) refuseBoundedReset(ns, what string) error {
	rec := t.get(ns)
	if rec != nil && rec.counterType().escrow() && rec.bounds().Any() {
		return fmt.Errorf("%w: %s in exact namespace %q with bounds is not supported (it would move the value outside the accounting that keeps the bounds); decrement or increment instead", ErrConflict, what, ns)
	}
	return nil
}

// ttlOf returns the ttl of ns (0 for none). It takes the table's lock: never
// call it under a stripe lock (the lock order is n.ns, then stripes).
func (t *nsTable) ttlOf(ns string) time.Duration {
	rec := t.get(ns)
	if rec == nil {
		return 0
	}
	return rec.runtime().ttl
}

// with returns the namespaces whose runtime config has a positive duration
// pick (a ttl, an idempotency window).
func (t *nsTable) with(pick func(*nsRuntime) time.Duration) []nsDuration {
	var out []nsDuration
	t.RLock()
	defer t.RUnlock()
	for ns, rec := range t.m {
		if d := pick(rec.runtime()); d > 0 {
			out = append(out, nsDuration{ns, d})
		}
	}
	return out
}
