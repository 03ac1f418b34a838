package transport

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/msgpackguard"
)

// ErrProtocol is a peer speaking something this node does not understand.
var ErrProtocol = errors.New("gossip: protocol error")

// ProtoVersion is the replication protocol spoken on streams and
// anti-entropy sessions; a hello with another version is refused (structs
// travel as arrays, so a message with a field more does not decode on a
// node that lacks it). Version 2: AEReq and AEResp carry Held. Version 3:
// WireBatch carries Vouch. Version 4: a slot of an id in 1..2^20 is the
// retired slot of that generation (crdt.RetiredID; the retired list's
// calls, countctl cluster forget): a node of version 3 would read it as a
// node's slot and count the forgotten nodes twice; AEResp and AEEnd carry
// Vouch.
const ProtoVersion = 4

// Frame types. A frame is a 4-byte big-endian length n, then n bytes: one
// type byte and a msgpack body, with structs encoded as arrays (fields in
// declaration order) and compact ints. The decoder refuses an array of
// another length than the struct's, so any new field needs a new
// ProtoVersion.
const (
	FrameHello   byte = 1  // Hello: first frame of every connection, dialer to listener
	FrameBatch   byte = 2  // BatchMsg: stream data, sender to receiver
	FrameAck     byte = 3  // AckMsg: receiver to sender, after Apply returned
	FrameAEReq   byte = 4  // AEReq: anti-entropy initiator's vector
	FrameAEChunk byte = 5  // WireBatch: deltas with their ranges, either way
	FrameAEResp  byte = 6  // AEResp: responder's vector, after its chunks
	FrameAEEnd   byte = 7  // AEEnd: initiator done sending its chunks
	FrameAEFin   byte = 8  // empty: responder has applied everything
	FrameAEBusy  byte = 9  // empty: responder refuses, too many sessions
	frameRPCReq  byte = 10 // rpcReqMsg: a peer call, caller to callee
	frameRPCResp byte = 11 // rpcRespMsg: its answer
)

// maxHelloBytes bounds the first frame of a connection: nothing larger is
// read (or allocated) before the peer has said who it is.
const maxHelloBytes = 4 << 10

// Limits on the hello's fields.
const (
	maxNameLen   = 256
	maxRegionLen = 64
)

// Connection kinds in the hello.
const (
	KindStream = 1
	KindAE     = 2
	KindPing   = 3 // a reachability probe: the listener closes at once
	KindRPC    = 4 // peer calls (Transport.Call), one at a time, answered in order
)

type Hello struct {
	Proto  uint8
	Kind   uint8
	Name   string
	Region string
}

// rpcReqMsg is one peer call.
type rpcReqMsg struct {
	Method Method
	Body   []byte
}

// rpcRespMsg answers a call: Body when Err is empty, else the callee's
// error message.
type rpcRespMsg struct {
	Err  string
	Body []byte
}

type BatchMsg struct {
	ID uint64
	// Relay asks the receiver, a bridge, to forward the batch to the other
	// nodes of its region.
	Relay bool
	Batch WireBatch
}

type AckMsg struct {
	ID uint64
}

type VVEntry struct {
	Origin uint64
	Seq    uint64
}

type AEReq struct {
	VV []VVEntry
	// Held lists single changes held past a gap in VV, as (origin, seq).
	Held      []VVEntry
	CfgDigest uint64
	// Full asks for every change the initiator lacks, without the grace
	// (SyncOnce at start-up).
	Full bool
	// Leaving is a leaving node's hand-over: it sends what it holds and
	// takes nothing (the answerer sends no changes).
	Leaving bool
}

type AEResp struct {
	VV        []VVEntry
	Held      []VVEntry // as in AEReq
	CfgDigest uint64
	// Configs are the responder's config records, sent when the digests
	// differ.
	Configs []WireConfig
	// Vouch is what the responder vouches for with its configs: the
	// origins it holds data of and the configs' writers (a config's writer
	// may have left before the receiver came, having written no counter).
	// ProtoVersion 4.
	Vouch []uint64
}

type AEEnd struct {
	Configs []WireConfig
	Vouch   []uint64 // as in AEResp (ProtoVersion 4)
}

// WireBatch is a change.Batch on the wire: deltas grouped by (namespace, origin)
// so that neither is repeated per counter.
type WireBatch struct {
	Ranges  []wireRange
	Groups  []wireGroup
	Configs []WireConfig
	// Vouch is change.Batch.Vouched (ProtoVersion 3).
	Vouch []uint64
}

type wireRange struct {
	Origin uint64
	After  uint64
	Upto   uint64
}

type wireGroup struct {
	NS     string
	Origin uint64
	Items  []wireItem
}

