package gossip

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/crdt"
)

func TestWireBatchRoundTrip(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	var c crdt.Counter
	c.Add(a, 7)
	c.Add(b, -3)
	c.SetReset(b, 100, true)
	c.Add(a, 2)
	in := Batch{
		Ranges: []Range{{Origin: a, After: 3, Upto: 9}, {Origin: b, After: 0, Upto: 2}},
		Deltas: []Delta{
			{NS: "ns2", Key: "k", Origin: a, Seq: 9, State: c.Delta(true, a)},
			{NS: "ns1", Key: "x", Origin: b, Seq: 2, State: c.Delta(false, b)},
			{NS: "ns1", Key: "w", Origin: b, Seq: 1, State: c.Delta(true, b)},
		},
		Configs: []ConfigRecord{{NS: "ns1", HLC: 42, Origin: b, Payload: []byte(`{"type":"eventual"}`)}},
	}
	w := toWire(in)
	raw, err := marshal(&w)
	if err != nil {
		t.Fatal(err)
	}
	var w2 wireBatch
	if err := msgpack.Unmarshal(raw, &w2); err != nil {
		t.Fatal(err)
	}
	out, err := fromWire(w2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.Ranges, in.Ranges) || !reflect.DeepEqual(out.Configs, in.Configs) {
		t.Fatalf("ranges/configs differ: %+v vs %+v", out, in)
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
	w := wireBatch{Groups: []wireGroup{{NS: "n", Origin: 1, Items: []wireItem{{Key: "k", Seq: 1, Slots: []wireSlot{{Node: 5}, {Node: 2}}}}}}}
	if _, err := fromWire(w); !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol", err)
	}
}

// nopCounter discards traffic counts.
type nopCounter struct{}

func (nopCounter) countSent(string, int, bool)     {}
func (nopCounter) countReceived(string, int, bool) {}

func TestFrameConnLimitsAndTypes(t *testing.T) {
	a, b := net.Pipe()
	fa := newFrameConn(a, nopCounter{}, "r", time.Second, 1<<16)
	fb := newFrameConn(b, nopCounter{}, "r", time.Second, 1<<16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fa.writeFrame(frameAck, &ackMsg{ID: 7})
		fa.writeFrame(frameAEFin, nil)
		fa.flush()
	}()
	var ack ackMsg
	if err := fb.readMsg(time.Second, frameAck, &ack); err != nil || ack.ID != 7 {
		t.Fatalf("ack = %+v, %v", ack, err)
	}
	if err := fb.readMsg(time.Second, frameAck, &ack); !errors.Is(err, ErrProtocol) {
		t.Fatalf("reading a fin as an ack: %v, want ErrProtocol", err)
	}
	wg.Wait()
	big := make([]byte, 1<<17)
	if err := fa.writeFrame(frameBatch, &wireConfig{Payload: big}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("oversized frame: %v, want ErrProtocol", err)
	}
	a.Close()
	b.Close()
}

