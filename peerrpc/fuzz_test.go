package peerrpc_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/node/retire"
	"github.com/countmesh/countmesh/peerrpc"
	"github.com/countmesh/countmesh/ratelimit"
)

// handlerMesh records the handlers Serve registers.
type handlerMesh struct {
	h map[gossip.Method]gossip.Handler
}

func (m *handlerMesh) Call(context.Context, string, gossip.Method, any, any) error { return nil }
func (m *handlerMesh) Handle(method gossip.Method, h gossip.Handler)               { m.h[method] = h }
func (m *handlerMesh) Status() gossip.Status                                       { return gossip.Status{} }
func (m *handlerMesh) MemberID(name string) (crdt.NodeID, bool) {
	return crdt.NodeIDFromName(name), true
}

func encodeArrays(t testing.TB, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzPeerCalls feeds arbitrary bodies to every peer call's handler on a
// real node and rate limiter, as a member could send them: no input may
// panic, and the node keeps answering afterwards with its counter intact.
func FuzzPeerCalls(f *testing.F) {
	cfg := node.DefaultConfig()
	cfg.Name = "n1"
	cfg.Store.Dir, cfg.Store.FS = "data", vfs.NewMem()
	cfg.Logger = zap.NewNop()
	n, err := node.Open(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	if _, err := n.Incr(context.Background(), "pages", "home", 5, node.WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	rcfg := ratelimit.DefaultConfig()
	rcfg.Membership, rcfg.Logger = ratelimit.Single("n1"), zap.NewNop()
	l, err := ratelimit.New(rcfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	m := &handlerMesh{h: map[gossip.Method]gossip.Handler{}}
	peerrpc.Serve(m, peerrpc.Services{Node: n, Limiter: l})

	var st crdt.Counter
	st.Add(crdt.NodeIDFromName("n1"), 3)
	f.Add(uint8(gossip.MethodFetchState), encodeArrays(f, []any{"pages", "home"}))
	f.Add(uint8(gossip.MethodPushStates), encodeArrays(f, []any{[]any{[]any{"pages", "x", st}}}))
	f.Add(uint8(gossip.MethodRights), encodeArrays(f, []any{"likes", "p", true, 1, uint64(crdt.NodeIDFromName("n2"))}))
	f.Add(uint8(gossip.MethodLease), encodeArrays(f, ratelimit.LeaseRequest{From: "n2", NS: "api", Key: "u", Window: time.Minute, Limit: 10, Want: 1}))
	f.Add(uint8(gossip.MethodPushStates), []byte{0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff})
	f.Add(uint8(gossip.MethodFetchStates), encodeArrays(f, []any{[]any{[]any{"pages", "home"}, []any{"pages", "b"}}}))
	f.Add(uint8(gossip.MethodCovers), encodeArrays(f, []any{[]any{uint64(1), uint64(crdt.NodeIDFromName("n2"))}, []any{[]any{"pages", "home"}}}))
	f.Add(uint8(gossip.MethodCovers), encodeArrays(f, []any{[]any{}, []any{[]any{"pages", ""}}}))
	entry := retire.Entry{Name: "gone", IDs: []crdt.NodeID{crdt.NodeIDFromName("gone")}, Cut: []retire.OriginSeq{{Origin: crdt.NodeIDFromName("gone"), Seq: 3}}}
	f.Add(uint8(gossip.MethodRetirePrepare), encodeArrays(f, []any{uint64(0), retire.Ballot{Round: 1, Node: 2}, []retire.Entry{}}))
	f.Add(uint8(gossip.MethodRetireAccept), encodeArrays(f, []any{uint64(0), retire.Ballot{Round: 1, Node: 2}, entry}))
	f.Add(uint8(gossip.MethodRetireSync), encodeArrays(f, []any{[]retire.Entry{entry}}))
	self := retire.Entry{Name: "n1", IDs: []crdt.NodeID{crdt.NodeIDFromName("n1")}}
	f.Add(uint8(gossip.MethodRetireSync), encodeArrays(f, []any{[]retire.Entry{self}}))
	f.Fuzz(func(t *testing.T, method uint8, body []byte) {
		h := m.h[gossip.Method(method%10)]
		if h == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		dec := func(v any) error {
			d := msgpack.NewDecoder(bytesReader(body))
			return d.Decode(v)
		}
		_, _ = h(ctx, "n2", dec)
		c, err := n.Get(context.Background(), "pages", "home", node.ReadOptions{})
		if err != nil || c.Value < 5 {
			t.Fatalf("after a %s call the node reads pages/home as %+v, %v", gossip.Method(method%10), c, err)
		}
	})
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
