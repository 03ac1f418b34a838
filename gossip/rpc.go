package gossip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
)

// Method names a peer call. The methods are the node's services on the
// one peer transport; the packages that implement them register handlers
// with Mesh.Handle before Start.
type Method uint8

// The peer calls.
const (
	// MethodFetchState reads one counter's durable state (quorum and all
	// reads).
	MethodFetchState Method = 1
	// MethodPushStates merges counter states and answers once they are
	// durable (quorum and all writes).
	MethodPushStates Method = 2
	// MethodRights asks for rights of a bounded counter (exact namespaces).
	MethodRights Method = 3
	// MethodLease asks the owner of a rate limit for a lease.
	MethodLease Method = 4
	methodLimit Method = 5
)

func (m Method) String() string {
	switch m {
	case MethodFetchState:
		return "fetch-state"
	case MethodPushStates:
		return "push-states"
	case MethodRights:
		return "rights"
	case MethodLease:
		return "lease"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// Handler answers a peer call. from is the caller's member name: with
// TLS, the name its certificate was issued to. decode decodes the request
// body into its argument (msgpack; bounded by MaxFrameBytes). The answer
// is encoded with msgpack; an error is sent back as its message. A
// handler must validate everything it decodes: a peer is trusted to be a
// member, never to be well-formed.
type Handler func(ctx context.Context, from string, decode func(v any) error) (any, error)

// ErrRemote wraps the error a peer's handler answered a call with.
var ErrRemote = errors.New("gossip: peer refused the call")

// ErrUnknownPeer is a call to a name that is not a member this node knows.
var ErrUnknownPeer = errors.New("gossip: unknown peer")

// Handle registers the handler of a method, replacing any earlier one; a
// method without a handler answers every call with an error. It is safe
// to call at any time.
func (m *Mesh) Handle(method Method, h Handler) {
	if method == 0 || method >= methodLimit {
		return
	}
	m.handlersMu.Lock()
	defer m.handlersMu.Unlock()
	var hs [methodLimit]Handler
	if cur := m.handlers.Load(); cur != nil {
		hs = *cur
	}
	hs[method] = h
	m.handlers.Store(&hs)
}

// Call sends req to the member called to, over the peer transport, and
// decodes its answer into resp (nil to ignore it). ctx bounds the whole
// call; an error wraps ErrRemote when the peer's handler refused, else it
// is a transport failure. Connections are kept open between calls (at
// most MaxIdleRPCConns idle per member).
func (m *Mesh) Call(ctx context.Context, to string, method Method, req, resp any) error {
	if st := m.state.Load(); st != stateStarted && st != stateLeft {
		return m.notRunning()
	}
	body, err := marshal(req)
	if err != nil {
		return fmt.Errorf("gossip: encode %s request: %w", method, err)
	}
	pi, ok := m.memberInfo(to)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, to)
	}
	fc, err := m.takeRPCConn(ctx, pi)
	if err != nil {
		return err
	}
	// The call ends with ctx: a cancelled context closes the connection,
	// which fails the read or write in progress.
	stop := context.AfterFunc(ctx, func() { fc.Close() })
	out, err := m.roundTrip(fc, method, body, ctx)
	if !stop() || err != nil {
		fc.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("gossip: %s call to %s: %w", method, to, ctx.Err())
		}
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			// The read deadline (the context's) fired just before the
			// context itself was marked done.
			return fmt.Errorf("gossip: %s call to %s: %w", method, to, context.DeadlineExceeded)
		}
		if err != nil {
			return fmt.Errorf("gossip: %s call to %s: %w", method, to, err)
		}
	} else {
		m.putRPCConn(pi.name, fc)
	}
	if out.Err != "" {
		return fmt.Errorf("%w: %s: %s", ErrRemote, to, out.Err)
	}
	if resp == nil {
		return nil
	}
	return decode(out.Body, resp)
}

