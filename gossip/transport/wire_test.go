package transport

import (
	"errors"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

func TestWireBatchRoundTrip(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	var c crdt.Counter
	c.Add(a, 7)
	c.Add(b, -3)
	c.SetReset(b, 100, true)
	c.Add(a, 2)
	in := change.Batch{
		Ranges: []change.Range{{Origin: a, After: 3, Upto: 9}, {Origin: b, After: 0, Upto: 2}},
		Deltas: []change.Delta{
			{NS: "ns2", Key: "k", Origin: a, Seq: 9, State: c.Delta(true, a)},
			{NS: "ns1", Key: "x", Origin: b, Seq: 2, State: c.Delta(false, b)},
			{NS: "ns1", Key: "w", Origin: b, Seq: 1, State: c.Delta(true, b)},
		},
		Configs: []change.ConfigRecord{{NS: "ns1", HLC: 42, Origin: b, Payload: []byte(`{"type":"eventual"}`)}},
		Vouched: []crdt.NodeID{a, b, 77},
	}
	w := ToWire(in)
	raw, err := Marshal(&w)
	if err != nil {
		t.Fatal(err)
	}
	var w2 WireBatch
	if err := msgpack.Unmarshal(raw, &w2); err != nil {
		t.Fatal(err)
	}
	out, err := FromWire(w2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.Ranges, in.Ranges) || !reflect.DeepEqual(out.Configs, in.Configs) || !reflect.DeepEqual(out.Vouched, in.Vouched) {
		t.Fatalf("ranges/configs/vouched differ: %+v vs %+v", out, in)
	}
	if len(out.Deltas) != len(in.Deltas) {
		t.Fatalf("%d deltas, want %d", len(out.Deltas), len(in.Deltas))
	}
	// Deltas come back grouped and sorted by (ns, origin, key).
	for _, want := range in.Deltas {
		found := false
		for _, got := range out.Deltas {
			if got.NS == want.NS && got.Key == want.Key && got.Origin == want.Origin && got.Seq == want.Seq {
				found = true
				if !got.State.Equal(want.State) {
					t.Errorf("%s/%s: state %+v, want %+v", want.NS, want.Key, got.State, want.State)
				}
			}
		}
		if !found {
			t.Errorf("delta %s/%s lost", want.NS, want.Key)
		}
	}
	if len(w.Groups) != 2 {
		t.Errorf("%d groups, want 2 ((ns1,b) and (ns2,a))", len(w.Groups))
	}
}

func TestWireRefusesUnsortedSlots(t *testing.T) {
	w := WireBatch{Groups: []wireGroup{{NS: "n", Origin: 1, Items: []wireItem{{Key: "k", Seq: 1, Slots: []wireSlot{{Node: 5}, {Node: 2}}}}}}}
	if _, err := FromWire(w); !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol", err)
	}
}

// nopCounter discards traffic counts.
type nopCounter struct{}

func (nopCounter) CountSent(string, int, bool)     {}
func (nopCounter) CountReceived(string, int, bool) {}

func TestFrameConnLimitsAndTypes(t *testing.T) {
	a, b := net.Pipe()
	fa := NewConn(a, nopCounter{}, "r", time.Second, 1<<16)
	fb := NewConn(b, nopCounter{}, "r", time.Second, 1<<16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fa.WriteFrame(FrameAck, &AckMsg{ID: 7})
		fa.WriteFrame(FrameAEFin, nil)
		fa.Flush()
	}()
	var ack AckMsg
	if err := fb.ReadMsg(time.Second, FrameAck, &ack); err != nil || ack.ID != 7 {
		t.Fatalf("ack = %+v, %v", ack, err)
	}
	if err := fb.ReadMsg(time.Second, FrameAck, &ack); !errors.Is(err, ErrProtocol) {
		t.Fatalf("reading a fin as an ack: %v, want ErrProtocol", err)
	}
	wg.Wait()
	big := make([]byte, 1<<17)
	if err := fa.WriteFrame(FrameBatch, &WireConfig{Payload: big}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("oversized frame: %v, want ErrProtocol", err)
	}
	a.Close()
	b.Close()
}

func TestConfigDigestIgnoresOrder(t *testing.T) {
	x := []change.ConfigRecord{{NS: "a", HLC: 1}, {NS: "b", HLC: 2, Payload: []byte("p")}}
	y := []change.ConfigRecord{x[1], x[0]}
	if ConfigDigest(x) != ConfigDigest(y) {
		t.Fatal("digest depends on order")
	}
	y[0].Payload = []byte("same write, another encoding")
	if ConfigDigest(x) != ConfigDigest(y) {
		t.Fatal("digest depends on the payload's encoding")
	}
	y[0].HLC++
	if ConfigDigest(x) == ConfigDigest(y) {
		t.Fatal("digest ignores the HLC")
	}
}
