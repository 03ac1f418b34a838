package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// Format is the version of the export stream this package writes and
// reads (the header's "format").
const Format = 1

// Record types of an export stream.
const (
	RecordHeader    = "header"
	RecordNamespace = "namespace"
	RecordCounter   = "counter"
	RecordEnd       = "end"
)

// MaxLine bounds one line of an import: a counter of crdt.DefaultMaxSlots
// slots and as many floor entries fits.
const MaxLine = 2 << 20

// exportChunk is how many counters one store scan reads before they are
// written out, so that no iterator stays open while a slow client reads.
const exportChunk = 1024

// importSyncEvery is how many counters an import merges between two
// tickets for their commit (importer.pace).
const importSyncEvery = 4096

// Record is one line of an export stream. Type says which fields it
// uses.
type Record struct {
	Type string `json:"type"`

	// header
	Format     int    `json:"format,omitempty"`
	Node       string `json:"node,omitempty"`        // the node that wrote the export
	ExportedAt string `json:"exported_at,omitempty"` // RFC 3339
	Only       string `json:"only_ns,omitempty"`     // the namespace exported; empty for all

	// namespace (a config and the clock that orders it against others)
	Namespace string          `json:"namespace,omitempty"`
	Config    json.RawMessage `json:"config,omitempty"` // the node's NamespaceConfig
	HLC       uint64          `json:"hlc,omitempty"`
	Origin    uint64          `json:"origin,omitempty,string"`
	CreatedMs int64           `json:"created_ms,omitempty"`
	Bank      uint64          `json:"bank,omitempty,string"`

	// counter: Key for a counter of a user key; Kind and RawKey for an
	// internal one.
	NS        string `json:"ns,omitempty"`
	Key       string `json:"key,omitempty"`
	Kind      string `json:"kind,omitempty"`
	RawKey    []byte `json:"raw_key,omitempty"`
	Slots     []Slot `json:"slots,omitempty"`
	Reset     *Reset `json:"reset,omitempty"`
	UpdatedMs int64  `json:"updated_ms,omitempty"`

	// end
	Namespaces int64 `json:"namespaces,omitempty"`
	Counters   int64 `json:"counters,omitempty"`
}

// Slot is one node's slot: the totals of its increments (P) and
// decrements (N). Node ids are strings: they use all 64 bits, beyond what
// a JSON number keeps in most readers.
type Slot struct {
	Node uint64 `json:"node,string"`
	P    uint64 `json:"p"`
	N    uint64 `json:"n"`
}

// Reset is a counter's latest reset or delete (crdt.Reset).
type Reset struct {
	Epoch   uint64 `json:"epoch"`
	Node    uint64 `json:"node,string"`
	Value   int64  `json:"value"`
	Deleted bool   `json:"deleted,omitempty"`
	Floor   []Slot `json:"floor,omitempty"`
}

// Stats counts what an export wrote or an import applied.
type Stats struct {
	Namespaces int64
	Counters   int64
}

var kindNames = map[byte]string{
	keyspace.KindBucket: "bucket", keyspace.KindSketch: "sketch", keyspace.KindSeries: "series", keyspace.KindID: "id", keyspace.KindRights: "rights",
}

func exportSlots(slots []crdt.Slot) []Slot {
	if len(slots) == 0 {
		return nil
	}
	out := make([]Slot, len(slots))
	for i, s := range slots {
		out[i] = Slot{Node: uint64(s.Node), P: s.P, N: s.N}
	}
	return out
}