type wireItem struct {
	Key   string
	Seq   uint64
	Slots []wireSlot
	Reset *wireReset
}

type wireSlot struct {
	Node uint64
	P    uint64
	N    uint64
}

type wireReset struct {
	Epoch   uint64
	Node    uint64
	Value   int64
	Deleted bool
	Floor   []wireSlot
}

// WireConfig is a ConfigRecord on the wire.
type WireConfig struct {
	NS      string
	HLC     uint64
	Origin  uint64
	Payload []byte
}

func toWireSlots(s []crdt.Slot) []wireSlot {
	if len(s) == 0 {
		return nil
	}
	out := make([]wireSlot, len(s))
	for i, x := range s {
		out[i] = wireSlot{Node: uint64(x.Node), P: x.P, N: x.N}
	}
	return out
}

// fromWireSlots converts slots and checks the crdt invariant (sorted by
// node, no duplicates) that Merge relies on.
func fromWireSlots(s []wireSlot) ([]crdt.Slot, error) {
	if len(s) == 0 {
		return nil, nil
	}
	out := make([]crdt.Slot, len(s))
	for i, x := range s {
		if i > 0 && x.Node <= s[i-1].Node {
			return nil, fmt.Errorf("%w: slots not sorted by node", ErrProtocol)
		}
		out[i] = crdt.Slot{Node: crdt.NodeID(x.Node), P: x.P, N: x.N}
	}
	return out, nil
}

func ToWireConfigs(cs []change.ConfigRecord) []WireConfig {
	if len(cs) == 0 {
		return nil
	}
	out := make([]WireConfig, len(cs))
	for i, c := range cs {
		out[i] = WireConfig{NS: c.NS, HLC: c.HLC, Origin: uint64(c.Origin), Payload: c.Payload}
	}
	return out
}

func FromWireConfigs(cs []WireConfig) []change.ConfigRecord {
	if len(cs) == 0 {
		return nil
	}
	out := make([]change.ConfigRecord, len(cs))
	for i, c := range cs {
		out[i] = change.ConfigRecord{NS: c.NS, HLC: c.HLC, Origin: crdt.NodeID(c.Origin), Payload: c.Payload}
	}
	return out
}

// ToWire converts a batch, grouping its deltas by (namespace, origin) in
// sorted order so that the encoding is deterministic.
func ToWire(b change.Batch) WireBatch {
	w := WireBatch{Configs: ToWireConfigs(b.Configs)}
	for _, r := range b.Ranges {
		w.Ranges = append(w.Ranges, wireRange{Origin: uint64(r.Origin), After: r.After, Upto: r.Upto})
	}
	for _, id := range b.Vouched {
		w.Vouch = append(w.Vouch, uint64(id))
	}
	if len(b.Deltas) == 0 {
		return w
	}
	idx := make([]int, len(b.Deltas))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		a, b := &b.Deltas[i], &b.Deltas[j]
		return cmp.Or(cmp.Compare(a.NS, b.NS), cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Seq, b.Seq))
	})
	for _, i := range idx {
		d := &b.Deltas[i]
		if n := len(w.Groups); n == 0 || w.Groups[n-1].NS != d.NS || w.Groups[n-1].Origin != uint64(d.Origin) {
			w.Groups = append(w.Groups, wireGroup{NS: d.NS, Origin: uint64(d.Origin)})
		}
		g := &w.Groups[len(w.Groups)-1]
		it := wireItem{Key: d.Key, Seq: d.Seq, Slots: toWireSlots(d.State.Slots)}
		if r := d.State.Reset; r != nil {
			it.Reset = &wireReset{Epoch: r.Epoch, Node: uint64(r.Node), Value: r.Value, Deleted: r.Deleted, Floor: toWireSlots(r.Floor)}
		}
		g.Items = append(g.Items, it)
	}
	return w
}

func FromWire(w WireBatch) (change.Batch, error) {
	b := change.Batch{Configs: FromWireConfigs(w.Configs)}
	for _, r := range w.Ranges {
		b.Ranges = append(b.Ranges, change.Range{Origin: crdt.NodeID(r.Origin), After: r.After, Upto: r.Upto})
	}
	for _, id := range w.Vouch {
		b.Vouched = append(b.Vouched, crdt.NodeID(id))
	}
	n := 0
	for _, g := range w.Groups {
		n += len(g.Items)
	}
	if n > 0 {
		b.Deltas = make([]change.Delta, 0, n)
	}
	for _, g := range w.Groups {
		for _, it := range g.Items {
			slots, err := fromWireSlots(it.Slots)
			if err != nil {
				return change.Batch{}, err
			}
			d := change.Delta{NS: g.NS, Key: it.Key, Origin: crdt.NodeID(g.Origin), Seq: it.Seq, State: crdt.Counter{Slots: slots}}
			if r := it.Reset; r != nil {
				floor, err := fromWireSlots(r.Floor)
				if err != nil {
					return change.Batch{}, err
				}
				d.State.Reset = &crdt.Reset{Epoch: r.Epoch, Node: crdt.NodeID(r.Node), Value: r.Value, Deleted: r.Deleted, Floor: floor}
			}
			b.Deltas = append(b.Deltas, d)
		}
	}
	return b, nil
}