func (m *Mesh) roundTrip(fc *frameConn, method Method, body []byte, ctx context.Context) (rpcRespMsg, error) {
	var out rpcRespMsg
	timeout := m.cfg.IOTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	if err := fc.writeFrame(frameRPCReq, &rpcReqMsg{Method: method, Body: body}); err != nil {
		return out, err
	}
	if err := fc.flush(); err != nil {
		return out, err
	}
	err := fc.readMsg(timeout, frameRPCResp, &out)
	return out, err
}

// memberInfo returns what dialing a member needs: any verified member
// this node knows but one that left.
func (m *Mesh) memberInfo(name string) (peerInfo, bool) {
	m.members.Lock()
	defer m.members.Unlock()
	rec, ok := m.members.m[name]
	if !ok || rec.state == StateLeft || !rec.verified {
		return peerInfo{}, false
	}
	return peerInfo{name: name, region: rec.info.Region, replAddr: rec.info.ReplAddr}, true
}

// MemberID returns the slot id a verified member advertises (its name and
// incarnation), and whether name is such a member.
func (m *Mesh) MemberID(name string) (crdt.NodeID, bool) {
	m.members.Lock()
	defer m.members.Unlock()
	rec, ok := m.members.m[name]
	if !ok || !rec.verified {
		return 0, false
	}
	return rec.info.ID, true
}

// knownMember reports whether name is a member this node knows, in any
// state: only members may open streams, exchanges and calls.
func (m *Mesh) knownMember(name string) bool {
	m.members.Lock()
	defer m.members.Unlock()
	_, ok := m.members.m[name]
	return ok
}

func (m *Mesh) takeRPCConn(ctx context.Context, pi peerInfo) (*frameConn, error) {
	m.rpc.Lock()
	idle := m.rpc.idle[pi.name]
	for len(idle) > 0 {
		c := idle[len(idle)-1]
		idle = idle[:len(idle)-1]
		m.rpc.idle[pi.name] = idle
		if time.Since(c.idleSince) < rpcIdleTimeout && c.addr == pi.replAddr {
			m.rpc.Unlock()
			return c.fc, nil
		}
		c.fc.Close()
	}
	m.rpc.Unlock()
	return m.dialPeer(ctx, pi, kindRPC)
}

// rpcIdleTimeout is how long an idle call connection is kept; the callee
// closes inbound connections idle for longer than streamIdleTimeout *
// IOTimeout, so this stays well below that.
const rpcIdleTimeout = 30 * time.Second

type idleConn struct {
	fc        *frameConn
	addr      string
	idleSince time.Time
}

func (m *Mesh) putRPCConn(name string, fc *frameConn) {
	m.rpc.Lock()
	defer m.rpc.Unlock()
	if m.rpc.closed || len(m.rpc.idle[name]) >= m.cfg.MaxIdleRPCConns {
		fc.Close()
		return
	}
	m.rpc.idle[name] = append(m.rpc.idle[name], idleConn{fc: fc, addr: fc.c.RemoteAddr().String(), idleSince: time.Now()})
}

// closeRPCConns closes every idle call connection; later ones are closed
// as they are returned.
func (m *Mesh) closeRPCConns() {
	m.rpc.Lock()
	defer m.rpc.Unlock()
	m.rpc.closed = true
	for _, cs := range m.rpc.idle {
		for _, c := range cs {
			c.fc.Close()
		}
	}
	m.rpc.idle = nil
}

// dialPeer connects to a member's peer listener (TLS when configured,
// checking that the answering node is pi.name) and sends the hello.
func (m *Mesh) dialPeer(ctx context.Context, pi peerInfo, kind uint8) (*frameConn, error) {
	dctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	defer cancel()
	c, err := m.netw.Dial(dctx, pi.replAddr)
	if err != nil {
		return nil, err
	}
	if m.cfg.TLS != nil {
		tc := tls.Client(c, m.cfg.TLS.Client(pi.name))
		if err := tc.HandshakeContext(dctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("gossip: TLS handshake with %s (%s): %w", pi.name, pi.replAddr, err)
		}
		c = tc
	}
	fc := newFrameConn(c, &m.stats, pi.region, m.cfg.IOTimeout, m.cfg.MaxFrameBytes)
	if kind == kindAE {
		fc.ae.Store(true)
	}
	if err := fc.writeFrame(frameHello, &helloMsg{Proto: protoVersion, Kind: kind, Name: m.cfg.Name, Region: m.cfg.Region}); err != nil {
		fc.Close()
		return nil, err
	}
	if err := fc.flush(); err != nil {
		fc.Close()
		return nil, err
	}
	return fc, nil
}

