package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/gossip/internal/stats"
	"github.com/countmesh/countmesh/gossip/transport"
)

var errAckTimeout = errors.New("gossip: peer did not acknowledge in time")

// Config holds the stream settings (see gossip.Config for each one's
// meaning and default).
type Config struct {
	FlushInterval, IOTimeout                         time.Duration
	MaxQueueBytes, MaxInflightFrames, MaxFrameDeltas int
}

// Env is what the streams share with the mesh that owns them.
type Env struct {
	Config
	Stats *stats.Counters
	Log   *zap.Logger
	// Ctx aborts dials; Done, closed, stops every stream; WG counts the
	// streams' goroutines (the owner waits for it on close).
	Ctx  context.Context
	Done <-chan struct{}
	WG   *sync.WaitGroup
	// Dial opens a stream connection (transport.KindStream) to a peer.
	Dial func(ctx context.Context, p transport.Peer, kind uint8) (*transport.Conn, error)
	// Reachable records whether the last connection attempt to a peer
	// succeeded.
	Reachable func(name string, ok bool)
	// Reconnected runs when a stream that lost batches (a failed
	// connection or dial) connects again: the owner repairs what it lost.
	Reconnected func(p transport.Peer)
	// Apply merges a received batch durably; Relay forwards a batch
	// received from another region into this node's region.
	Apply func(b change.Batch) error
	Relay func(b change.Batch, from string)
}

// frame is a sent batch awaiting its ack.
type frame struct {
	id   uint64
	c    content
	sent time.Time
}

// Stream is the stream of this node's changes to one other node: a bounded
// queue that Publish fills without blocking, a goroutine that connects and
// sends the queue's coalesced content FlushInterval after the first change,
// and a goroutine per connection that reads acks.
type Stream struct {
	env   *Env
	info  transport.Peer
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

// New returns the stream of this node's changes to info; relay asks the
// receiver, a bridge, to relay them into its region. The owner adds one
// to env.WG and runs Run in a goroutine of its own.
func New(env *Env, info transport.Peer, relay bool) *Stream {
	return &Stream{env: env, info: info, relay: relay, stop: make(chan struct{}), wakeCh: make(chan struct{}, 1), q: newOutQueue()}
}

// To returns the peer the stream sends to.
func (p *Stream) To() transport.Peer { return p.info }

// Relays reports whether the stream asks its peer to relay.
func (p *Stream) Relays() bool { return p.relay }

func (p *Stream) Close() { p.stopOnce.Do(func() { close(p.stop) }) }

func (p *Stream) Kick() {
	select {
	case p.wakeCh <- struct{}{}:
	default:
	}
}

// Enqueue queues b for the peer, or counts a drop when the queue is full.
func (p *Stream) Enqueue(b change.Batch, at time.Time) {
	p.mu.Lock()
	ok := p.q.add(b, at, p.env.MaxQueueBytes)
	if !ok && p.gapSince.IsZero() {
		p.gapSince = at
	}
	p.mu.Unlock()
	if !ok {
		p.env.Stats.Drops.Add(1)
		p.env.Stats.DroppedDeltas.Add(uint64(len(b.Deltas)))
		return
	}
	p.Kick()
}

// Repaired records that an anti-entropy exchange with the peer, started at
// start, completed: drops before start are repaired.
func (p *Stream) Repaired(start time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.gapSince.IsZero() && p.gapSince.Before(start) {
		p.gapSince = time.Time{}
	}
}

func (p *Stream) Idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.q.empty() && len(p.inflight) == 0
}

// Draining reports whether the peer is connected and still has something
// to send or to see acknowledged.
func (p *Stream) Draining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connected && (!p.q.empty() || len(p.inflight) > 0)
}

