package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// Export and import (backup and restore, docs/operations.md).
//
// An export is a stream of JSON lines (NDJSON): a header, then every
// namespace's config, then one record per stored counter with its full CRDT
// state, then an end record with the counts, so that a file cut short is
// recognised. A counter record holds what replication would send: the slots
// (node id, P, N), the reset with its epoch and floor (a deleted counter's
// tombstone is such a reset), and the time of the last change. Internal
// counters (time buckets, label series, sketch cells, idempotency records,
// rights of bounded counters) are records too, with their raw key in
// base64, so that windows, series, top-K of approximate namespaces, the ids
// of the idempotency window and the bounds' rights survive a restore.
//
// An import merges each record into this node exactly as a peer's state
// is merged (per-slot maximum, the later reset wins, floors merge), so
// importing a file twice changes nothing and a node that holds newer state
// keeps it. Each record is checked first with the rules of peer input
// (peerinput.go): states bounded and well-formed, id records not applied in
// the future, a reset epoch at most maxEpochAhead past this node's, and a
// namespace config's clock at most Config.MaxClockOffset ahead of this
// node's (a config from last week is fine; one from the future is forged).
// Two rules of peer input are different on purpose:
//   - Origins: a peer may only name nodes this node knows. A backup names
//     the nodes that wrote it, which may be long gone or from another mesh,
//     so the file (sent with an admin token) vouches for them, as a range
//     in anti-entropy vouches for an origin: they become known origins of
//     this node (version-vector entries at sequence 0, which claim nothing
//     held), and quorum states that name them are accepted here.
//   - This node's own slot: a peer may not raise it (only this node writes
//     it), but restoring a node's own backup after it lost its disk must.
//     The import raises it under the counter's lock, so this node's later
//     writes go on top of it, and the change leaves as this node's own.
//
// A bad record stops the import with ErrInvalidArgument naming its line;
// nothing of that record is applied, and every record before it is durable
// when the error returns.

// ExportFormat is the version of the export stream this node writes and
// reads (the header's "format").
const ExportFormat = 1

// Record types of an export stream.
const (
	RecordHeader    = "header"
	RecordNamespace = "namespace"
	RecordCounter   = "counter"
	RecordEnd       = "end"
)

// MaxExportLine bounds one line of an import: a counter of crdt.DefaultMaxSlots
// slots and as many floor entries fits.
const MaxExportLine = 2 << 20

// exportChunk is how many counters one store scan reads before they are
// written out, so that no iterator stays open while a slow client reads.
const exportChunk = 1024

// importSyncEvery is how many counters an import merges between two
// tickets for their commit (importer.pace).
const importSyncEvery = 4096

// ExportRecord is one line of an export stream. Type says which fields it
// uses.
type ExportRecord struct {
	Type string `json:"type"`

	// header
	Format     int    `json:"format,omitempty"`
	Node       string `json:"node,omitempty"`        // the node that wrote the export
	ExportedAt string `json:"exported_at,omitempty"` // RFC 3339
	Only       string `json:"only_ns,omitempty"`     // the namespace exported; empty for all

	// namespace (a config and the clock that orders it against others)
	Namespace string           `json:"namespace,omitempty"`
	Config    *NamespaceConfig `json:"config,omitempty"`
	HLC       uint64           `json:"hlc,omitempty"`
	Origin    uint64           `json:"origin,omitempty,string"`
	CreatedMs int64            `json:"created_ms,omitempty"`
	Bank      uint64           `json:"bank,omitempty,string"`

	// counter: Key for a counter of a user key; Kind and RawKey for an
	// internal one.
	NS        string       `json:"ns,omitempty"`
	Key       string       `json:"key,omitempty"`
	Kind      string       `json:"kind,omitempty"`
	RawKey    []byte       `json:"raw_key,omitempty"`
	Slots     []ExportSlot `json:"slots,omitempty"`
	Reset     *ExportReset `json:"reset,omitempty"`
	UpdatedMs int64        `json:"updated_ms,omitempty"`

	// end
	Namespaces int64 `json:"namespaces,omitempty"`
	Counters   int64 `json:"counters,omitempty"`
}

