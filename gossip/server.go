package gossip

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"
)

// acceptLoop accepts replication connections until the listener closes.
func (m *Mesh) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := m.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || isDone(m.peerDone) {
				return
			}
			// Temporary failures (too many open files): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("replication: accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-time.After(delay):
				continue
			case <-m.peerDone:
				return
			}
		}
		delay = 0
		m.inbound.Lock()
		if m.inbound.closed {
			m.inbound.Unlock()
			c.Close()
			return
		}
		if len(m.inbound.conns) >= m.cfg.MaxInboundConns {
			m.inbound.Unlock()
			c.Close()
			m.stats.refusedConns.Add(1)
			m.refusedOnce.Do(func() {
				m.log.Warn("peer listener: connection limit reached; closing new connections", zap.Int("max_inbound_conns", m.cfg.MaxInboundConns))
			})
			continue
		}
		m.inbound.conns[c] = struct{}{}
		m.wg.Add(1)
		m.inbound.Unlock()
		go m.serveConn(c)
	}
}

func (m *Mesh) serveConn(c net.Conn) {
	defer m.wg.Done()
	defer func() {
		c.Close()
		m.inbound.Lock()
		delete(m.inbound.conns, c)
		m.inbound.Unlock()
	}()
	tc, certName, err := m.peerIdentity(c)
	if err != nil {
		m.stats.refusedPeers.Add(1)
		m.log.Debug("peer listener: refused a connection", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
		return
	}
	c = tc
	// Nothing larger than a hello is read before the peer says who it is.
	fc := newFrameConn(c, &m.stats, "", m.cfg.IOTimeout, maxHelloBytes)
	var h helloMsg
	if err := fc.readMsg(m.cfg.IOTimeout, frameHello, &h); err != nil {
		m.stats.refusedPeers.Add(1)
		m.log.Debug("replication: bad hello", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
		return
	}
	if h.Proto != protoVersion {
		m.log.Warn("replication: peer speaks another protocol version; upgrade the older node",
			zap.String("peer", h.Name), zap.Uint8("version", h.Proto), zap.Uint8("want", protoVersion))
		return
	}
	if err := m.checkHello(h, certName); err != nil {
		m.stats.refusedPeers.Add(1)
		m.log.Warn("peer listener: refused a peer", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
		return
	}
	fc.maxSize = m.cfg.MaxFrameBytes
	fc.setRegion(h.Region)
	switch h.Kind {
	case kindStream:
		err = m.serveStream(fc, h)
	case kindAE:
		err = m.serveAE(fc, h)
	case kindRPC:
		err = m.serveRPC(fc, h.Name)
	case kindPing:
	default:
		err = fmt.Errorf("%w: connection kind %d", ErrProtocol, h.Kind)
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		m.log.Debug("replication: inbound connection ended", zap.String("peer", h.Name), zap.Error(err))
	}
}

// checkHello refuses a hello whose fields are out of bounds, whose name is
// not the one the peer's certificate was issued to (with TLS), or, for
// anything but a probe, whose name is not a member this node knows.
func (m *Mesh) checkHello(h helloMsg, certName string) error {
	if h.Name == "" || len(h.Name) > maxNameLen || len(h.Region) > maxRegionLen {
		return fmt.Errorf("%w: hello with a name of %d bytes and a region of %d bytes", ErrProtocol, len(h.Name), len(h.Region))
	}
	if h.Name == m.cfg.Name {
		return fmt.Errorf("%w: a peer calls itself %q, this node's own name", ErrProtocol, h.Name)
	}
	if certName != "" && certName != h.Name {
		return fmt.Errorf("%w: the hello names %q but the certificate was issued to %q", ErrProtocol, h.Name, certName)
	}
	switch h.Kind {
	case kindStream, kindAE, kindRPC:
		if !m.awaitMember(h.Name) {
			return fmt.Errorf("%w: %q is not a member of this mesh", ErrProtocol, h.Name)
		}
	case kindPing:
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
func (m *Mesh) awaitMember(name string) bool {
	deadline := time.Now().Add(min(memberWait, m.cfg.IOTimeout))
	for {
		if m.knownMember(name) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-m.peerDone:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// streamIdleTimeout, times IOTimeout, is how long an inbound stream may
// stay silent.
const streamIdleTimeout = 6

// serveStream applies the batches a peer streams, acknowledging each once
// the replica has made it durable, and relays those marked for relay.
func (m *Mesh) serveStream(fc *frameConn, h helloMsg) error {
	for {
		var msg batchMsg
		// A stream is idle while its sender has nothing to send; one idle
		// for long is closed (the sender reconnects when it has data), so a
		// sender that vanished without a reset does not pin this goroutine.
		typ, body, err := fc.readFrame(streamIdleTimeout * m.cfg.IOTimeout)
		if err != nil {
			return err
		}
		if typ != frameBatch {
			return fmt.Errorf("%w: frame type %d on a stream, want a batch", ErrProtocol, typ)
		}
		if err := decode(body, &msg); err != nil {
			return err
		}
		b, err := fromWire(msg.Batch)
		if err != nil {
			return err
		}
		if !b.Empty() {
			if err := m.replica.Apply(b); err != nil {
				m.stats.applyErrors.Add(1)
				m.log.Warn("replication: replica refused a batch; the sender will retry", zap.String("peer", h.Name), zap.Error(err))
				return err
			}
		}
		m.stats.deltasReceived.Add(uint64(len(b.Deltas)))
		if msg.Relay {
			m.forward(b, h.Name)
		}
		if err := fc.writeFrame(frameAck, &ackMsg{ID: msg.ID}); err != nil {
			return err
		}
		if err := fc.flush(); err != nil {
			return err
		}
	}
}
