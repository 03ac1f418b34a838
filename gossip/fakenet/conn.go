package fakenet

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// ErrReset is returned by a connection that the network broke: a partition
// cut it, one of its hosts went down, or a random reset was injected.
var ErrReset = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}

type chunk struct {
	data []byte
	at   time.Time // not readable before
}

// pipe is one direction of a connection: a bounded byte queue whose chunks
// become readable at their delivery time. A full pipe blocks the writer,
// which is how TCP pushes back on a sender whose receiver does not read.
type pipe struct {
	limit int

	mu       sync.Mutex // guards the fields below
	chunks   []chunk
	buffered int
	lastAt   time.Time
	eof      bool          // the writer closed its end
	err      error         // broken: reads and writes fail with err
	changed  chan struct{} // closed and replaced on every change
}

func newPipe(limit int) *pipe {
	return &pipe{limit: limit, changed: make(chan struct{})}
}

func (p *pipe) signalLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// breakWith makes every later read and write fail with err.
func (p *pipe) breakWith(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
		p.chunks = nil
		p.buffered = 0
		p.signalLocked()
	}
}

// closeWrite marks the end of the data: the reader gets io.EOF after it
// has read what was written.
func (p *pipe) closeWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.eof {
		p.eof = true
		p.signalLocked()
	}
}

func (p *pipe) read(b []byte, dl *deadline) (int, error) {
	for {
		if isClosed(dl.wait()) {
			return 0, os.ErrDeadlineExceeded
		}
		p.mu.Lock()
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return 0, err
		}
		var timer *time.Timer
		var timerC <-chan time.Time
		if len(p.chunks) > 0 {
			c := &p.chunks[0]
			wait := time.Until(c.at)
			if wait <= 0 {
				n := copy(b, c.data)
				c.data = c.data[n:]
				if len(c.data) == 0 {
					p.chunks[0] = chunk{}
					p.chunks = p.chunks[1:]
				}
				p.buffered -= n
				p.signalLocked()
				p.mu.Unlock()
				return n, nil
			}
			timer = time.NewTimer(wait)
			timerC = timer.C
		} else if p.eof {
			p.mu.Unlock()
			return 0, io.EOF
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-timerC:
		case <-dl.wait():
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (p *pipe) write(b []byte, delay time.Duration, dl *deadline) (int, error) {
	written := 0
	first := true
	for len(b) > 0 {
		if isClosed(dl.wait()) {
			return written, os.ErrDeadlineExceeded
		}
		p.mu.Lock()
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return written, err
		}
		if p.eof {
			p.mu.Unlock()
			return written, io.ErrClosedPipe
		}
		space := p.limit - p.buffered
		if space <= 0 {
			changed := p.changed
			p.mu.Unlock()
			select {
			case <-changed:
			case <-dl.wait():
			}
			continue
		}
		n := min(space, len(b))
		at := time.Now()
		if first {
			at = at.Add(delay)
			first = false
		}
		if at.Before(p.lastAt) {
			at = p.lastAt // keep the stream in order
		}
		p.lastAt = at
		p.chunks = append(p.chunks, chunk{data: append([]byte(nil), b[:n]...), at: at})
		p.buffered += n
		p.signalLocked()
		p.mu.Unlock()
		b = b[n:]
		written += n
	}
	return written, nil
}

// Conn is one end of a fake stream connection. It implements net.Conn,
// including deadlines.
type Conn struct {
	nw            *Network
	pair          *connPair
	local, remote net.Addr
	rd, wr        *pipe
	readDL        *deadline
	writeDL       *deadline
	closeOnce     sync.Once
}

// connPair is both ends of a connection, with the hosts they belong to, so
// that a partition can find and cut the connections that cross it.
type connPair struct {
	a, b         *Conn
	hostA, hostB string
}

var _ net.Conn = (*Conn)(nil)

func newConnPair(nw *Network, hostA, hostB string, addrA, addrB net.Addr, limit int) *connPair {
	ab, ba := newPipe(limit), newPipe(limit)
	cp := &connPair{hostA: hostA, hostB: hostB}
	cp.a = &Conn{nw: nw, pair: cp, local: addrA, remote: addrB, rd: ba, wr: ab, readDL: newDeadline(), writeDL: newDeadline()}
	cp.b = &Conn{nw: nw, pair: cp, local: addrB, remote: addrA, rd: ab, wr: ba, readDL: newDeadline(), writeDL: newDeadline()}
	return cp
}

// reset breaks both ends: every read and write fails with ErrReset.
func (cp *connPair) reset() {
	for _, p := range []*pipe{cp.a.rd, cp.a.wr} {
		p.breakWith(ErrReset)
	}
}

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	return c.rd.read(b, c.readDL)
}

// Write implements net.Conn. Each write is delivered after the network's
// stream delay; a random reset may break the connection instead.
func (c *Conn) Write(b []byte) (int, error) {
	delay, reset := c.nw.streamWriteFate()
	if reset {
		c.nw.resetPair(c.pair)
		return 0, ErrReset
	}
	return c.wr.write(b, delay, c.writeDL)
}

// Close implements net.Conn: the peer reads io.EOF after the data already
// written, and its writes fail.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.wr.closeWrite()
		c.rd.breakWith(net.ErrClosed)
		c.nw.forget(c.pair)
	})
	return nil
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.readDL.set(t)
	c.writeDL.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readDL.set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.writeDL.set(t)
	return nil
}

// IsReset reports whether err is a connection broken by the fake network.
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