// Lag returns the replication lag towards the peer (see PeerLag).
func (p *Stream) Lag(now time.Time) time.Duration {
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

// Run is the peer's goroutine. It sleeps while the peer is idle; the first
// change queued (or an ack, or a drain) wakes it and arms a flush timer, so
// the changes of one FlushInterval go out together, coalesced.
func (p *Stream) Run() {
	defer p.env.WG.Done()
	cfg := &p.env.Config
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
		case <-p.env.Done:
			return
		case <-p.wakeCh:
			if !p.Idle() {
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
		if p.Idle() {
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
				p.env.Reachable(p.info.Name, false)
				p.env.Log.Debug("replication: dial failed", zap.String("peer", p.info.Name), zap.Error(err))
				backoff = min(max(2*backoff, cfg.FlushInterval), 10*cfg.FlushInterval)
				nextDial = time.Now().Add(backoff)
				arm(backoff)
				continue
			}
			failed = pc.failed
			backoff = 0
			p.env.Reachable(p.info.Name, true)
			if lost {
				// What this stream lost while the peer was out of reach
				// (a partition, a restart) is repaired now, not when a
				// periodic round happens to pick this peer.
				lost = false
				p.env.Reconnected(p.info)
			}
		}
		if err := p.send(pc); err != nil {
			pc.fail(err)
		}
		if !p.Idle() {
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
func (p *Stream) connectionLost(err error) {
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
	p.env.Log.Check(lvl, "replication: stream lost").Write(zap.String("peer", p.info.Name), zap.Int("requeued_frames", n), zap.Error(err))
}

func (p *Stream) connect() (*peerConn, error) {
	fc, err := p.env.Dial(p.env.Ctx, p.info, transport.KindStream)
	if err != nil {
		return nil, err
	}
	pc := &peerConn{fc: fc, failed: make(chan struct{})}
	p.mu.Lock()
	p.connected = true
	p.mu.Unlock()
	p.env.WG.Add(1)
	go p.readAcks(pc)
	return pc, nil
}

// readAcks reads the peer's acks until the connection fails.
func (p *Stream) readAcks(pc *peerConn) {
	defer p.env.WG.Done()
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
			pc.fail(fmt.Errorf("%w: frame type %d on a stream, want an ack", transport.ErrProtocol, typ))
			return
		}
		if err := transport.Decode(body, &ack); err != nil {
			pc.fail(err)
			return
		}
		p.acked(ack.ID)
		p.Kick()
	}
}

func (p *Stream) acked(id uint64) {
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
func (p *Stream) send(pc *peerConn) error {
	cfg := &p.env.Config
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
		p.env.Stats.DeltasStreamed.Add(uint64(len(c.deltas)))
		wrote = true
	}
	if wrote {
		return pc.fc.Flush()
	}
	return nil
}

// Receive applies the batches a peer streams, acknowledging each once
// the replica has made it durable, and relays those marked for relay.
func (e *Env) Receive(fc *transport.Conn, h transport.Hello) error {
	for {
		var msg transport.BatchMsg
		// A stream is idle while its sender has nothing to send; one idle
		// for long is closed (the sender reconnects when it has data), so a
		// sender that vanished without a reset does not pin this goroutine.
		typ, body, err := fc.ReadFrame(transport.IdleTimeoutFactor * e.IOTimeout)
		if err != nil {
			return err
		}
		if typ != transport.FrameBatch {
			return fmt.Errorf("%w: frame type %d on a stream, want a batch", transport.ErrProtocol, typ)
		}
		if err := transport.Decode(body, &msg); err != nil {
			return err
		}
		b, err := transport.FromWire(msg.Batch)
		if err != nil {
			return err
		}
		if !b.Empty() {
			if err := e.Apply(b); err != nil {
				e.Stats.ApplyErrors.Add(1)
				e.Log.Warn("replication: replica refused a batch; the sender will retry", zap.String("peer", h.Name), zap.Error(err))
				return err
			}
		}
		e.Stats.DeltasReceived.Add(uint64(len(b.Deltas)))
		if msg.Relay {
			e.Relay(b, h.Name)
		}
		if err := fc.Send(transport.FrameAck, &transport.AckMsg{ID: msg.ID}); err != nil {
			return err
		}
	}
}