// serveRPC answers a member's calls on one connection, in order, until
// the connection fails or stays idle for streamIdleTimeout * IOTimeout.
func (m *Mesh) serveRPC(fc *frameConn, from string) error {
	for {
		var req rpcReqMsg
		if err := fc.readMsg(streamIdleTimeout*m.cfg.IOTimeout, frameRPCReq, &req); err != nil {
			return err
		}
		out := m.dispatch(from, req)
		if err := fc.writeFrame(frameRPCResp, &out); err != nil {
			return err
		}
		if err := fc.flush(); err != nil {
			return err
		}
	}
}

// dispatch runs one call's handler; a handler that panics is answered
// with an error (the connection and the process survive).
func (m *Mesh) dispatch(from string, req rpcReqMsg) (out rpcRespMsg) {
	var h Handler
	if hs := m.handlers.Load(); hs != nil && req.Method > 0 && req.Method < methodLimit {
		h = hs[req.Method]
	}
	if h == nil {
		return rpcRespMsg{Err: fmt.Sprintf("no handler for %s on this node", req.Method)}
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.IOTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("peer call handler panicked; refused the call", zap.Stringer("method", req.Method), zap.String("peer", from), zap.Any("panic", r))
			out = rpcRespMsg{Err: "the handler failed"}
		}
	}()
	resp, err := h(ctx, from, func(v any) error { return decode(req.Body, v) })
	if err != nil {
		return rpcRespMsg{Err: err.Error()}
	}
	body, err := marshal(resp)
	if err != nil {
		return rpcRespMsg{Err: "encode the answer: " + err.Error()}
	}
	return rpcRespMsg{Body: body}
}

// peerIdentity completes the TLS handshake of an inbound connection and
// returns the connection with the name the peer's certificate was issued
// to ("" without TLS).
func (m *Mesh) peerIdentity(c net.Conn) (net.Conn, string, error) {
	if m.cfg.TLS == nil {
		return c, "", nil
	}
	tc := tls.Server(c, m.cfg.TLS.Server)
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.IOTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, "", fmt.Errorf("TLS handshake: %w", err)
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return nil, "", errors.New("TLS: the peer presented no certificate")
	}
	name := cs.PeerCertificates[0].Subject.CommonName
	if name == "" {
		return nil, "", errors.New("TLS: the peer's certificate has no common name (the node name)")
	}
	return tc, name, nil
}

// SetGossipKeys replaces memberlist's keyring without a restart: the new
// keys are installed, the first becomes the one that encrypts, and keys
// not listed are dropped. Rotate in three steps, each on every node
// before the next: add the new key (second), make it first, drop the old.
func (m *Mesh) SetGossipKeys(keys [][]byte) error {
	if err := checkGossipKeys(keys); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	kr := m.keyring
	if kr == nil {
		return fmt.Errorf("%w: gossip encryption was not enabled at start; restart with a key", ErrInvalidConfig)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: at least one gossip key is needed once encryption is on", ErrInvalidConfig)
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("gossip: add key: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	keep := make(map[string]bool, len(keys))
	for _, k := range keys {
		keep[string(k)] = true
	}
	for _, k := range kr.GetKeys() {
		if !keep[string(k)] {
			if err := kr.RemoveKey(k); err != nil {
				return fmt.Errorf("gossip: remove key: %w", err)
			}
		}
	}
	return nil
}
