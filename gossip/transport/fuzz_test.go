package transport

import (
	"bytes"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// bytesConn is a net.Conn that reads a fixed input and discards writes.
type bytesConn struct{ r io.Reader }

func (c *bytesConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *bytesConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzPeerFrames reads a byte stream as the peer listener does, frame by
// frame, and decodes each frame as the message its type announces. No
// input may panic or allocate past the frame limit; a batch that decodes
// is handed on only with its slots sorted and distinct (the invariant
// crdt's merge relies on).
func FuzzPeerFrames(f *testing.F) {
	frame := func(typ byte, v any) []byte {
		body, err := Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		out := []byte{0, 0, 0, 0, typ}
		out = append(out, body...)
		n := len(out) - 4
		out[0], out[1], out[2], out[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return out
	}
	b := change.Batch{
		Ranges:  []change.Range{{Origin: 7, After: 0, Upto: 2}},
		Deltas:  []change.Delta{{NS: "pages", Key: "home", Origin: 7, Seq: 2, State: crdt.Counter{Slots: []crdt.Slot{{Node: 7, P: 3}}}}},
		Configs: []change.ConfigRecord{{NS: "pages", HLC: 1, Origin: 7, Payload: []byte("{}")}},
	}
	f.Add(append(frame(FrameHello, &Hello{Proto: ProtoVersion, Kind: KindStream, Name: "a", Region: "r"}), frame(FrameBatch, &BatchMsg{ID: 1, Batch: ToWire(b)})...))
	f.Add(frame(frameRPCReq, &rpcReqMsg{Method: MethodLease, Body: []byte{0x90}}))
	f.Add(frame(FrameAEReq, &AEReq{VV: []VVEntry{{Origin: 1, Seq: 2}}, Held: []VVEntry{{Origin: 1, Seq: 4}}, Full: true}))
	f.Add(frame(FrameAEResp, &AEResp{VV: []VVEntry{{Origin: 1, Seq: 2}}, Held: []VVEntry{{Origin: 3, Seq: 9}, {Origin: 3, Seq: 7}}}))
	f.Add([]byte{0, 0, 0, 13, 2, 0x93, 0x01, 0xc2, 0x93, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := NewConn(&bytesConn{r: bytes.NewReader(data)}, nopCounter{}, "", time.Second, 1<<20)
		for range 16 {
			typ, body, err := fc.ReadFrame(time.Second)
			if err != nil {
				return
			}
			switch typ {
			case FrameHello:
				var h Hello
				_ = Decode(body, &h)
			case FrameBatch:
				var m BatchMsg
				if Decode(body, &m) == nil {
					checkBatch(t, m.Batch)
				}
			case FrameAEChunk:
				var w WireBatch
				if Decode(body, &w) == nil {
					checkBatch(t, w)
				}
			case FrameAEReq:
				var m AEReq
				if Decode(body, &m) == nil {
					_ = FromWireVV(m.VV)
					checkHeld(t, m.Held)
				}
			case FrameAEResp:
				var m AEResp
				if Decode(body, &m) == nil {
					checkHeld(t, m.Held)
				}
			case frameRPCReq:
				var m rpcReqMsg
				_ = Decode(body, &m)
			case frameRPCResp:
				var m rpcRespMsg
				_ = Decode(body, &m)
			}
		}
	})
}

func checkBatch(t *testing.T, w WireBatch) {
	b, err := FromWire(w)
	if err != nil {
		return
	}
	for _, d := range b.Deltas {
		for _, s := range [][]crdt.Slot{d.State.Slots, resetFloor(d.State.Reset)} {
			for i := 1; i < len(s); i++ {
				if s[i].Node <= s[i-1].Node {
					t.Fatalf("FromWire accepted unsorted or duplicate slots: %+v", s)
				}
			}
		}
	}
}

func resetFloor(r *crdt.Reset) []crdt.Slot {
	if r == nil {
		return nil
	}
	return r.Floor
}

// checkHeld: a peer's held list, in any order, comes back grouped by
// origin with each origin's seqs sorted (sendDiff binary-searches them).
func checkHeld(t *testing.T, held []VVEntry) {
	n := 0
	for _, seqs := range FromWireHeld(held) {
		if !slices.IsSorted(seqs) {
			t.Fatalf("held seqs not sorted: %v", seqs)
		}
		n += len(seqs)
	}
	if n != len(held) {
		t.Fatalf("FromWireHeld kept %d of %d entries", n, len(held))
	}
}
