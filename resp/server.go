package resp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/redcon"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/node"
)

// Config configures a Server.
type Config struct {
	// Node serves the commands.
	Node *node.Node
	// Tokens are the API tokens (--api-tokens-file): with them every
	// command but PING, AUTH, HELLO and QUIT needs AUTH first, and each key
	// is checked against the token's scope and namespaces. nil: no
	// authentication.
	Tokens *auth.Store
	// TLS, when set, serves TLS on the listener.
	TLS *tls.Config
	// Registerer receives the metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger; nil logs nothing.
	Logger *zap.Logger
	// Version is reported by INFO and HELLO as countmesh's version.
	Version string

	// MaxConns bounds the connections open at once; past it a new
	// connection is told "ERR max number of clients reached" and closed.
	MaxConns int
	// MaxCommandBytes bounds the bytes read without completing a command:
	// a client that sends more is told so and disconnected.
	MaxCommandBytes int
	// MaxPipeline bounds the commands handled before their replies are
	// written out, so that a deep pipeline never buffers unbounded replies.
	MaxPipeline int
	// WriteTimeout bounds the writing of a pipeline's replies: a client
	// that does not read them is disconnected.
	WriteTimeout time.Duration
	// IdleTimeout closes a connection that sends nothing for that long;
	// 0 keeps idle connections open (as Redis's "timeout 0").
	IdleTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultMaxConns        = 4096
	DefaultMaxCommandBytes = 8 << 20
	DefaultMaxPipeline     = node.MaxBatchOps
	DefaultWriteTimeout    = 30 * time.Second
)

// DefaultConfig returns a Config with the defaults; Node must still be set.
func DefaultConfig() Config {
	return Config{
		MaxConns:        DefaultMaxConns,
		MaxCommandBytes: DefaultMaxCommandBytes,
		MaxPipeline:     DefaultMaxPipeline,
		WriteTimeout:    DefaultWriteTimeout,
	}
}

// validate checks cfg and fills in the defaults of zero fields.
func (cfg *Config) validate() error {
	if cfg.Node == nil {
		return errors.New("resp: Config.Node is required")
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConns", &cfg.MaxConns, DefaultMaxConns},
		{"MaxCommandBytes", &cfg.MaxCommandBytes, DefaultMaxCommandBytes},
		{"MaxPipeline", &cfg.MaxPipeline, DefaultMaxPipeline},
	} {
		if *f.v < 0 {
			return fmt.Errorf("resp: Config.%s must be positive (0: the default %d), got %d", f.name, f.def, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout < 0 {
		return fmt.Errorf("resp: Config.IdleTimeout must not be negative, got %v", cfg.IdleTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	return nil
}

// Server is the Redis protocol listener over a node.
type Server struct {
	cfg     Config
	node    *node.Node
	log     *zap.Logger
	metrics *metrics

	// ctx is the context of the node calls; cancel ends them when a
	// shutdown runs out of time.
	ctx    context.Context
	cancel context.CancelFunc

	// conns counts the open connections; nextID numbers them (CLIENT ID).
	conns  atomic.Int64
	nextID atomic.Int64
	// inflight counts the pipelines being handled; draining refuses new
	// ones during a shutdown.
	inflight atomic.Int64
	draining atomic.Bool

	// mu guards serving, ln, open and closing.
	mu      sync.Mutex
	serving bool
	ln      net.Listener
	// open holds the connections accepted and not yet ended, closed at
	// once when the listener closes.
	open    map[*session]struct{}
	closing bool
	served  chan struct{} // closed when Serve returns
	// closeOnce closes the listener once.
	closeOnce sync.Once
	closeErr  error
}

// New returns a Server over cfg.Node; Serve starts it.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, node: cfg.Node, log: cfg.Logger, metrics: m, served: make(chan struct{}), open: map[*session]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Serve accepts connections on ln (wrapped in TLS when Config.TLS is set)
// until Shutdown or Close; it returns nil then.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	ln = &boundedListener{Listener: ln, max: int64(s.cfg.MaxCommandBytes)}
	s.mu.Lock()
	if s.serving || s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return errors.New("resp: Serve called twice or after Shutdown")
	}
	s.serving, s.ln = true, ln
	s.mu.Unlock()
	defer close(s.served)
	defer func() {
		// As redcon did: once the listener is closed, every connection is.
		ln.Close()
		s.mu.Lock()
		s.closing = true
		for sess := range s.open {
			sess.nc.Close()
		}
		s.mu.Unlock()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.log.Warn("RESP accept failed", zap.Error(err))
			time.Sleep(5 * time.Millisecond) // a full file table: do not spin
			continue
		}
		sess := s.accept(nc)
		if sess == nil {
			nc.Close()
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			s.conns.Add(-1)
			s.metrics.conns.Dec()
			continue
		}
		s.open[sess] = struct{}{}
		s.mu.Unlock()
		go s.serveConn(sess)
	}
}

// Shutdown stops accepting connections, lets the pipelines being handled
// finish (their writes are acknowledged), then closes every connection. When
// ctx ends first, the node calls still waiting are cancelled and the
// connections closed at once; the error says so.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var err error
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.inflight.Load() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("resp: shutdown: %d pipelines still running: %w", s.inflight.Load(), ctx.Err())
		case <-tick.C:
		}
	}
	s.cancel()
	s.mu.Lock()
	serving := s.serving
	s.mu.Unlock()
	if !serving {
		return err
	}
	// Closing the listener makes the accept loop close every connection
	// and return.
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		ln := s.ln
		s.mu.Unlock()
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			s.closeErr = fmt.Errorf("resp: close: %w", cerr)
		}
	})
	if s.closeErr != nil {
		return errors.Join(err, s.closeErr)
	}
	select {
	case <-s.served:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("resp: shutdown: %w", ctx.Err())
		}
	}
	return err
}

