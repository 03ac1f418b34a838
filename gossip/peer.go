package gossip

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/countmesh/countmesh/gossip/transport"
	"go.uber.org/zap"
)

var errAckTimeout = errors.New("gossip: peer did not acknowledge in time")

// frame is a sent batch awaiting its ack.
type frame struct {
	id   uint64
	c    content
	sent time.Time
}

// peer is the stream of this node's changes to one other node: a bounded
// queue that Publish fills without blocking, a goroutine that connects and
// sends the queue's coalesced content FlushInterval after the first change,
// and a goroutine per connection that reads acks.
type peer struct {
	m     *Mesh
	info  peerInfo
	relay bool // frames ask the receiver to relay into its region

	stop     chan struct{} // closed by close
	stopOnce sync.Once
	wakeCh   chan struct{} // something to do: a change queued, an ack, a drain

	mu        sync.Mutex // guards the fields below
	q         *outQueue
	inflight  []*frame      // sent, not acknowledged, in id order
	nextID    uint64        // id of the last frame sent
	connected bool          // a connection is up
	lastLag   time.Duration // publish-to-ack time of the last acked frame
	gapSince  time.Time     // publish time of the first dropped batch not yet repaired
}

func newPeer(m *Mesh, info peerInfo, relay bool) *peer {
	return &peer{m: m, info: info, relay: relay, stop: make(chan struct{}), wakeCh: make(chan struct{}, 1), q: newOutQueue()}
}

func (p *peer) close() { p.stopOnce.Do(func() { close(p.stop) }) }

func (p *peer) kick() {
	select {
	case p.wakeCh <- struct{}{}:
	default:
	}
}

// enqueue queues b for the peer, or counts a drop when the queue is full.
func (p *peer) enqueue(b Batch, at time.Time) {
	p.mu.Lock()
	ok := p.q.add(b, at, p.m.cfg.MaxQueueBytes)
	if !ok && p.gapSince.IsZero() {
		p.gapSince = at
	}
	p.mu.Unlock()
	if !ok {
		p.m.stats.Drops.Add(1)
		p.m.stats.DroppedDeltas.Add(uint64(len(b.Deltas)))
		return
	}
	p.kick()
}

// repaired records that an anti-entropy exchange with the peer, started at
// start, completed: drops before start are repaired.
func (p *peer) repaired(start time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.gapSince.IsZero() && p.gapSince.Before(start) {
		p.gapSince = time.Time{}
	}
}

func (p *peer) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.q.empty() && len(p.inflight) == 0
}

// draining reports whether the peer is connected and still has something
// to send or to see acknowledged.
func (p *peer) draining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connected && (!p.q.empty() || len(p.inflight) > 0)
}

// lag returns the replication lag towards the peer (see PeerLag).
func (p *peer) lag(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	lag := p.lastLag
	oldest := p.q.oldest()
	if len(p.inflight) > 0 {
		if t := p.inflight[0].c.oldest; !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if !p.gapSince.IsZero() && (oldest.IsZero() || p.gapSince.Before(oldest)) {
		oldest = p.gapSince
	}
	if !oldest.IsZero() {
		lag = max(lag, now.Sub(oldest))
	}
	return lag
}

// peerConn is one connection to the peer, with the goroutine reading acks.
type peerConn struct {
	fc       *transport.Conn
	failed   chan struct{} // closed when the connection fails
	failOnce sync.Once
	err      error // set before failed is closed
}

func (pc *peerConn) fail(err error) {
	pc.failOnce.Do(func() {
		pc.err = err
		close(pc.failed)
		pc.fc.Close()
	})
}

// run is the peer's goroutine. It sleeps while the peer is idle; the first
// change queued (or an ack, or a drain) wakes it and arms a flush timer, so
// the changes of one FlushInterval go out together, coalesced.
func (p *peer) run() {
	defer p.m.wg.Done()
	cfg := &p.m.cfg
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			flush.Reset(d)
			armed = true
		}
	}
	var pc *peerConn
	var failed <-chan struct{}
	var nextDial time.Time
	var backoff time.Duration
	lost := false // the stream lost batches (a failed connection or dial) since it last connected
	defer func() {
		flush.Stop()
		if pc != nil {
			pc.fail(errors.New("peer stopped"))
		}
	}()
	for {
		select {
		case <-p.stop:
			return
		case <-p.m.peerDone:
			return
		case <-p.wakeCh:
			if !p.idle() {
				arm(cfg.FlushInterval)
			}
			continue
		case <-flush.C:
			armed = false
		case <-failed:
		}
		if pc != nil && isDone(pc.failed) {
			p.connectionLost(pc.err)
			lost = true
			pc, failed = nil, nil
			backoff = min(max(2*backoff, cfg.FlushInterval), 10*cfg.FlushInterval)
			nextDial = time.Now().Add(backoff)
		}
		if p.idle() {
			continue
		}
		if pc == nil {
			if wait := time.Until(nextDial); wait > 0 {
				arm(wait)
				continue
			}
			var err error
			if pc, err = p.connect(); err != nil {
				lost = true
				p.m.setReachable(p.info.name, false)
				p.m.log.Debug("replication: dial failed", zap.String("peer", p.info.name), zap.Error(err))
				backoff = min(max(2*backoff, cfg.FlushInterval), 10*cfg.FlushInterval)
				nextDial = time.Now().Add(backoff)
				arm(backoff)
				continue
			}
			failed = pc.failed
			backoff = 0
			p.m.setReachable(p.info.name, true)
			if lost {
				// What this stream lost while the peer was out of reach
				// (a partition, a restart) is repaired now, not when a
				// periodic round happens to pick this peer.
				lost = false
				p.m.healExchange(p.info)
			}
		}
		if err := p.send(pc); err != nil {
			pc.fail(err)
		}
		if !p.idle() {
			arm(cfg.FlushInterval) // more queued, or acks to wait for (and time out)
		}
	}
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// connectionLost puts the unacknowledged frames back in the queue, to be
// sent again on the next connection.
func (p *peer) connectionLost(err error) {
	p.mu.Lock()
	n := len(p.inflight)
	for _, f := range p.inflight {
		p.q.requeue(&f.c)
	}
	p.inflight = nil
	p.connected = false
	p.mu.Unlock()
	lvl := zap.DebugLevel
	if !errors.Is(err, io.EOF) && !errors.Is(err, errAckTimeout) {
		lvl = zap.InfoLevel
	}
	p.m.log.Check(lvl, "replication: stream lost").Write(zap.String("peer", p.info.name), zap.Int("requeued_frames", n), zap.Error(err))
}

