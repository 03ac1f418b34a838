package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Method names a peer call. The methods are the node's services on the
// one peer transport; the packages that implement them register handlers
// with gossip.Mesh.Handle (Transport.Handle) before Start.
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
	// MethodFetchStates reads many counters' durable states (reads of
	// sharded namespaces at a node that does not own them).
	MethodFetchStates Method = 5
	// MethodCovers reads a peer's durable vector entries of sequence
	// spaces and, after them, counters' states (a writer releasing or
	// restoring its copies of a sharded namespace's counters).
	MethodCovers Method = 6
	// MethodRetirePrepare and MethodRetireAccept are the two phases of
	// deciding an entry of the retired list (countctl cluster forget;
	// package node/retire); MethodRetireSync sends the caller's stable
	// retired list and answers with the callee's.
	MethodRetirePrepare Method = 7
	MethodRetireAccept  Method = 8
	MethodRetireSync    Method = 9
	methodLimit         Method = 10
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
	case MethodFetchStates:
		return "fetch-states"
	case MethodCovers:
		return "covers"
	case MethodRetirePrepare:
		return "retire-prepare"
	case MethodRetireAccept:
		return "retire-accept"
	case MethodRetireSync:
		return "retire-sync"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// Handler answers a peer call. from is the caller's member name: with
// TLS, the name its certificate was issued to. Decode decodes the request
// body into its argument (msgpack; bounded by MaxFrameBytes). The answer
// is encoded with msgpack; an error is sent back as its message. A
// handler must validate everything it decodes: a peer is trusted to be a
// member, never to be well-formed.
type Handler func(ctx context.Context, from string, Decode func(v any) error) (any, error)

// ErrRemote wraps the error a peer's handler answered a call with.
var ErrRemote = errors.New("gossip: peer refused the call")

// ErrUnknownPeer is a call to a name that is not a member this node knows.
var ErrUnknownPeer = errors.New("gossip: unknown peer")

// Handle registers the handler of a method, replacing any earlier one; a
// method without a handler answers every call with an error. It is safe
// to call at any time.
func (t *Transport) Handle(method Method, h Handler) {
	if method == 0 || method >= methodLimit {
		return
	}
	t.handlersMu.Lock()
	defer t.handlersMu.Unlock()
	var hs [methodLimit]Handler
	if cur := t.handlers.Load(); cur != nil {
		hs = *cur
	}
	hs[method] = h
	t.handlers.Store(&hs)
}

// Call sends req to the member called to, over the peer transport, and
// decodes its answer into resp (nil to ignore it). ctx bounds the whole
// call; an error wraps ErrRemote when the peer's handler refused, else it
// is a transport failure. Connections are kept open between calls (at
// most MaxIdleRPCConns idle per member).
func (t *Transport) Call(ctx context.Context, to string, method Method, req, resp any) error {
	body, err := Marshal(req)
	if err != nil {
		return fmt.Errorf("gossip: encode %s request: %w", method, err)
	}
	pi, ok := t.members.Lookup(to)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, to)
	}
	fc, err := t.takeRPCConn(ctx, pi)
	if err != nil {
		return err
	}
	// The call ends with ctx: a cancelled context closes the connection,
	// which fails the read or write in progress.
	stop := context.AfterFunc(ctx, func() { fc.Close() })
	out, err := t.roundTrip(fc, method, body, ctx)
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
		t.putRPCConn(pi.Name, fc)
	}
	if out.Err != "" {
		return fmt.Errorf("%w: %s: %s", ErrRemote, to, out.Err)
	}
	if resp == nil {
		return nil
	}
	return Decode(out.Body, resp)
}

func (t *Transport) roundTrip(fc *Conn, method Method, body []byte, ctx context.Context) (rpcRespMsg, error) {
	var out rpcRespMsg
	timeout := t.cfg.IOTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	if err := fc.Send(frameRPCReq, &rpcReqMsg{Method: method, Body: body}); err != nil {
		return out, err
	}
	err := fc.ReadMsg(timeout, frameRPCResp, &out)
	return out, err
}

func (t *Transport) takeRPCConn(ctx context.Context, pi Peer) (*Conn, error) {
	t.rpc.Lock()
	idle := t.rpc.idle[pi.Name]
	for len(idle) > 0 {
		c := idle[len(idle)-1]
		idle = idle[:len(idle)-1]
		t.rpc.idle[pi.Name] = idle
		if time.Since(c.idleSince) < rpcIdleTimeout && c.addr == pi.Addr {
			t.rpc.Unlock()
			return c.fc, nil
		}
		c.fc.Close()
	}
	t.rpc.Unlock()
	return t.Dial(ctx, pi, KindRPC)
}

// rpcIdleTimeout is how long an idle call connection is kept; the callee
// closes inbound connections idle for longer than IdleTimeoutFactor *
// IOTimeout, so this stays well below that.
const rpcIdleTimeout = 30 * time.Second

type idleConn struct {
	fc        *Conn
	addr      string
	idleSince time.Time
}

func (t *Transport) putRPCConn(name string, fc *Conn) {
	t.rpc.Lock()
	defer t.rpc.Unlock()
	if t.rpc.closed || len(t.rpc.idle[name]) >= t.cfg.MaxIdleRPCConns {
		fc.Close()
		return
	}
	t.rpc.idle[name] = append(t.rpc.idle[name], idleConn{fc: fc, addr: fc.c.RemoteAddr().String(), idleSince: time.Now()})
}

// closeRPCConns closes every idle call connection; later ones are closed
// as they are returned.
func (t *Transport) closeRPCConns() {
	t.rpc.Lock()
	defer t.rpc.Unlock()
	t.rpc.closed = true
	for _, cs := range t.rpc.idle {
		for _, c := range cs {
			c.fc.Close()
		}
	}
	t.rpc.idle = nil
}

// serveRPC answers a member's calls on one connection, in order, until
// the connection fails or stays idle for IdleTimeoutFactor * IOTimeout.
func (t *Transport) serveRPC(fc *Conn, from string) error {
	for {
		var req rpcReqMsg
		if err := fc.ReadMsg(IdleTimeoutFactor*t.cfg.IOTimeout, frameRPCReq, &req); err != nil {
			return err
		}
		out := t.dispatch(from, req)
		if err := fc.Send(frameRPCResp, &out); err != nil {
			return err
		}
	}
}

// dispatch runs one call's handler; a handler that panics is answered
// with an error (the connection and the process survive).
func (t *Transport) dispatch(from string, req rpcReqMsg) (out rpcRespMsg) {
	var h Handler
	if hs := t.handlers.Load(); hs != nil && req.Method > 0 && req.Method < methodLimit {
		h = hs[req.Method]
	}
	if h == nil {
		return rpcRespMsg{Err: fmt.Sprintf("no handler for %s on this node", req.Method)}
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.IOTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("peer call handler panicked; refused the call", zap.Stringer("method", req.Method), zap.String("peer", from), zap.Any("panic", r))
			out = rpcRespMsg{Err: "the handler failed"}
		}
	}()
	resp, err := h(ctx, from, func(v any) error { return Decode(req.Body, v) })
	if err != nil {
		return rpcRespMsg{Err: err.Error()}
	}
	body, err := Marshal(resp)
	if err != nil {
		return rpcRespMsg{Err: "encode the answer: " + err.Error()}
	}
	return rpcRespMsg{Body: body}
}
