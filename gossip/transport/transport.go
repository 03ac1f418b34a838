package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/gossip/internal/stats"
)

// IdleTimeoutFactor, times IOTimeout, is how long an inbound stream or
// call connection may stay silent before it is closed.
const IdleTimeoutFactor = 6

// Config configures a Transport; package gossip fills it from its own
// Config (see gossip.Config for the meaning and defaults of each field).
type Config struct {
	// Name and Region are this node's, sent in every hello.
	Name, Region string
	// Network carries the connections; nil is TCP.
	Network Network
	// TLS, when set, runs every connection over mutual TLS.
	TLS *PeerTLS
	// IOTimeout bounds each read and write; DialTimeout a connection's
	// opening.
	IOTimeout, DialTimeout time.Duration
	// MaxFrameBytes refuses larger frames; MaxInboundConns bounds the
	// accepted connections; MaxIdleRPCConns the idle call connections
	// kept per member.
	MaxFrameBytes, MaxInboundConns, MaxIdleRPCConns int
	// Logger; nil logs nothing.
	Logger *zap.Logger
}

// PeerTLS is the mutual TLS of the peer listener (gossip.Config.TLS).
type PeerTLS struct {
	// Server configures inbound connections; it must require and verify
	// a client certificate (tls.RequireAndVerifyClientCert).
	Server *tls.Config
	// Client returns the configuration for dialing the member called
	// name ("" for a probe of an address whose member is not known); it
	// must verify that the server's certificate chains to the CA and,
	// when name is not empty, was issued to name.
	Client func(name string) *tls.Config
}

// Peer is what dialing a member needs.
type Peer struct {
	Name, Region string
	// Addr is the member's peer listener address.
	Addr string
}

// Members answers the transport's questions about membership; package
// gossip implements it.
type Members interface {
	// IsMember reports whether name is a member this node knows, in any
	// state: only members may open streams, exchanges and calls. It must
	// not block; the transport polls it for a while when a hello names a
	// member not known yet.
	IsMember(name string) bool
	// Lookup returns what dialing name needs, for a verified member that
	// did not leave.
	Lookup(name string) (Peer, bool)
}

// ServeFunc answers an inbound connection of one kind after its hello.
type ServeFunc func(c *Conn, h Hello) error

// Transport is a node's peer listener and its outgoing connections: the
// one way nodes talk. It is safe for concurrent use.
type Transport struct {
	cfg     Config
	log     *zap.Logger
	stats   *stats.Counters
	members Members
	serve   map[uint8]ServeFunc // by connection kind; set before Listen

	listener net.Listener

	inbound struct {
		sync.Mutex                       // guards conns and closed
		conns      map[net.Conn]struct{} // accepted connections, closed by Close
		closed     bool
	}

	// handlers answer peer calls, by method (copy on write).
	handlers   atomic.Pointer[[methodLimit]Handler]
	handlersMu sync.Mutex // serialises Handle

	rpc struct {
		sync.Mutex                       // guards idle and closed
		idle       map[string][]idleConn // idle call connections, by member name
		closed     bool
	}

	refusedOnce sync.Once // the connection limit is logged once

	ctx       context.Context // cancelled by Close: aborts handshakes and handlers
	cancel    context.CancelFunc
	done      chan struct{}  // closed by Close: stops the accept loop and waits
	wg        sync.WaitGroup // the accept loop and the inbound connections
	closeOnce sync.Once
}

// New returns a transport that counts its traffic in st and asks members
// who may connect. It does no I/O; Listen does.
func New(cfg Config, st *stats.Counters, members Members) *Transport {
	if cfg.Network == nil {
		cfg.Network = TCPNetwork{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	t := &Transport{cfg: cfg, log: cfg.Logger, stats: st, members: members, serve: make(map[uint8]ServeFunc), done: make(chan struct{})}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.inbound.conns = make(map[net.Conn]struct{})
	t.rpc.idle = make(map[string][]idleConn)
	return t
}

// Serve sets what answers inbound connections of kind (KindStream,
// KindAE); call it before Listen. Calls (KindRPC) and probes (KindPing)
// are the transport's own.
func (t *Transport) Serve(kind uint8, fn ServeFunc) { t.serve[kind] = fn }

// Listen opens the peer listener at addr and accepts connections in the
// background until Close; it returns the listener's address.
func (t *Transport) Listen(addr string) (net.Addr, error) {
	l, err := t.cfg.Network.Listen(addr)
	if err != nil {
		return nil, err
	}
	t.listener = l
	t.wg.Add(1)
	go t.acceptLoop()
	return l.Addr(), nil
}

// Close stops the listener, closes the connections it accepted and the
// idle call connections, and waits for the inbound handlers. It is
// idempotent.
func (t *Transport) Close() {
	t.closeOnce.Do(func() {
		t.cancel()
		close(t.done)
		t.closeListener()
		t.closeRPCConns()
		t.wg.Wait()
	})
}

// InboundConns returns the connections the peer listener holds now.
func (t *Transport) InboundConns() int {
	t.inbound.Lock()
	defer t.inbound.Unlock()
	return len(t.inbound.conns)
}

// acceptLoop accepts replication connections until the listener closes.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || t.ctx.Err() != nil {
				return
			}
			// Temporary failures (too many open files): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("replication: accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-time.After(delay):
				continue
			case <-t.done:
				return
			}
		}
		delay = 0
		t.inbound.Lock()
		if t.inbound.closed {
			t.inbound.Unlock()
			c.Close()
			return
		}
		if len(t.inbound.conns) >= t.cfg.MaxInboundConns {
			t.inbound.Unlock()
			c.Close()
			t.stats.RefusedConns.Add(1)
			t.refusedOnce.Do(func() {
				t.log.Warn("peer listener: connection limit reached; closing new connections", zap.Int("max_inbound_conns", t.cfg.MaxInboundConns))
			})
			continue
		}
		t.inbound.conns[c] = struct{}{}
		t.wg.Add(1)
		t.inbound.Unlock()
		go t.serveConn(c)
	}
}