func ToWireVV(vv map[crdt.NodeID]uint64) []VVEntry {
	out := make([]VVEntry, 0, len(vv))
	for o, s := range vv {
		out = append(out, VVEntry{Origin: uint64(o), Seq: s})
	}
	slices.SortFunc(out, func(a, b VVEntry) int { return cmp.Compare(a.Origin, b.Origin) })
	return out
}

func FromWireVV(v []VVEntry) map[crdt.NodeID]uint64 {
	out := make(map[crdt.NodeID]uint64, len(v))
	for _, e := range v {
		out[crdt.NodeID(e.Origin)] = e.Seq
	}
	return out
}

// MaxHeld bounds the held-ahead changes one side lists in an exchange;
// past it the rest are left out (and sent again by the other side, which
// costs traffic, not correctness).
const MaxHeld = 1 << 16

// ToWireHeld lists held-ahead changes, sorted by origin then seq, at most
// MaxHeld of them.
func ToWireHeld(held map[crdt.NodeID][]uint64) []VVEntry {
	var out []VVEntry
	for o, seqs := range held {
		for _, s := range seqs {
			out = append(out, VVEntry{Origin: uint64(o), Seq: s})
		}
	}
	slices.SortFunc(out, func(a, b VVEntry) int {
		return cmp.Or(cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.Seq, b.Seq))
	})
	if len(out) > MaxHeld {
		out = out[:MaxHeld]
	}
	return out
}

// FromWireHeld groups a held list by origin, each origin's seqs sorted (for
// slices.BinarySearch) whatever order the peer sent.
func FromWireHeld(v []VVEntry) map[crdt.NodeID][]uint64 {
	out := make(map[crdt.NodeID][]uint64)
	for _, e := range v {
		out[crdt.NodeID(e.Origin)] = append(out[crdt.NodeID(e.Origin)], e.Seq)
	}
	for _, seqs := range out {
		slices.Sort(seqs)
	}
	return out
}

// ConfigDigest summarises a set of config records, so that anti-entropy
// sends them only when two nodes disagree. Under last-writer-wins,
// (namespace, HLC, origin) identifies a write, so the payload is left out:
// its encoding need not be deterministic.
func ConfigDigest(cs []change.ConfigRecord) uint64 {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b change.ConfigRecord) int { return cmp.Compare(a.NS, b.NS) })
	h := fnv.New64a()
	var buf [8]byte
	for _, c := range cs {
		h.Write([]byte(c.NS))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(buf[:], c.HLC)
		h.Write(buf[:])
		binary.BigEndian.PutUint64(buf[:], uint64(c.Origin))
		h.Write(buf[:])
	}
	return h.Sum64()
}

// Counter receives the bytes and frames a connection moves.
type Counter interface {
	CountSent(region string, bytes int, ae bool)
	CountReceived(region string, bytes int, ae bool)
}

// Conn reads and writes frames on one connection and counts them.
type Conn struct {
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	tc      Counter
	region  atomic.Pointer[string] // the peer's region, for the counters
	ae      atomic.Bool            // an anti-entropy session, for the counters
	timeout time.Duration
	maxSize int
	encBuf  bytes.Buffer
	enc     *msgpack.Encoder
	wLen    [4]byte // used by the writer only
	rLen    [4]byte // used by the reader only (they run in different goroutines)
	body    []byte
}

func NewConn(c net.Conn, tc Counter, region string, timeout time.Duration, maxSize int) *Conn {
	fc := &Conn{
		c:       c,
		r:       bufio.NewReaderSize(c, 16<<10),
		w:       bufio.NewWriterSize(c, 16<<10),
		tc:      tc,
		timeout: timeout,
		maxSize: maxSize,
	}
	fc.region.Store(&region)
	fc.enc = newEncoder(&fc.encBuf)
	return fc
}

// newEncoder returns the encoder of the wire format: structs as arrays,
// integers in their smallest form.
func newEncoder(w io.Writer) *msgpack.Encoder {
	enc := msgpack.NewEncoder(w)
	enc.UseArrayEncodedStructs(true)
	enc.UseCompactInts(true)
	return enc
}

