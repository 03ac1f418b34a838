package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/countmesh/countmesh/node/export"
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
		Namespace: n.imports.Namespace,
		Counter: func(rec *export.Record) error {
			// A counter of a sharded namespace this node released comes
			// back from an owner first, as for a write (copies.go): a
			// dump's older total of this node's slot would otherwise
			// count as its latest.
			if rec.Key != "" && n.ReplicasOf(rec.NS) > 0 {
				unlock, err := n.guardReleased(ctx, []BatchOp{{NS: rec.NS, Key: rec.Key}})
				if err != nil {
					return err
				}
				defer unlock()
			}
			return n.imports.Counter(rec)
		},
		Ticket:   n.committer.Ticket,
		AckError: n.ackError,
	})
}