// ExportSlot is one node's slot: the totals of its increments (P) and
// decrements (N). Node ids are strings: they use all 64 bits, beyond what
// a JSON number keeps in most readers.
type ExportSlot struct {
	Node uint64 `json:"node,string"`
	P    uint64 `json:"p"`
	N    uint64 `json:"n"`
}

// ExportReset is a counter's latest reset or delete (crdt.Reset).
type ExportReset struct {
	Epoch   uint64       `json:"epoch"`
	Node    uint64       `json:"node,string"`
	Value   int64        `json:"value"`
	Deleted bool         `json:"deleted,omitempty"`
	Floor   []ExportSlot `json:"floor,omitempty"`
}

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

// ExportStats counts what an export wrote or an import applied.
type ExportStats struct {
	Namespaces int64
	Counters   int64
}

var kindNames = map[byte]string{
	kindBucket: "bucket", kindSketch: "sketch", kindSeries: "series", kindID: "id", kindRights: "rights",
}

func exportSlots(slots []crdt.Slot) []ExportSlot {
	if len(slots) == 0 {
		return nil
	}
	out := make([]ExportSlot, len(slots))
	for i, s := range slots {
		out[i] = ExportSlot{Node: uint64(s.Node), P: s.P, N: s.N}
	}
	return out
}

func importSlots(slots []ExportSlot) []crdt.Slot {
	if len(slots) == 0 {
		return nil
	}
	out := make([]crdt.Slot, len(slots))
	for i, s := range slots {
		out[i] = crdt.Slot{Node: crdt.NodeID(s.Node), P: s.P, N: s.N}
	}
	return out
}

// counterRecord builds the record of a stored counter.
func counterRecord(ns, key string, r store.Record) ExportRecord {
	rec := ExportRecord{Type: RecordCounter, NS: ns, Slots: exportSlots(r.Counter.Slots), UpdatedMs: r.UpdatedMs}
	if isInternalKey(key) {
		rec.Kind = kindNames[key[0]]
		rec.RawKey = []byte(key)
	} else {
		rec.Key = key
	}
	if rs := r.Counter.Reset; rs != nil {
		rec.Reset = &ExportReset{Epoch: rs.Epoch, Node: uint64(rs.Node), Value: rs.Value, Deleted: rs.Deleted, Floor: exportSlots(rs.Floor)}
	}
	return rec
}