func TestConfigDigestIgnoresOrder(t *testing.T) {
	x := []ConfigRecord{{NS: "a", HLC: 1}, {NS: "b", HLC: 2, Payload: []byte("p")}}
	y := []ConfigRecord{x[1], x[0]}
	if configDigest(x) != configDigest(y) {
		t.Fatal("digest depends on order")
	}
	y[0].Payload = []byte("same write, another encoding")
	if configDigest(x) != configDigest(y) {
		t.Fatal("digest depends on the payload's encoding")
	}
	y[0].HLC++
	if configDigest(x) == configDigest(y) {
		t.Fatal("digest ignores the HLC")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Name = "n1"
	if err := ok.validate(); err != nil {
		t.Fatalf("default config with a name: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no name", func(c *Config) { c.Name = "" }},
		{"no region", func(c *Config) { c.Region = "" }},
		{"bad gossip addr", func(c *Config) { c.GossipAddr = "nope" }},
		{"probe timeout too long", func(c *Config) { c.Membership.ProbeTimeout = c.Membership.ProbeInterval }},
		{"zero flush", func(c *Config) { c.FlushInterval = 0 }},
		{"bad fan-out", func(c *Config) { c.FanOut = 7 }},
		{"tiny queue", func(c *Config) { c.MaxQueueBytes = 10 }},
		{"bad remote probability", func(c *Config) { c.AntiEntropyRemote = 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if got := ok.replBindAddr(); got != "127.0.0.1:7947" {
		t.Errorf("derived replication address = %q, want 127.0.0.1:7947", got)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := &Mesh{cfg: Config{Region: "eu", HTTPAddr: "10.0.0.1:7070"}}
	m.setMeta("10.0.0.1:7947", false)
	b := *m.meta.Load()
	if len(b) > 512 {
		t.Fatalf("meta is %d bytes, over memberlist's limit", len(b))
	}
	md, err := decodeMeta(b)
	if err != nil || md.Region != "eu" || md.HTTPAddr != "10.0.0.1:7070" || md.ReplAddr != "10.0.0.1:7947" {
		t.Fatalf("meta = %+v, %v", md, err)
	}
	if _, err := decodeMeta([]byte("garbage")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("garbage meta: %v", err)
	}
}

func TestRendezvousBridge(t *testing.T) {
	members := []string{"b1", "b2", "b3", "b4"}
	counts := make(map[string]int)
	for i := 0; i < 400; i++ {
		origin := crdt.NodeIDFromName(fmt.Sprintf("origin-%d", i))
		br := Bridge(origin, members)
		// Order of candidates does not matter.
		if got := Bridge(origin, []string{"b4", "b3", "b2", "b1"}); got != br {
			t.Fatalf("bridge depends on order: %s vs %s", got, br)
		}
		// Removing a member that is not the bridge keeps the bridge.
		for _, gone := range members {
			if gone == br {
				continue
			}
			var rest []string
			for _, m := range members {
				if m != gone {
					rest = append(rest, m)
				}
			}
			if got := Bridge(origin, rest); got != br {
				t.Fatalf("origin %d: removing %s moved the bridge from %s to %s", i, gone, br, got)
			}
		}
		counts[br]++
	}
	for _, m := range members {
		if counts[m] < 60 {
			t.Errorf("member %s bridges %d of 400 origins; the load is skewed: %v", m, counts[m], counts)
		}
	}
	if Bridge(1, nil) != "" {
		t.Error("bridge of an empty region is not empty")
	}
}

func TestBuildRoutes(t *testing.T) {
	self := crdt.NodeIDFromName("a1")
	alive := map[string]peerInfo{
		"a2": {name: "a2", region: "A"}, "b1": {name: "b1", region: "B"}, "b2": {name: "b2", region: "B"},
		"c1": {name: "c1", region: "C"},
	}
	r := buildRoutes("a1", "A", self, alive, FanOutBridge)
	if len(r.local) != 1 || r.local[0].name != "a2" {
		t.Fatalf("local = %+v", r.local)
	}
	if len(r.publish) != 3 {
		t.Fatalf("bridge publish targets = %+v, want a2 + one of B + c1", r.publish)
	}
	if r.relay[0] || !r.relay[1] || !r.relay[2] {
		t.Fatalf("relay = %v, want local false, bridges true", r.relay)
	}
	if want := Bridge(self, []string{"b1", "b2"}); r.publish[1].name != want {
		t.Fatalf("bridge of B = %s, want %s", r.publish[1].name, want)
	}
	d := buildRoutes("a1", "A", self, alive, FanOutDirect)
	if len(d.publish) != 4 {
		t.Fatalf("direct publish targets = %+v, want all 4 peers", d.publish)
	}
	for _, rl := range d.relay {
		if rl {
			t.Fatal("direct fan-out asks for relay")
		}
	}
}