func (p *peer) connect() (*peerConn, error) {
	m := p.m
	fc, err := m.tr.Dial(m.ctx, p.info.peer(), transport.KindStream)
	if err != nil {
		return nil, err
	}
	pc := &peerConn{fc: fc, failed: make(chan struct{})}
	p.mu.Lock()
	p.connected = true
	p.mu.Unlock()
	m.wg.Add(1)
	go p.readAcks(pc)
	return pc, nil
}

// readAcks reads the peer's acks until the connection fails.
func (p *peer) readAcks(pc *peerConn) {
	defer p.m.wg.Done()
	for {
		// No read deadline: an idle stream has nothing to acknowledge; send
		// notices acks that are overdue.
		typ, body, err := pc.fc.ReadFrame(0)
		if err != nil {
			pc.fail(err)
			return
		}
		var ack transport.AckMsg
		if typ != transport.FrameAck {
			pc.fail(fmt.Errorf("%w: frame type %d on a stream, want an ack", ErrProtocol, typ))
			return
		}
		if err := transport.Decode(body, &ack); err != nil {
			pc.fail(err)
			return
		}
		p.acked(ack.ID)
		p.kick()
	}
}

func (p *peer) acked(id uint64) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	i := 0
	for i < len(p.inflight) && p.inflight[i].id <= id {
		if t := p.inflight[i].c.oldest; !t.IsZero() {
			p.lastLag = now.Sub(t)
		}
		p.inflight[i] = nil
		i++
	}
	p.inflight = p.inflight[i:]
}

// send writes as many frames as the in-flight window allows, then flushes.
func (p *peer) send(pc *peerConn) error {
	m := p.m
	cfg := &m.cfg
	wrote := false
	for {
		p.mu.Lock()
		if len(p.inflight) > 0 && time.Since(p.inflight[0].sent) > cfg.IOTimeout {
			p.mu.Unlock()
			return errAckTimeout
		}
		if len(p.inflight) >= cfg.MaxInflightFrames || p.q.empty() {
			p.mu.Unlock()
			break
		}
		c := p.q.take(cfg.MaxFrameDeltas)
		p.nextID++
		f := &frame{id: p.nextID, c: c, sent: time.Now()}
		p.inflight = append(p.inflight, f)
		p.mu.Unlock()
		msg := transport.BatchMsg{ID: f.id, Relay: p.relay, Batch: transport.ToWire(c.batch())}
		if err := pc.fc.WriteFrame(transport.FrameBatch, &msg); err != nil {
			return err
		}
		m.stats.DeltasStreamed.Add(uint64(len(c.deltas)))
		wrote = true
	}
	if wrote {
		return pc.fc.Flush()
	}
	return nil
}