// Export writes every namespace config and every counter of this node (of
// the namespaces opts selects) to w as an export stream. It holds
// every change made before it was called; counters change while it runs,
// and a record holds its counter's state as of some moment after the call
// (states only grow, so each one merges as well as any other). An unknown
// namespace is ErrNotFound, and a node that is not ready (catching up after
// a restart, or failed) ErrUnavailable, before anything is written.
func (n *Node) Export(ctx context.Context, opts ExportOptions, w io.Writer) (ExportStats, error) {
	var stats ExportStats
	if !n.Ready() {
		return stats, fmt.Errorf("%w: the node is not ready (catching up with its peers, or its storage failed); export from a ready node", ErrUnavailable)
	}
	var nss []Namespace
	if opts.NS != "" {
		one, err := n.GetNamespace(opts.NS)
		if err != nil {
			return stats, err
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
		return stats, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	put := func(rec *ExportRecord) error {
		if err := enc.Encode(rec); err != nil {
			return fmt.Errorf("node: write export: %w", err)
		}
		return nil
	}
	header := ExportRecord{Type: RecordHeader, Format: ExportFormat, Node: n.cfg.Name,
		ExportedAt: n.cfg.Now().UTC().Format(time.RFC3339Nano), Only: opts.NS}
	if err := put(&header); err != nil {
		return stats, err
	}
	for _, ns := range nss {
		rec := n.namespaceRecordOf(ns.Name)
		if rec == nil {
			continue // gone since it was listed
		}
		cfg := rec.Config
		if err := put(&ExportRecord{Type: RecordNamespace, Namespace: ns.Name, Config: &cfg, HLC: rec.HLC,
			Origin: rec.Origin, CreatedMs: rec.CreatedAt, Bank: rec.Bank}); err != nil {
			return stats, err
		}
		stats.Namespaces++
	}
	type item struct {
		key string
		r   store.Record
	}
	chunk := make([]item, 0, exportChunk)
	for _, ns := range nss {
		after := ""
		for {
			chunk = chunk[:0]
			err := n.store.ScanRecords(ns.Name, "", after, func(key string, r store.Record) bool {
				chunk = append(chunk, item{key, r})
				return len(chunk) < exportChunk
			})
			if err != nil {
				return stats, fmt.Errorf("%w: export %s: %v", ErrUnavailable, ns.Name, err)
			}
			for i := range chunk {
				rec := counterRecord(ns.Name, chunk[i].key, chunk[i].r)
				if err := put(&rec); err != nil {
					return stats, err
				}
				stats.Counters++
			}
			if len(chunk) < exportChunk {
				break
			}
			if err := ctx.Err(); err != nil {
				return stats, fmt.Errorf("%w: export cancelled: %v", ErrUnavailable, err)
			}
			after = chunk[len(chunk)-1].key
		}
	}
	if err := put(&ExportRecord{Type: RecordEnd, Namespaces: stats.Namespaces, Counters: stats.Counters}); err != nil {
		return stats, err
	}
	if err := bw.Flush(); err != nil {
		return stats, fmt.Errorf("node: write export: %w", err)
	}
	return stats, nil
}

// namespaceRecordOf returns the record of ns, or nil.
func (n *Node) namespaceRecordOf(ns string) *namespaceRecord {
	n.ns.RLock()
	defer n.ns.RUnlock()
	return n.ns.m[ns]
}

// importer is the state of one Import.
type importer struct {
	n       *Node
	ctx     context.Context
	allow   func(ns string) error // nil: every namespace
	line    int
	stats   ExportStats
	pending int           // counters merged since the last ticket
	ticket  *store.Ticket // the commit of the chunk before the current one
	ended   bool
}

// Import reads an export stream from r and merges every record into this
// node (see the top of this file). It returns what it applied. A bad line
// stops it with an error wrapping ErrInvalidArgument that names the line and
// says what was applied before it; the records before it are durable then.
func (n *Node) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ExportStats, error) {
	if err := n.checkWritable(0); err != nil {
		return ExportStats{}, err
	}
	im := &importer{n: n, ctx: ctx, allow: opts.Allow}
	err := im.run(r)
	if errSync := im.sync(); err == nil {
		err = errSync
	}
	return im.stats, err
}

func (im *importer) run(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxExportLine)
	for sc.Scan() {
		im.line++
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := im.record(line); err != nil {
			return err
		}
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return im.bad(im.line+1, fmt.Sprintf("longer than %d bytes", MaxExportLine))
	case err != nil:
		// The client went away or the body broke off.
		return fmt.Errorf("%w: reading the import after line %d: %v; %s", ErrUnavailable, im.line, err, im.applied())
	case im.line == 0:
		return fmt.Errorf("%w: the import is empty; send a file written by countctl export (GET /v1/export)", ErrInvalidArgument)
	case !im.ended:
		return im.bad(im.line, "the stream ends without its end record: the file was cut short (export it again)")
	}
	return nil
}

// applied says what was applied before the current line.
func (im *importer) applied() string {
	return fmt.Sprintf("%d namespace configs and %d counters before it were applied", im.stats.Namespaces, im.stats.Counters)
}

// bad is the error of a refused line.
func (im *importer) bad(line int, what string) error {
	return fmt.Errorf("%w: import line %d: %s; %s, nothing after it", ErrInvalidArgument, line, what, im.applied())
}

