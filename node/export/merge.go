package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/hlc"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/idem"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/nsconfig"
	"github.com/countmesh/countmesh/node/replica"
)

// The checks and merges of imported records: what Read applies through a
// Target, for the node.

// MergeConfig wires a Merger to the node. Every field is required.
type MergeConfig struct {
	ID             crdt.NodeID
	Keys           *keyspace.Set // the hot set
	Namespaces     *nsconfig.Table
	Replica        *replica.Replica // the peer-input rules and the origins it vouches for
	IDs            *idem.IDs
	Clock          *hlc.Clock
	MaxClockOffset time.Duration // how far ahead of this node's clock a record's HLC may be
	Now            func() time.Time
	// ValidNamespace, ValidKey (a user key) and ValidInternalKey (a key
	// of any kind a peer may send) check a record's names.
	ValidNamespace   func(ns string) error
	ValidKey         func(key string) error
	ValidInternalKey func(key string) error
	// Changed tells the node's change feed that ns/key changed from
	// before; the caller holds the counter's stripe.
	Changed func(ns, key string, before int64, e *keyspace.Entry)
	// Received remembers an id record the store may not hold yet.
	Received func(ns, id, key string)
}

// Merger checks the records of an import and merges them into the node
// (its Namespace and Counter are a Target's). It is safe for concurrent
// use.
type Merger struct {
	cfg MergeConfig
}

// NewMerger returns the import's checks and merges.
func NewMerger(cfg MergeConfig) *Merger { return &Merger{cfg: cfg} }

// Namespace installs a namespace config of an export when it is newer
// than this node's (last writer wins by hybrid logical clock, as
// replication does).
func (m *Merger) Namespace(rec *Record) error {
	if err := m.cfg.ValidNamespace(rec.Namespace); err != nil {
		return err
	}
	if len(rec.Config) == 0 || string(rec.Config) == "null" {
		return fmt.Errorf("namespace %q has no config", rec.Namespace)
	}
	var raw nsconfig.Config
	dec := json.NewDecoder(bytes.NewReader(rec.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	cfg, err := raw.Normalize()
	if err != nil {
		return fmt.Errorf("namespace %q: %w", rec.Namespace, err)
	}
	if err := m.cfg.Clock.Check(rec.HLC, m.cfg.MaxClockOffset); err != nil {
		return fmt.Errorf("namespace %q: %w", rec.Namespace, err)
	}
	m.cfg.Replica.VouchFor(crdt.NodeID(rec.Origin), crdt.NodeID(rec.Bank))
	nr := &nsconfig.Record{Config: cfg, HLC: rec.HLC, Origin: rec.Origin, CreatedAt: rec.CreatedMs, Bank: rec.Bank}
	m.cfg.Clock.Observe(rec.HLC)
	return m.cfg.Namespaces.InstallNewer(rec.Namespace, nr)
}

// Counter checks a counter record and merges it.
func (m *Merger) Counter(rec *Record) error {
	if err := m.cfg.ValidNamespace(rec.NS); err != nil {
		return err
	}
	key := rec.Key
	switch {
	case rec.Key != "" && rec.RawKey != nil:
		return fmt.Errorf("%s: a counter has a key or a raw_key, not both", rec.NS)
	case rec.RawKey != nil:
		key = string(rec.RawKey)
		if !keyspace.IsInternal(key) || m.cfg.ValidInternalKey(key) != nil {
			return fmt.Errorf("%s: raw_key is not the key of an internal counter", rec.NS)
		}
	default:
		if err := m.cfg.ValidKey(key); err != nil {
			return fmt.Errorf("%s: %w", rec.NS, err)
		}
	}
	c := rec.State()
	// The rules of peer input that do not concern origins; every node the
	// state names is vouched for by the file.
	known := replica.Origins{m.cfg.ID: {}}
	for _, s := range c.Slots {
		known[s.Node] = struct{}{}
	}
	if err := m.cfg.Replica.CheckPeerState(known, rec.NS, key, m.cfg.ID, &c); err != nil {
		// The peer wording's sentinel is not this caller's.
		return errors.New(strings.TrimPrefix(err.Error(), nodeerr.ErrInvalidPeerData.Error()+": "))
	}
	nsRec, err := m.cfg.Namespaces.ForWrite(rec.NS)
	if err != nil {
		return err
	}
	if nsRec.Dropped(key, &c, m.cfg.Now(), m.cfg.IDs) {
		return nil // expired here: keep it dropped, as replication does
	}
	ids := make([]crdt.NodeID, 0, len(c.Slots))
	for _, s := range c.Slots {
		if !crdt.IsRetiredID(s.Node) {
			ids = append(ids, s.Node)
		}
	}
	m.cfg.Replica.VouchFor(ids...)
	return m.merge(rec.NS, key, &c, rec.UpdatedMs)
}

// merge merges a checked state into ns/key under its stripe.
func (m *Merger) merge(ns, key string, c *crdt.Counter, updatedMs int64) error {
	ck := keyspace.Composite(nil, ns, key)
	s := m.cfg.Keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := m.cfg.Keys.Lookup(s, ck, ns, key, true)
	if err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
	}
	var epoch uint64
	if e.C.Reset != nil {
		epoch = e.C.Reset.Epoch
	}
	if c.Reset != nil && c.Reset.Epoch > epoch+replica.MaxEpochAhead {
		return fmt.Errorf("%s/%q: reset epoch %d is more than %d past this node's %d", ns, key, c.Reset.Epoch, uint64(replica.MaxEpochAhead), epoch)
	}
	old := e.C.Clone()
	before, wasLive := old.Value(), old.Live()
	if err := m.cfg.Replica.MergeState(ns, key, &e.C, *c); err != nil {
		return err
	}
	if e.C.Equal(old) && updatedMs <= e.Updated {
		return nil // nothing new: importing twice changes nothing
	}
	e.Updated = max(e.Updated, updatedMs)
	if mine := e.C.Slot(m.cfg.ID); mine != old.Slot(m.cfg.ID) {
		e.Own = true // this node's own slot moved: it leaves as this node's change
	}
	if e.C.Value() != before || e.C.Live() != wasLive {
		m.cfg.Changed(ns, key, before, e)
	}
	m.cfg.Keys.MarkDirty(s, e)
	if key[0] == keyspace.KindID {
		m.cfg.IDs.CompensateLocked(s, ns, key, e)
		if id, k, ok := idem.ParseKey(key); ok {
			m.cfg.Received(ns, id, k)
		}
	}
	return nil
}