// Close closes the listener and every connection at once. It is
// idempotent.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// session is one connection's state. Only the connection's goroutine
// touches it.
type session struct {
	id   int64
	nc   net.Conn
	conn *boundedConn // nc, when it is one
	rd   *reader
	w    *redcon.Writer
	// closed is set once the session closed the connection itself (QUIT,
	// a failed write).
	closed bool
	proto  int    // 2 or 3, as HELLO set it
	name   string // CLIENT SETNAME
	// token is the token AUTH accepted ("" before), and grant what it
	// allows under tokens, the file loaded when it was checked: a token
	// reloaded away (SIGHUP) stops working on open connections too.
	token  string
	grant  *auth.Grant
	tokens *auth.Tokens
	// scratch is reused for formatting integers.
	scratch []byte
	// group collects a pipeline's consecutive increments.
	group writeGroup
	// lastNS is the namespace of the last key, reused while it repeats;
	// lastNSValid says it passed node.ValidateNamespace.
	lastNS      string
	lastNSValid bool
}

// accept admits a new connection: nil refuses it (the caller closes it).
func (s *Server) accept(nc net.Conn) *session {
	if s.draining.Load() {
		return nil
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		s.metrics.refused.Inc()
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
		return nil
	}
	s.metrics.conns.Inc()
	bc, _ := nc.(*boundedConn)
	return &session{id: s.nextID.Add(1), nc: nc, conn: bc, rd: newReader(nc), w: redcon.NewWriter(nc), proto: 2}
}

