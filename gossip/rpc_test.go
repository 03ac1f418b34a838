package gossip_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/gossiptest"
	"github.com/countmesh/countmesh/gossip/transport"
	"github.com/countmesh/countmesh/internal/wait"
)

type echoReq struct {
	Text string
	N    int64
}

type echoResp struct {
	From string
	Text string
	N    int64
}

func TestCallRoundTrip(t *testing.T) {
	c := newCluster(t, 11, []string{"a@r1", "b@r1"}, nil)
	c.startAll()
	a, b := c.node("a").mesh, c.node("b").mesh
	b.Handle(gossip.MethodLease, func(ctx context.Context, from string, decode func(any) error) (any, error) {
		var req echoReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		switch req.Text {
		case "refuse":
			return nil, errors.New("refused on purpose")
		case "panic":
			panic("handler bug")
		case "slow":
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return echoResp{From: from, Text: req.Text, N: req.N * 2}, nil
	})
	ctx := context.Background()

	for i := range 3 { // the second and third calls reuse the connection
		var out echoResp
		if err := a.Call(ctx, "b", gossip.MethodLease, echoReq{Text: "hi", N: int64(i)}, &out); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if out != (echoResp{From: "a", Text: "hi", N: int64(2 * i)}) {
			t.Fatalf("call %d answered %+v", i, out)
		}
	}
	for _, text := range []string{"refuse", "panic"} {
		err := a.Call(ctx, "b", gossip.MethodLease, echoReq{Text: text}, nil)
		if !errors.Is(err, gossip.ErrRemote) {
			t.Fatalf("%s: got %v, want ErrRemote", text, err)
		}
	}
	if err := a.Call(ctx, "b", gossip.MethodRights, echoReq{}, nil); !errors.Is(err, gossip.ErrRemote) || !strings.Contains(err.Error(), "no handler") {
		t.Fatalf("method without a handler: got %v", err)
	}
	if err := a.Call(ctx, "nobody", gossip.MethodLease, echoReq{}, nil); !errors.Is(err, gossip.ErrUnknownPeer) {
		t.Fatalf("unknown peer: got %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := a.Call(short, "b", gossip.MethodLease, echoReq{Text: "slow"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a call with a 100 ms context took %v", d)
	}
	// The callee survived all of that.
	var out echoResp
	if err := a.Call(ctx, "b", gossip.MethodLease, echoReq{Text: "still", N: 21}, &out); err != nil || out.N != 42 {
		t.Fatalf("call after the failures: %+v, %v", out, err)
	}
}

// rawFrame is one frame as the wire format writes it: a 4-byte length, a
// type byte and a msgpack body of array-encoded structs.
func rawFrame(t *testing.T, typ byte, v any) []byte {
	t.Helper()
	b, err := gossiptest.Frame(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type rawHello struct {
	Proto  uint8
	Kind   uint8
	Name   string
	Region string
}

// closedSoon reports whether the listener closed c within d (it read EOF
// or a reset, with nothing sent back).
func closedSoon(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 64))
	if n > 0 {
		t.Fatalf("the listener answered %d bytes", n)
	}
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestPeerListenerRefusesStrangers(t *testing.T) {
	c := newCluster(t, 12, []string{"a@r1", "b@r1"}, nil)
	c.startAll()
	b := c.node("b")
	outsider := c.nw.Host("x", "r1")
	dial := func() net.Conn {
		t.Helper()
		conn, err := outsider.Dial(context.Background(), b.host.ReplAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	cases := []struct {
		name  string
		bytes []byte
	}{
		{"a stream from a name that is not a member", rawFrame(t, 1, rawHello{Proto: transport.ProtoVersion, Kind: 1, Name: "x", Region: "r1"})},
		{"a call from a name that is not a member", rawFrame(t, 1, rawHello{Proto: transport.ProtoVersion, Kind: 4, Name: "x", Region: "r1"})},
		{"an anti-entropy session under the node's own name", rawFrame(t, 1, rawHello{Proto: transport.ProtoVersion, Kind: 2, Name: "b", Region: "r1"})},
		{"a hello with a name of 10 KB", rawFrame(t, 1, rawHello{Proto: transport.ProtoVersion, Kind: 1, Name: strings.Repeat("n", 10_000), Region: "r1"})},
		{"a first frame announcing 64 MiB", binary.BigEndian.AppendUint32(nil, 64<<20)},
		{"a first frame that is not a hello", rawFrame(t, 2, nil)},
		{"an unknown connection kind", rawFrame(t, 1, rawHello{Proto: transport.ProtoVersion, Kind: 99, Name: "a", Region: "r1"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial()
			if _, err := conn.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			if !closedSoon(t, conn, 3*time.Second) {
				t.Fatal("the listener kept the connection open")
			}
		})
	}
	if got := b.mesh.Stats().RefusedPeers; got < uint64(len(cases)) {
		t.Fatalf("RefusedPeers = %d, want at least %d", got, len(cases))
	}
	// The members still talk.
	c.add(c.node("a"), "ns", "k", 5)
	c.waitConverged(10 * time.Second)
}

func TestPeerListenerConnectionCap(t *testing.T) {
	c := newCluster(t, 13, []string{"a@r1", "b@r1"}, func(cfg *gossip.Config) { cfg.MaxInboundConns = 8 })
	c.startAll()
	b := c.node("b")
	outsider := c.nw.Host("x", "r1")
	var held []net.Conn
	refused := 0
	for range 20 {
		conn, err := outsider.Dial(context.Background(), b.host.ReplAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := conn.Read(make([]byte, 1)); isTimeout(err) {
			held = append(held, conn) // still open: the listener holds it
		} else {
			refused++ // closed at once (EOF or a reset)
		}
	}
	if refused < 12 {
		t.Fatalf("%d of 20 idle connections were refused with a cap of 8; want at least 12", refused)
	}
	if got := b.mesh.Stats().RefusedConns; got < 12 {
		t.Fatalf("RefusedConns = %d, want at least 12", got)
	}
	if len(held) < 4 {
		t.Fatalf("b's listener held %d of the outsider's connections with a cap of 8; the members cannot hold the rest", len(held))
	}
	// The metrics show the listener at its cap and the refusals.
	// (The members' own connections come and go: a's exchanges.)
	if got := metricValue(t, b.mesh, "countmesh_peer_inbound_connections"); got < float64(len(held)) || got > 8 {
		t.Errorf("countmesh_peer_inbound_connections = %v with %d of the outsider's held and a cap of 8", got, len(held))
	}
	if got := metricValue(t, b.mesh, "countmesh_peer_inbound_connections_max"); got != 8 {
		t.Errorf("countmesh_peer_inbound_connections_max = %v, want 8", got)
	}
	if got := metricValue(t, b.mesh, "countmesh_peer_connections_refused_total", "reason", "limit"); got < 12 {
		t.Errorf("countmesh_peer_connections_refused_total{reason=limit} = %v, want at least 12", got)
	}
	for _, conn := range held {
		conn.Close()
	}
	// Once the outsider's connections are gone, members get through again.
	c.add(c.node("a"), "ns", "k", 1)
	c.waitConverged(15 * time.Second)
	wait.For(t, 10*time.Second, "b's listener letting the outsider's connections go", func() (bool, string) {
		got := metricValue(t, b.mesh, "countmesh_peer_inbound_connections")
		return got < float64(len(held)), fmt.Sprintf("%v held", got)
	})
	if got := metricValue(t, b.mesh, "countmesh_stream_deltas_total", "direction", "received"); got < 1 {
		t.Errorf("countmesh_stream_deltas_total{direction=received} = %v on b after a's add reached it, want at least 1", got)
	}
}

// metricValue gathers m's Collector and returns the value of the metric
// name with the given label pairs (0 when there is none).
func metricValue(t *testing.T, m *gossip.Mesh, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(gossip.NewCollector(m)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, mt := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range mt.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if mt.GetCounter() != nil {
				return mt.GetCounter().GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	return 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A member speaking another protocol version is refused at the hello: its
// frames would not decode (structs travel as arrays). The same hello with
// the current version is kept open.
func TestPeerListenerRefusesAnotherProtocolVersion(t *testing.T) {
	c := newCluster(t, 14, []string{"a@r1", "b@r1"}, nil)
	c.startAll()
	a, b := c.node("a"), c.node("b")
	for _, tc := range []struct {
		proto  uint8
		closed bool
	}{{transport.ProtoVersion - 1, true}, {transport.ProtoVersion, false}} {
		conn, err := a.host.Dial(context.Background(), b.host.ReplAddr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(rawFrame(t, 1, rawHello{Proto: tc.proto, Kind: 1, Name: "a", Region: "r1"})); err != nil {
			t.Fatal(err)
		}
		if got := closedSoon(t, conn, time.Second); got != tc.closed {
			t.Errorf("hello of version %d: closed = %v, want %v", tc.proto, got, tc.closed)
		}
		conn.Close()
	}
}