func importSlots(slots []Slot) []crdt.Slot {
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
func counterRecord(ns, key string, r store.Record) Record {
	rec := Record{Type: RecordCounter, NS: ns, Slots: exportSlots(r.Counter.Slots), UpdatedMs: r.UpdatedMs}
	if keyspace.IsInternal(key) {
		rec.Kind = kindNames[key[0]]
		rec.RawKey = []byte(key)
	} else {
		rec.Key = key
	}
	if rs := r.Counter.Reset; rs != nil {
		rec.Reset = &Reset{Epoch: rs.Epoch, Node: uint64(rs.Node), Value: rs.Value, Deleted: rs.Deleted, Floor: exportSlots(rs.Floor)}
	}
	return rec
}

// Namespace is one namespace config to write, with the clock that orders
// it against others.
type Namespace struct {
	Name      string
	Config    json.RawMessage
	HLC       uint64
	Origin    uint64
	CreatedMs int64
	Bank      uint64
}

// Header is what the header record of a stream says.
type Header struct {
	Node string    // the node that writes the export
	At   time.Time // when
	Only string    // the namespace exported; empty for all
}

// Write writes an export stream to w: the header, the namespace configs
// nss, then every counter of those namespaces as st holds it, then the end
// record. The caller has checkpointed, so that st holds every change made
// before the export was asked for.
func Write(ctx context.Context, w io.Writer, st *store.Store, h Header, nss []Namespace) (Stats, error) {
	var stats Stats
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	put := func(rec *Record) error {
		if err := enc.Encode(rec); err != nil {
			return fmt.Errorf("node: write export: %w", err)
		}
		return nil
	}
	header := Record{Type: RecordHeader, Format: Format, Node: h.Node,
		ExportedAt: h.At.UTC().Format(time.RFC3339Nano), Only: h.Only}
	if err := put(&header); err != nil {
		return stats, err
	}
	for _, ns := range nss {
		if err := put(&Record{Type: RecordNamespace, Namespace: ns.Name, Config: ns.Config, HLC: ns.HLC,
			Origin: ns.Origin, CreatedMs: ns.CreatedMs, Bank: ns.Bank}); err != nil {
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
			err := st.ScanRecords(ns.Name, "", after, func(key string, r store.Record) bool {
				chunk = append(chunk, item{key, r})
				return len(chunk) < exportChunk
			})
			if err != nil {
				return stats, kinderr.New(nodeerr.ErrUnavailable, err, "export %s: %v", ns.Name, err)
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
				return stats, kinderr.New(nodeerr.ErrUnavailable, err, "export cancelled: %v", err)
			}
			after = chunk[len(chunk)-1].key
		}
	}
	if err := put(&Record{Type: RecordEnd, Namespaces: stats.Namespaces, Counters: stats.Counters}); err != nil {
		return stats, err
	}
	if err := bw.Flush(); err != nil {
		return stats, fmt.Errorf("node: write export: %w", err)
	}
	return stats, nil
}

// State returns the counter state a counter record holds.
func (rec *Record) State() crdt.Counter {
	c := crdt.Counter{Slots: importSlots(rec.Slots)}
	if r := rec.Reset; r != nil {
		c.Reset = &crdt.Reset{Epoch: r.Epoch, Node: crdt.NodeID(r.Node), Value: r.Value, Deleted: r.Deleted, Floor: importSlots(r.Floor)}
	}
	return c
}

// Target is where Read applies the records of a stream.
type Target struct {
	// Allow, when set, is asked about the namespace of every record; an
	// error from it stops the import at that record (it is wrapped).
	Allow func(ns string) error
	// Namespace installs a namespace record; Counter merges a counter
	// record. An error wrapping ErrUnavailable stops the import as the
	// node's failure; any other refuses the record's line.
	Namespace func(rec *Record) error
	Counter   func(rec *Record) error
	// Ticket takes a ticket of the group commit (with sync, one that
	// waits for the fsync); AckError turns a failed wait into the error a
	// client sees.
	Ticket   func(sync bool) *store.Ticket
	AckError func(error) error
}

// importer is the state of one Read.
type importer struct {
	t       Target
	ctx     context.Context
	line    int
	stats   Stats
	pending int           // counters merged since the last ticket
	ticket  *store.Ticket // the commit of the chunk before the current one
	ended   bool
}

// Read reads an export stream from r and applies every record to t. It
// returns what it applied. A bad line stops it with an error wrapping
// ErrInvalidArgument that names the line and says what was applied before
// it; the records before it are durable then.
func Read(ctx context.Context, r io.Reader, t Target) (Stats, error) {
	im := &importer{t: t, ctx: ctx}
	err := im.run(r)
	if errSync := im.sync(); err == nil {
		err = errSync
	}
	return im.stats, err
}

func (im *importer) run(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
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
		return im.bad(im.line+1, fmt.Sprintf("longer than %d bytes", MaxLine))
	case err != nil:
		// The client went away or the body broke off.
		return kinderr.New(nodeerr.ErrUnavailable, err, "reading the import after line %d: %v; %s", im.line, err, im.applied())
	case im.line == 0:
		return fmt.Errorf("%w: the import is empty; send a file written by countctl export (GET /v1/export)", nodeerr.ErrInvalidArgument)
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
	return fmt.Errorf("%w: import line %d: %s; %s, nothing after it", nodeerr.ErrInvalidArgument, line, what, im.applied())
}

// record decodes and applies one line.
func (im *importer) record(line []byte) error {
	var rec Record
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
		if rec.Format != Format {
			return im.bad(im.line, fmt.Sprintf("export format %d; this node reads format %d", rec.Format, Format))
		}
		return nil
	case RecordNamespace:
		if err := im.allowed(rec.Namespace); err != nil {
			return err
		}
		if err := im.t.Namespace(&rec); err != nil {
			return im.bad(im.line, err.Error())
		}
		im.stats.Namespaces++
		return nil
	case RecordCounter:
		if err := im.allowed(rec.NS); err != nil {
			return err
		}
		if err := im.t.Counter(&rec); err != nil {
			if errors.Is(err, nodeerr.ErrUnavailable) {
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

// allowed asks Target.Allow about the record's namespace.
func (im *importer) allowed(ns string) error {
	if im.t.Allow == nil {
		return nil
	}
	if err := im.t.Allow(ns); err != nil {
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
	im.ticket = im.t.Ticket(false)
	im.pending = 0
	if prev == nil {
		return nil
	}
	if err := prev.WaitVisible(im.ctx); err != nil {
		return fmt.Errorf("import line %d: %w", im.line, im.t.AckError(err))
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
	if err := im.t.Ticket(true).Wait(im.ctx); err != nil {
		return fmt.Errorf("import line %d: %w", im.line, im.t.AckError(err))
	}
	return nil
}
