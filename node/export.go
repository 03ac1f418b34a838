package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/export"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/replica"
)

// Export and import (backup and restore): the stream is package
// node/export's; the checks and merges of its records are the node's (see
// the package documentation of node/export for the rules).

// ExportFormat is the version of the export stream this node writes and
// reads (the header's "format").
const ExportFormat = export.Format

// Record types of an export stream.
const (
	RecordHeader    = export.RecordHeader
	RecordNamespace = export.RecordNamespace
	RecordCounter   = export.RecordCounter
	RecordEnd       = export.RecordEnd
)

// MaxExportLine bounds one line of an import.
const MaxExportLine = export.MaxLine

// ExportRecord is one line of an export stream.
type ExportRecord = export.Record

// ExportSlot is one node's slot in an export record.
type ExportSlot = export.Slot

// ExportReset is a counter's latest reset or delete in an export record.
type ExportReset = export.Reset

// ExportStats counts what an export wrote or an import applied.
type ExportStats = export.Stats

// ExportOptions select what Export writes.
type ExportOptions struct {
	// NS is the one namespace to export; empty for every namespace.
	NS string
	// Covers, when set, limits the export to the namespaces it returns
	// true for (those an API token covers).
	Covers func(ns string) bool
}

// ImportOptions constrain Import.
type ImportOptions struct {
	// Allow, when set, is asked about the namespace of every record; an
	// error from it stops the import at that record (it is wrapped, so an
	// auth.ErrPermissionDenied stays one).
	Allow func(ns string) error
}

// Export writes every namespace config and every counter of this node (of
// the namespaces opts selects) to w as an export stream. It holds
// every change made before it was called; counters change while it runs,
// and a record holds its counter's state as of some moment after the call
// (states only grow, so each one merges as well as any other). An unknown
// namespace is ErrNotFound, and a node that is not ready (catching up after
// a restart, or failed) ErrUnavailable, before anything is written.
func (n *Node) Export(ctx context.Context, opts ExportOptions, w io.Writer) (ExportStats, error) {
	if !n.Ready() {
		return ExportStats{}, fmt.Errorf("%w: the node is not ready (catching up with its peers, or its storage failed); export from a ready node", ErrUnavailable)
	}
	var nss []Namespace
	if opts.NS != "" {
		one, err := n.GetNamespace(opts.NS)
		if err != nil {
			return ExportStats{}, err
		}
		nss = []Namespace{one}
	} else {
		nss = n.Namespaces()
	}
	if opts.Covers != nil {
		nss = slices.DeleteFunc(nss, func(ns Namespace) bool { return !opts.Covers(ns.Name) })
	}
	// Pebble then holds every change made before the call.
	if err := n.Checkpoint(); err != nil {
		return ExportStats{}, err
	}
	out := make([]export.Namespace, 0, len(nss))
	for _, ns := range nss {
		rec := n.ns.Get(ns.Name)
		if rec == nil {
			continue // gone since it was listed
		}
		var cfg bytes.Buffer
		enc := json.NewEncoder(&cfg)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rec.Config); err != nil {
			return ExportStats{}, fmt.Errorf("node: write export: %w", err)
		}
		out = append(out, export.Namespace{Name: ns.Name, Config: bytes.TrimSuffix(cfg.Bytes(), []byte("\n")),
			HLC: rec.HLC, Origin: rec.Origin, CreatedMs: rec.CreatedAt, Bank: rec.Bank})
	}
	return export.Write(ctx, w, n.store, export.Header{Node: n.cfg.Name, At: n.cfg.Now(), Only: opts.NS}, out)
}

// Import reads an export stream from r and merges every record into this
// node (see package node/export). It returns what it applied. A bad line
// stops it with an error wrapping ErrInvalidArgument that names the line and
// says what was applied before it; the records before it are durable then.
func (n *Node) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ExportStats, error) {
	if err := n.checkWritable(0); err != nil {
		return ExportStats{}, err
	}
	return export.Read(ctx, r, export.Target{
		Allow:     opts.Allow,
		Namespace: n.importNamespace,
		Counter:   n.importCounter,
		Ticket:    n.committer.Ticket,
		AckError:  n.ackError,
	})
}