// record decodes and applies one line.
func (im *importer) record(line []byte) error {
	var rec ExportRecord
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return im.bad(im.line, "malformed JSON: "+err.Error())
	}
	if dec.More() {
		return im.bad(im.line, "more than one JSON value on the line")
	}
	switch {
	case im.ended:
		return im.bad(im.line, "data after the end record")
	case im.line == 1 && rec.Type != RecordHeader:
		return im.bad(im.line, fmt.Sprintf("the first line must be the header of an export (type %q), got type %q", RecordHeader, rec.Type))
	}
	switch rec.Type {
	case RecordHeader:
		if im.line != 1 {
			return im.bad(im.line, "a header after the first line")
		}
		if rec.Format != ExportFormat {
			return im.bad(im.line, fmt.Sprintf("export format %d; this node reads format %d", rec.Format, ExportFormat))
		}
		return nil
	case RecordNamespace:
		if err := im.allowed(rec.Namespace); err != nil {
			return err
		}
		if err := im.n.importNamespace(&rec); err != nil {
			return im.bad(im.line, err.Error())
		}
		im.stats.Namespaces++
		return nil
	case RecordCounter:
		if err := im.allowed(rec.NS); err != nil {
			return err
		}
		if err := im.n.importCounter(&rec); err != nil {
			if errors.Is(err, ErrUnavailable) {
				return fmt.Errorf("import line %d: %w; %s", im.line, err, im.applied())
			}
			return im.bad(im.line, err.Error())
		}
		im.stats.Counters++
		im.pending++
		if im.pending >= importSyncEvery {
			return im.pace()
		}
		return nil
	case RecordEnd:
		if rec.Namespaces != im.stats.Namespaces || rec.Counters != im.stats.Counters {
			return im.bad(im.line, fmt.Sprintf("the end record counts %d namespace configs and %d counters, the stream held %d and %d: the file is damaged",
				rec.Namespaces, rec.Counters, im.stats.Namespaces, im.stats.Counters))
		}
		im.ended = true
		return nil
	}
	return im.bad(im.line, fmt.Sprintf("unknown record type %q (want %s, %s, %s or %s)", rec.Type, RecordHeader, RecordNamespace, RecordCounter, RecordEnd))
}

// allowed asks ImportOptions.Allow about the record's namespace.
func (im *importer) allowed(ns string) error {
	if im.allow == nil {
		return nil
	}
	if err := im.allow(ns); err != nil {
		return fmt.Errorf("import line %d: %w; %s", im.line, err, im.applied())
	}
	return nil
}

// pace ends a chunk of merged counters: it takes a ticket for their commit
// and waits until the previous chunk's is written, so that merging overlaps
// the commit and at most two chunks wait for the committer. The chunks are
// not fsynced one by one; sync makes everything durable at the end.
func (im *importer) pace() error {
	prev := im.ticket
	im.ticket = im.n.committer.Ticket(false)
	im.pending = 0
	if prev == nil {
		return nil
	}
	if err := prev.WaitVisible(im.ctx); err != nil {
		return fmt.Errorf("import line %d: %w", im.line, im.n.ackError(err))
	}
	return nil
}

// sync waits until every counter merged so far is durable.
func (im *importer) sync() error {
	if im.pending == 0 && im.ticket == nil {
		return nil
	}
	im.pending = 0
	im.ticket = nil
	if err := im.n.committer.Ticket(true).Wait(im.ctx); err != nil {
		return fmt.Errorf("import line %d: %w", im.line, im.n.ackError(err))
	}
	return nil
}

// vouchFor makes the given origins known to this node (see the top of this
// file): entries at sequence 0 of the version vector, which claim nothing.
func (n *Node) vouchFor(ids ...crdt.NodeID) {
	n.vv.Lock()
	defer n.vv.Unlock()
	for _, id := range ids {
		if _, ok := n.vv.m[id]; !ok && id != 0 {
			n.vv.m[id] = 0
		}
	}
}

// importNamespace installs a namespace config of an export when it is newer
// than this node's (last writer wins by hybrid logical clock, as
// replication does).
func (n *Node) importNamespace(rec *ExportRecord) error {
	if err := ValidateNamespace(rec.Namespace); err != nil {
		return err
	}
	if rec.Config == nil {
		return fmt.Errorf("namespace %q has no config", rec.Namespace)
	}
	cfg, err := rec.Config.normalize()
	if err != nil {
		return fmt.Errorf("namespace %q: %w", rec.Namespace, err)
	}
	if err := n.clock.Check(rec.HLC, n.cfg.MaxClockOffset); err != nil {
		return fmt.Errorf("namespace %q: %w", rec.Namespace, err)
	}
	n.vouchFor(crdt.NodeID(rec.Origin), crdt.NodeID(rec.Bank))
	nr := &namespaceRecord{Config: cfg, HLC: rec.HLC, Origin: rec.Origin, CreatedAt: rec.CreatedMs, Bank: rec.Bank}
	n.clock.Observe(rec.HLC)
	return n.installNewer(rec.Namespace, nr)
}