// Marshal encodes v in the wire format.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := newEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SetRegion sets the peer's region, for the traffic counters.
func (fc *Conn) SetRegion(r string) { fc.region.Store(&r) }

// MarkAE counts the connection's traffic as anti-entropy.
func (fc *Conn) MarkAE() { fc.ae.Store(true) }

// writeFrame encodes v and buffers the frame; flush sends it. The write
// deadline is renewed for every frame.
func (fc *Conn) WriteFrame(typ byte, v any) error {
	fc.encBuf.Reset()
	fc.encBuf.WriteByte(typ)
	if v != nil {
		if err := fc.enc.Encode(v); err != nil {
			return fmt.Errorf("gossip: encode frame %d: %w", typ, err)
		}
	}
	n := fc.encBuf.Len()
	if n > fc.maxSize {
		return fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", ErrProtocol, n, fc.maxSize)
	}
	binary.BigEndian.PutUint32(fc.wLen[:], uint32(n))
	fc.c.SetWriteDeadline(time.Now().Add(fc.timeout))
	if _, err := fc.w.Write(fc.wLen[:]); err != nil {
		return err
	}
	if _, err := fc.w.Write(fc.encBuf.Bytes()); err != nil {
		return err
	}
	fc.tc.CountSent(*fc.region.Load(), n+4, fc.ae.Load())
	return nil
}

// Flush sends the buffered frames.
func (fc *Conn) Flush() error {
	fc.c.SetWriteDeadline(time.Now().Add(fc.timeout))
	return fc.w.Flush()
}

// Send writes one frame and flushes it.
func (fc *Conn) Send(typ byte, v any) error {
	if err := fc.WriteFrame(typ, v); err != nil {
		return err
	}
	return fc.Flush()
}

// readFrame reads one frame; the body is valid until the next call. A zero
// timeout waits without a deadline (an idle stream).
func (fc *Conn) ReadFrame(timeout time.Duration) (byte, []byte, error) {
	if timeout > 0 {
		fc.c.SetReadDeadline(time.Now().Add(timeout))
	} else {
		fc.c.SetReadDeadline(time.Time{})
	}
	if _, err := io.ReadFull(fc.r, fc.rLen[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(fc.rLen[:]))
	if n < 1 || n > fc.maxSize {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes (limit %d)", ErrProtocol, n, fc.maxSize)
	}
	if timeout > 0 {
		fc.c.SetReadDeadline(time.Now().Add(timeout))
	}
	if err := fc.readBody(n); err != nil {
		return 0, nil, err
	}
	fc.tc.CountReceived(*fc.region.Load(), n+4, fc.ae.Load())
	return fc.body[0], fc.body[1:], nil
}

// readBody reads a body of n bytes into fc.body. The buffer grows with
// the bytes that actually arrive, a chunk at a time, so that a peer that
// announces a large frame and sends nothing costs no more than one chunk.
func (fc *Conn) readBody(n int) error {
	const chunk = 1 << 20
	if cap(fc.body) >= n {
		fc.body = fc.body[:n]
		_, err := io.ReadFull(fc.r, fc.body)
		return err
	}
	fc.body = fc.body[:0]
	for len(fc.body) < n {
		step := min(n-len(fc.body), chunk)
		fc.body = slices.Grow(fc.body, step)
		start := len(fc.body)
		fc.body = fc.body[:start+step]
		if _, err := io.ReadFull(fc.r, fc.body[start:]); err != nil {
			return err
		}
	}
	return nil
}

// readMsg reads a frame that must be of type want and decodes it into v.
func (fc *Conn) ReadMsg(timeout time.Duration, want byte, v any) error {
	typ, body, err := fc.ReadFrame(timeout)
	if err != nil {
		return err
	}
	if typ != want {
		return fmt.Errorf("%w: got frame type %d, want %d", ErrProtocol, typ, want)
	}
	return Decode(body, v)
}

func Decode(body []byte, v any) error {
	if v == nil {
		return nil
	}
	// The decoder recurses when it skips a nested value: a few MiB of
	// nesting would overflow the stack and kill the process.
	if err := msgpackguard.Check(body, msgpackguard.MaxDepth); err != nil {
		return fmt.Errorf("%w: Decode: %w", ErrProtocol, err)
	}
	// A decoder of its own, not msgpack's pool: pooled decoders keep the
	// largest buffer they ever grew.
	if err := msgpack.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		return fmt.Errorf("%w: Decode: %w", ErrProtocol, err)
	}
	return nil
}

func (fc *Conn) Close() error { return fc.c.Close() }
