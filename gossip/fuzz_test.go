package gossip

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

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

type nopTraffic struct{}

func (nopTraffic) countSent(string, int, bool)     {}
func (nopTraffic) countReceived(string, int, bool) {}

// FuzzPeerFrames reads a byte stream as the peer listener does, frame by
// frame, and decodes each frame as the message its type announces. No
// input may panic or allocate past the frame limit; a batch that decodes
// is handed on only with its slots sorted and distinct (the invariant
// crdt's merge relies on).
func FuzzPeerFrames(f *testing.F) {
	frame := func(typ byte, v any) []byte {
		body, err := marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		out := []byte{0, 0, 0, 0, typ}
		out = append(out, body...)
		n := len(out) - 4
		out[0], out[1], out[2], out[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return out
	}
	b := Batch{
		Ranges:  []Range{{Origin: 7, After: 0, Upto: 2}},
		Deltas:  []Delta{{NS: "pages", Key: "home", Origin: 7, Seq: 2, State: crdt.Counter{Slots: []crdt.Slot{{Node: 7, P: 3}}}}},
		Configs: []ConfigRecord{{NS: "pages", HLC: 1, Origin: 7, Payload: []byte("{}")}},
	}
	f.Add(append(frame(frameHello, &helloMsg{Proto: 1, Kind: kindStream, Name: "a", Region: "r"}), frame(frameBatch, &batchMsg{ID: 1, Batch: toWire(b)})...))
	f.Add(frame(frameRPCReq, &rpcReqMsg{Method: MethodLease, Body: []byte{0x90}}))
	f.Add(frame(frameAEReq, &aeReqMsg{VV: []vvEntry{{Origin: 1, Seq: 2}}, Full: true}))
	f.Add([]byte{0, 0, 0, 13, 2, 0x93, 0x01, 0xc2, 0x93, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := newFrameConn(&bytesConn{r: bytes.NewReader(data)}, nopTraffic{}, "", time.Second, 1<<20)
		for range 16 {
			typ, body, err := fc.readFrame(time.Second)
			if err != nil {
				return
			}
			switch typ {
			case frameHello:
				var h helloMsg
				_ = decode(body, &h)
			case frameBatch:
				var m batchMsg
				if decode(body, &m) == nil {
					checkBatch(t, m.Batch)
				}
			case frameAEChunk:
				var w wireBatch
				if decode(body, &w) == nil {
					checkBatch(t, w)
				}
			case frameAEReq:
				var m aeReqMsg
				if decode(body, &m) == nil {
					_ = fromWireVV(m.VV)
				}
			case frameAEResp:
				var m aeRespMsg
				_ = decode(body, &m)
			case frameRPCReq:
				var m rpcReqMsg
				_ = decode(body, &m)
			case frameRPCResp:
				var m rpcRespMsg
				_ = decode(body, &m)
			}
		}
	})
}

func checkBatch(t *testing.T, w wireBatch) {
	b, err := fromWire(w)
	if err != nil {
		return
	}
	for _, d := range b.Deltas {
		for _, s := range [][]crdt.Slot{d.State.Slots, resetFloor(d.State.Reset)} {
			for i := 1; i < len(s); i++ {
				if s[i].Node <= s[i-1].Node {
					t.Fatalf("fromWire accepted unsorted or duplicate slots: %+v", s)
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

// FuzzNodeMeta decodes a member's memberlist meta, which any process that
// can gossip sends: no panic, and what decodes re-encodes to the same.
func FuzzNodeMeta(f *testing.F) {
	good, _ := marshal(&nodeMeta{Version: metaVersion, Region: "eu", HTTPAddr: "10.0.0.1:7070", ReplAddr: "10.0.0.1:7947"})
	f.Add(good)
	f.Add([]byte{0x95, 0x01, 0xdb, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := decodeMeta(data)
		if err != nil {
			return
		}
		again, err := marshal(&md)
		if err != nil {
			t.Fatal(err)
		}
		md2, err := decodeMeta(again)
		if err != nil || md2 != md {
			t.Fatalf("meta %+v re-decodes as %+v, %v", md, md2, err)
		}
	})
}