func (t *Transport) serveConn(c net.Conn) {
	defer t.wg.Done()
	defer func() {
		c.Close()
		t.inbound.Lock()
		delete(t.inbound.conns, c)
		t.inbound.Unlock()
	}()
	tc, certName, err := t.peerIdentity(c)
	if err != nil {
		t.stats.RefusedPeers.Add(1)
		t.log.Debug("peer listener: refused a connection", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
		return
	}
	c = tc
	// Nothing larger than a hello is read before the peer says who it is.
	fc := NewConn(c, t.stats, "", t.cfg.IOTimeout, maxHelloBytes)
	var h Hello
	if err := fc.ReadMsg(t.cfg.IOTimeout, FrameHello, &h); err != nil {
		t.stats.RefusedPeers.Add(1)
		t.log.Debug("replication: bad hello", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
		return
	}
	if h.Proto != ProtoVersion {
		t.log.Warn("replication: peer speaks another protocol version; upgrade the older node",
			zap.String("peer", h.Name), zap.Uint8("version", h.Proto), zap.Uint8("want", ProtoVersion))
		return
	}
	if err := t.checkHello(h, certName); err != nil {
		t.stats.RefusedPeers.Add(1)
		t.log.Warn("peer listener: refused a peer", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
		return
	}
	fc.maxSize = t.cfg.MaxFrameBytes
	fc.SetRegion(h.Region)
	switch h.Kind {
	case KindRPC:
		err = t.serveRPC(fc, h.Name)
	case KindPing:
	default:
		if serve := t.serve[h.Kind]; serve != nil {
			err = serve(fc, h)
		} else {
			err = fmt.Errorf("%w: connection kind %d", ErrProtocol, h.Kind)
		}
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.log.Debug("replication: inbound connection ended", zap.String("peer", h.Name), zap.Error(err))
	}
}

// checkHello refuses a hello whose fields are out of bounds, whose name is
// not the one the peer's certificate was issued to (with TLS), or, for
// anything but a probe, whose name is not a member this node knows.
func (t *Transport) checkHello(h Hello, certName string) error {
	if h.Name == "" || len(h.Name) > maxNameLen || len(h.Region) > maxRegionLen {
		return fmt.Errorf("%w: hello with a name of %d bytes and a region of %d bytes", ErrProtocol, len(h.Name), len(h.Region))
	}
	if h.Name == t.cfg.Name {
		return fmt.Errorf("%w: a peer calls itself %q, this node's own name", ErrProtocol, h.Name)
	}
	if certName != "" && certName != h.Name {
		return fmt.Errorf("%w: the hello names %q but the certificate was issued to %q", ErrProtocol, h.Name, certName)
	}
	switch h.Kind {
	case KindStream, KindAE, KindRPC:
		if !t.awaitMember(h.Name) {
			return fmt.Errorf("%w: %q is not a member of this mesh", ErrProtocol, h.Name)
		}
	case KindPing:
	default:
		return fmt.Errorf("%w: connection kind %d", ErrProtocol, h.Kind)
	}
	return nil
}

// memberWait bounds how long a hello from a name this node does not know
// yet waits for membership to catch up: a node that just joined through
// another member syncs with this one before the join's gossip has reached
// it.
const memberWait = 2 * time.Second

// awaitMember reports whether name is a member this node knows, waiting
// up to memberWait (or the I/O timeout, if shorter) for membership to
// learn of it.
func (t *Transport) awaitMember(name string) bool {
	deadline := time.Now().Add(min(memberWait, t.cfg.IOTimeout))
	for {
		if t.members.IsMember(name) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-t.done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Dial connects to a member's peer listener (TLS when configured,
// checking that the answering node is pi.Name) and sends the hello.
func (t *Transport) Dial(ctx context.Context, pi Peer, kind uint8) (*Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	c, err := t.cfg.Network.Dial(dctx, pi.Addr)
	if err != nil {
		return nil, err
	}
	if t.cfg.TLS != nil {
		tc := tls.Client(c, t.cfg.TLS.Client(pi.Name))
		if err := tc.HandshakeContext(dctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("gossip: TLS handshake with %s (%s): %w", pi.Name, pi.Addr, err)
		}
		c = tc
	}
	fc := NewConn(c, t.stats, pi.Region, t.cfg.IOTimeout, t.cfg.MaxFrameBytes)
	if kind == KindAE {
		fc.MarkAE()
	}
	if err := fc.Send(FrameHello, &Hello{Proto: ProtoVersion, Kind: kind, Name: t.cfg.Name, Region: t.cfg.Region}); err != nil {
		fc.Close()
		return nil, err
	}
	return fc, nil
}

// peerIdentity completes the TLS handshake of an inbound connection and
// returns the connection with the name the peer's certificate was issued
// to ("" without TLS).
func (t *Transport) peerIdentity(c net.Conn) (net.Conn, string, error) {
	if t.cfg.TLS == nil {
		return c, "", nil
	}
	tc := tls.Server(c, t.cfg.TLS.Server)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.IOTimeout)
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

func (t *Transport) closeListener() {
	if t.listener != nil {
		t.listener.Close()
	}
	t.inbound.Lock()
	t.inbound.closed = true
	for c := range t.inbound.conns {
		c.Close()
	}
	t.inbound.Unlock()
}