// installNewer persists nr as the config of ns unless this node's is as
// new (last writer wins by HLC, then origin).
func (n *Node) installNewer(ns string, nr *namespaceRecord) error {
	n.ns.Lock()
	defer n.ns.Unlock()
	if cur := n.ns.m[ns]; cur != nil && (cur.HLC > nr.HLC || (cur.HLC == nr.HLC && cur.Origin >= nr.Origin)) {
		return nil
	}
	return n.persistNamespaceLocked(ns, nr)
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
		if !isInternalKey(key) || validReplicatedKey(key) != nil {
			return fmt.Errorf("%s: raw_key is not the key of an internal counter", rec.NS)
		}
	default:
		if err := ValidateKey(key); err != nil {
			return fmt.Errorf("%s: %w", rec.NS, err)
		}
	}
	c := crdt.Counter{Slots: importSlots(rec.Slots)}
	if r := rec.Reset; r != nil {
		c.Reset = &crdt.Reset{Epoch: r.Epoch, Node: crdt.NodeID(r.Node), Value: r.Value, Deleted: r.Deleted, Floor: importSlots(r.Floor)}
	}
	// The rules of peer input that do not concern origins; every node the
	// state names is vouched for by the file.
	known := origins{n.id: {}}
	for _, s := range c.Slots {
		known[s.Node] = struct{}{}
	}
	if err := n.checkPeerState(known, rec.NS, key, n.id, &c); err != nil {
		// The peer wording's sentinel is not this caller's.
		return errors.New(strings.TrimPrefix(err.Error(), ErrInvalidPeerData.Error()+": "))
	}
	nsRec, err := n.namespaceForWrite(rec.NS)
	if err != nil {
		return err
	}
	if n.bucketExpired(nsRec, key) || (key[0] == kindID && n.idExpired(nsRec, &c)) {
		return nil // expired here: keep it dropped, as replication does
	}
	ids := make([]crdt.NodeID, 0, len(c.Slots))
	for _, s := range c.Slots {
		ids = append(ids, s.Node)
	}
	n.vouchFor(ids...)
	return n.mergeImported(rec.NS, key, &c, rec.UpdatedMs)
}

// mergeImported merges a checked state into ns/key under its stripe.
func (n *Node) mergeImported(ns, key string, c *crdt.Counter, updatedMs int64) error {
	ck := compositeKey(nil, ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := n.lookupLocked(s, ck, ns, key, true)
	if err != nil {
		return fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	var epoch uint64
	if e.c.Reset != nil {
		epoch = e.c.Reset.Epoch
	}
	if c.Reset != nil && c.Reset.Epoch > epoch+maxEpochAhead {
		return fmt.Errorf("%s/%q: reset epoch %d is more than %d past this node's %d", ns, key, c.Reset.Epoch, uint64(maxEpochAhead), epoch)
	}
	old := e.c.Clone()
	before, wasLive := old.Value(), old.Live()
	e.c.Merge(*c)
	if e.c.Equal(old) && updatedMs <= e.updated {
		return nil // nothing new: importing twice changes nothing
	}
	e.updated = max(e.updated, updatedMs)
	if mine := e.c.Slot(n.id); mine != old.Slot(n.id) {
		e.own = true // this node's own slot moved: it leaves as this node's change
	}
	if e.c.Value() != before || e.c.Live() != wasLive {
		n.changedLocked(ns, key, before, e)
	}
	n.markDirtyLocked(s, e)
	if key[0] == kindID {
		n.compensateLocked(s, ns, key, e)
		if id, k, ok := parseIDKey(key); ok {
			n.recent.add(ns, id, k)
		}
	}
	return nil
}