// importNamespace installs a namespace config of an export when it is newer
// than this node's (last writer wins by hybrid logical clock, as
// replication does).
func (n *Node) importNamespace(rec *ExportRecord) error {
	if err := ValidateNamespace(rec.Namespace); err != nil {
		return err
	}
	if len(rec.Config) == 0 || string(rec.Config) == "null" {
		return fmt.Errorf("namespace %q has no config", rec.Namespace)
	}
	var raw NamespaceConfig
	dec := json.NewDecoder(bytes.NewReader(rec.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	cfg, err := raw.Normalize()
	if err != nil {
		return fmt.Errorf("namespace %q: %w", rec.Namespace, err)
	}
	if err := n.clock.Check(rec.HLC, n.cfg.MaxClockOffset); err != nil {
		return fmt.Errorf("namespace %q: %w", rec.Namespace, err)
	}
	n.rep.VouchFor(crdt.NodeID(rec.Origin), crdt.NodeID(rec.Bank))
	nr := &namespaceRecord{Config: cfg, HLC: rec.HLC, Origin: rec.Origin, CreatedAt: rec.CreatedMs, Bank: rec.Bank}
	n.clock.Observe(rec.HLC)
	return n.ns.InstallNewer(rec.Namespace, nr)
}

// importCounter checks a counter record and merges it.
func (n *Node) importCounter(rec *ExportRecord) error {
	if err := ValidateNamespace(rec.NS); err != nil {
		return err
	}
	key := rec.Key
	switch {
	case rec.Key != "" && rec.RawKey != nil:
		return fmt.Errorf("%s: a counter has a key or a raw_key, not both", rec.NS)
	case rec.RawKey != nil:
		key = string(rec.RawKey)
		if !keyspace.IsInternal(key) || validReplicatedKey(key) != nil {
			return fmt.Errorf("%s: raw_key is not the key of an internal counter", rec.NS)
		}
	default:
		if err := ValidateKey(key); err != nil {
			return fmt.Errorf("%s: %w", rec.NS, err)
		}
	}
	c := rec.State()
	// The rules of peer input that do not concern origins; every node the
	// state names is vouched for by the file.
	known := replica.Origins{n.id: {}}
	for _, s := range c.Slots {
		known[s.Node] = struct{}{}
	}
	if err := n.rep.CheckPeerState(known, rec.NS, key, n.id, &c); err != nil {
		// The peer wording's sentinel is not this caller's.
		return errors.New(strings.TrimPrefix(err.Error(), ErrInvalidPeerData.Error()+": "))
	}
	nsRec, err := n.ns.ForWrite(rec.NS)
	if err != nil {
		return err
	}
	if expired(nsRec, key, &c, n.cfg.Now(), n.ids) {
		return nil // expired here: keep it dropped, as replication does
	}
	ids := make([]crdt.NodeID, 0, len(c.Slots))
	for _, s := range c.Slots {
		ids = append(ids, s.Node)
	}
	n.rep.VouchFor(ids...)
	return n.mergeImported(rec.NS, key, &c, rec.UpdatedMs)
}

// mergeImported merges a checked state into ns/key under its stripe.
func (n *Node) mergeImported(ns, key string, c *crdt.Counter, updatedMs int64) error {
	ck := keyspace.Composite(nil, ns, key)
	s := n.keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := n.keys.Lookup(s, ck, ns, key, true)
	if err != nil {
		return kinderr.New(ErrUnavailable, err, "read counter: %v", err)
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
	e.C.Merge(*c)
	if e.C.Equal(old) && updatedMs <= e.Updated {
		return nil // nothing new: importing twice changes nothing
	}
	e.Updated = max(e.Updated, updatedMs)
	if mine := e.C.Slot(n.id); mine != old.Slot(n.id) {
		e.Own = true // this node's own slot moved: it leaves as this node's change
	}
	if e.C.Value() != before || e.C.Live() != wasLive {
		n.changedLocked(ns, key, before, e)
	}
	n.keys.MarkDirty(s, e)
	if key[0] == keyspace.KindID {
		n.ids.CompensateLocked(s, ns, key, e)
		if id, k, ok := parseIDKey(key); ok {
			n.recent.add(ns, id, k)
		}
	}
	return nil
}