// serveConn reads the connection's pipelines and answers them until the
// client leaves, QUIT, an error or the listener's close.
func (s *Server) serveConn(sess *session) {
	var err error
	defer func() {
		sess.nc.Close()
		s.mu.Lock()
		delete(s.open, sess)
		s.mu.Unlock()
		s.closed(sess, err)
	}()
	for {
		if s.cfg.IdleTimeout > 0 {
			_ = sess.nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		var cmds [][][]byte
		cmds, err = sess.rd.read()
		if err != nil {
			var pe *protocolError
			if errors.As(err, &pe) {
				// As redcon: a protocol error is answered, then the
				// connection closed.
				sess.w.WriteError("ERR " + pe.Error())
				_ = s.flush(sess)
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return
		}
		s.handle(sess, cmds)
		if sess.closed {
			err = nil
			return
		}
	}
}

func (s *Server) closed(sess *session, err error) {
	s.conns.Add(-1)
	s.metrics.conns.Dec()
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errCommandTooLarge) {
		s.log.Debug("RESP connection ended", zap.String("remote", sess.nc.RemoteAddr().String()), zap.Error(err))
	}
}

// handle serves a pipeline: the commands read from the connection at
// once, so that consecutive writes share one commit. Their replies go out
// in one write (per Config.MaxPipeline commands).
func (s *Server) handle(sess *session, cmds [][][]byte) {
	if sess.conn != nil {
		sess.conn.commandDone()
	}
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if s.draining.Load() {
		sess.closed = true
		return
	}
	start := time.Now()
	for len(cmds) > 0 {
		chunk := cmds[:min(len(cmds), s.cfg.MaxPipeline)]
		cmds = cmds[len(chunk):]
		quit := s.exec(s.ctx, sess, chunk, sess.w)
		// Flushed here, chunk by chunk, so that a shutdown waiting for this
		// pipeline closes the connection only after its replies went out.
		if err := s.flush(sess); err != nil || quit {
			sess.closed = true
			break
		}
	}
	s.metrics.pipeline.Observe(time.Since(start).Seconds())
}

// flush writes the buffered replies within the write timeout.
func (s *Server) flush(sess *session) error {
	_ = sess.nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	return sess.w.Flush()
}

// errCommandTooLarge ends a connection that sent more than
// Config.MaxCommandBytes without completing a command.
var errCommandTooLarge = errors.New("resp: command too large")

// boundedListener wraps each accepted connection in a boundedConn.
type boundedListener struct {
	net.Listener
	max int64
}

func (l *boundedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &boundedConn{Conn: c, max: l.max}, nil
}

// boundedConn counts the bytes read since the last complete command and
// refuses to read past max: the reader buffers an incomplete command whole, so
// without this a client could make it buffer without end. It also passes
// what it reads through a lengthGuard. Its fields are touched only by the
// connection's goroutine (it reads and handles the pipelines).
type boundedConn struct {
	net.Conn
	max     int64
	pending int64
	guard   lengthGuard
	refused error
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if c.refused == nil && c.pending > c.max {
		c.refused = fmt.Errorf("a command of more than %d bytes: %w", c.max, errCommandTooLarge)
	}
	if c.refused != nil {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = fmt.Fprintf(c.Conn, "-ERR Protocol error: %s\r\n", strings.TrimSuffix(c.refused.Error(), ": "+errCommandTooLarge.Error()))
		return 0, c.refused
	}
	n, err := c.Conn.Read(p)
	c.pending += int64(n)
	if gerr := c.guard.check(p[:n], c.max); gerr != nil {
		// Nothing of this read reaches the reader; the next Read answers the
		// error and ends the connection.
		c.refused = gerr
		return 0, nil
	}
	return n, err
}

// commandDone marks the bytes read so far as parsed into commands.
func (c *boundedConn) commandDone() { c.pending = 0 }

// maxArgs bounds the arguments of one command (MGET and DEL take at most
// 10,000 keys).
const maxArgs = 1 << 16

// lengthGuard checks the lengths a client declares before the parser sees
// them, and refuses one over the bounds with an error that names the bound.
// (It was written for redcon v1.6.4's parser, which trusted them: a bulk
// length near 2^63 overflowed its bounds check and panicked, and a huge
// argument count made it loop that many times; the listener's own reader
// does neither, but keeps the guard's answers.) The guard follows the
// stream byte by byte across reads: a line that starts with '$' or '*' must
// declare at most the bounds. A payload that happens to hold a line of that
// shape ("...\n$99999999999\r\n...") is refused too, which only a
// contrived argument can do.
type lengthGuard struct {
	midLine bool   // not at the start of a line
	kind    byte   // '$' or '*' while reading a header's number, else 0
	value   uint64 // the number so far
}

// check passes the bytes b; an error says which length was too large.
func (g *lengthGuard) check(b []byte, maxBulk int64) error {
	for _, c := range b {
		switch {
		case g.kind != 0 && c >= '0' && c <= '9':
			g.value = g.value*10 + uint64(c-'0')
			limit := uint64(maxBulk)
			if g.kind == '*' {
				limit = maxArgs
			}
			if g.value > limit {
				what := "bulk length"
				if g.kind == '*' {
					what = "multibulk length"
				}
				return fmt.Errorf("invalid %s (more than %d): %w", what, limit, errCommandTooLarge)
			}
		case g.kind != 0 && (c == '+' || c == '-') && g.value == 0:
		case !g.midLine && (c == '$' || c == '*'):
			g.kind, g.value = c, 0
		default:
			g.kind = 0
		}
		g.midLine = c != '\n'
	}
	return nil
}
