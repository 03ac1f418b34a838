package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/antientropy"
	"github.com/countmesh/countmesh/gossip/internal/stats"
	"github.com/countmesh/countmesh/gossip/stream"
	"github.com/countmesh/countmesh/gossip/transport"
)

// Mesh states.
const (
	stateNew int32 = iota
	stateStarting
	stateStarted
	stateLeft
	stateClosed
)

// Mesh is this node's membership in the mesh and its replication with the
// other nodes. Create it with New, then Start, Join and SyncOnce; Publish
// every durable local change; Close on shutdown. It is safe for concurrent
// use.
type Mesh struct {
	cfg     Config
	log     *zap.Logger
	replica Replica
	selfID  crdt.NodeID
	tr      *transport.Transport // the peer listener, dials and calls
	streams *stream.Env          // what the streams to peers share
	ae      *antientropy.Exchanger
	stats   stats.Counters

	state atomic.Int32

	// Set by Start, read-only afterwards.
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring // nil without gossip encryption
	self    NodeInfo

	meta   atomic.Pointer[[]byte] // this node's memberlist meta
	routes atomic.Pointer[routes] // alive peers; never nil after New

	members struct {
		sync.Mutex                          // guards m and joinAddrs
		m          map[string]*memberRecord // every member seen but self, by name
		joinAddrs  []string                 // addresses given to Join, retried in the background
	}

	peers struct {
		sync.RWMutex                           // guards m and closed
		m            map[string]*stream.Stream // streams to peers, by name
		closed       bool
	}

	reach struct {
		sync.Mutex                      // guards failing and probing
		failing    map[string]time.Time // members whose last connection attempt failed, since
		probing    map[string]bool      // replication addresses with a reconnect probe in flight
	}
	probeThen sync.Mutex // serialises what answered probes do (joins)

	rngMu sync.Mutex // guards rng
	rng   *rand.Rand

	ctx    context.Context // cancelled by Close: aborts dials and exchanges
	cancel context.CancelFunc

	loopDone chan struct{}   // closed to stop the anti-entropy and reconnect loops
	loopCtx  context.Context // cancelled with loopDone: aborts their dials
	loopStop context.CancelFunc
	loopWG   sync.WaitGroup // those loops
	peerDone chan struct{}  // closed to stop peers, the accept loop and handlers
	wg       sync.WaitGroup // those goroutines

	leaveOnce sync.Once
	leaveErr  error
	closeOnce sync.Once
	closeErr  error

	// heal tracks the exchanges started for members that came back.
	heal struct {
		sync.Mutex // guards stopped and Add on wg
		stopped    bool
		wg         sync.WaitGroup
	}

	spaces spaceRegistry // the sequence spaces of sharded namespaces seen
}

// New checks cfg and returns a mesh that replicates replica. It does no
// I/O; Start does.
func New(cfg Config, replica Replica) (*Mesh, error) {
	if replica == nil {
		return nil, fmt.Errorf("%w: replica must not be nil", ErrInvalidConfig)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.NodeID == 0 {
		cfg.NodeID = crdt.NodeIDFromName(cfg.Name)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	m := &Mesh{
		cfg:      cfg,
		log:      cfg.Logger.With(zap.String("node", cfg.Name)),
		replica:  replica,
		selfID:   cfg.NodeID,
		rng:      rand.New(rand.NewPCG(seed, uint64(cfg.NodeID))),
		loopDone: make(chan struct{}),
		peerDone: make(chan struct{}),
	}
	m.stats.SelfRegion = cfg.Region
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.loopCtx, m.loopStop = context.WithCancel(m.ctx)
	m.members.m = make(map[string]*memberRecord)
	m.peers.m = make(map[string]*stream.Stream)
	m.tr = transport.New(transport.Config{
		Name: cfg.Name, Region: cfg.Region, Network: cfg.Network, TLS: cfg.TLS,
		IOTimeout: cfg.IOTimeout, DialTimeout: cfg.DialTimeout, MaxFrameBytes: cfg.MaxFrameBytes,
		MaxInboundConns: cfg.MaxInboundConns, MaxIdleRPCConns: cfg.MaxIdleRPCConns, Logger: m.log,
	}, &m.stats, memberView{m})
	m.streams = &stream.Env{
		Config: stream.Config{FlushInterval: cfg.FlushInterval, IOTimeout: cfg.IOTimeout, MaxQueueBytes: cfg.MaxQueueBytes,
			MaxInflightFrames: cfg.MaxInflightFrames, MaxFrameDeltas: cfg.MaxFrameDeltas},
		Stats: &m.stats, Log: m.log, Ctx: m.ctx, Done: m.peerDone, WG: &m.wg,
		Dial: m.tr.Dial, Reachable: m.setReachable, Apply: m.applyFromPeer, Relay: m.forward,
		Reconnected: func(p transport.Peer) { m.healExchange(fromPeer(p)) },
	}
	m.tr.Serve(transport.KindStream, m.streams.Receive)
	m.ae = antientropy.New(antientropy.Config{IOTimeout: cfg.IOTimeout, Grace: cfg.AntiEntropyGrace,
		MaxFrameDeltas: cfg.MaxFrameDeltas, MaxConcurrent: cfg.MaxConcurrentAntiEntropy}, learningReplica{replica, m}, &m.stats,
		antientropy.Hooks{Dial: m.tr.Dial, Reachable: m.setReachable, Repaired: m.markRepaired, Wants: m.wants, Floor: floorOf(replica), Advertise: m.advertiseFor(replica)})
	m.tr.Serve(transport.KindAE, m.ae.Serve)
	m.reach.failing = make(map[string]time.Time)
	m.reach.probing = make(map[string]bool)
	m.routes.Store(buildRoutes(cfg.Name, cfg.Region, m.selfID, nil, cfg.FanOut))
	return m, nil
}

// Start listens for replication streams, starts memberlist (a mesh of one
// until Join) and the background loops.
func (m *Mesh) Start() error {
	if !m.state.CompareAndSwap(stateNew, stateStarting) {
		if st := m.state.Load(); st == stateStarting || st == stateStarted {
			return errors.New("gossip: already started")
		}
		return ErrClosed
	}
	if err := m.start(); err != nil {
		m.state.Store(stateClosed)
		m.cancel()
		return err
	}
	m.state.Store(stateStarted)
	return nil
}

func (m *Mesh) start() error {
	cfg := &m.cfg
	addr, err := m.tr.Listen(cfg.replBindAddr())
	if err != nil {
		m.tr.Close()
		return fmt.Errorf("gossip: listen for replication on %s: %w", cfg.replBindAddr(), err)
	}
	replAdv := cfg.ReplAdvertiseAddr
	if replAdv == "" {
		replAdv = addr.String()
	}
	m.setMeta(replAdv, false)

	mc, err := cfg.memberlistConfig()
	if err != nil {
		m.tr.Close()
		return err
	}
	m.keyring = mc.Keyring
	mc.Delegate = &delegate{m: m}
	mc.Events = &eventDelegate{m: m}
	mc.Logger = newMemberlistLogger(m.log)
	ml, err := memberlist.Create(mc)
	if err != nil {
		m.tr.Close()
		return fmt.Errorf("gossip: start memberlist on %s: %w", cfg.GossipAddr, err)
	}
	m.ml = ml
	ln := ml.LocalNode()
	gossipAddr := net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	// Without an explicit replication advertise address, the replication
	// port is advertised at the gossip advertise host when one was given
	// (NAT) or when the listener binds every interface.
	if cfg.ReplAdvertiseAddr == "" {
		if host, port, err := net.SplitHostPort(replAdv); err == nil {
			ip := net.ParseIP(host)
			if cfg.AdvertiseAddr != "" || ip == nil || ip.IsUnspecified() {
				replAdv = net.JoinHostPort(ln.Addr.String(), port)
				m.setMeta(replAdv, false)
				if err := ml.UpdateNode(cfg.Membership.TCPTimeout); err != nil {
					m.log.Warn("advertise replication address", zap.Error(err))
				}
			}
		}
	}
	m.self = NodeInfo{Name: cfg.Name, Region: cfg.Region, HTTPAddr: cfg.HTTPAddr, GossipAddr: gossipAddr, ReplAddr: replAdv}

	m.loopWG.Add(2)
	go m.antiEntropyLoop()
	go m.reconnectLoop()
	m.log.Info("gossip started",
		zap.String("region", cfg.Region), zap.String("gossip_addr", gossipAddr),
		zap.String("repl_addr", replAdv), zap.Stringer("fan_out", cfg.FanOut))
	return nil
}

// Join contacts the given gossip addresses ("host:port") of members of an
// existing mesh and returns how many answered; one is enough. The
// addresses are remembered and retried in the background whenever this node
// has failed members or no peers, so that a node that started before the
// others, or a healed partition, joins up by itself.
func (m *Mesh) Join(addrs []string) (int, error) {
	if m.state.Load() != stateStarted {
		return 0, m.notRunning()
	}
	m.members.Lock()
	for _, a := range addrs {
		if !slices.Contains(m.members.joinAddrs, a) {
			m.members.joinAddrs = append(m.members.joinAddrs, a)
		}
	}
	m.members.Unlock()
	if len(addrs) == 0 {
		return 0, nil
	}
	n, err := m.ml.Join(addrs)
	if n > 0 {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("gossip: join %s: %w", strings.Join(addrs, ","), err)
	}
	return n, nil
}

func (m *Mesh) notRunning() error {
	if st := m.state.Load(); st == stateNew || st == stateStarting {
		return ErrNotStarted
	}
	return ErrClosed
}

// Publish queues the local node's durable changes for every peer that must
// receive them: the peers of its region and one bridge per remote region
// (FanOutBridge), or every peer (FanOutDirect). It never blocks on the
// network: a peer whose queue is full misses the batch (counted in
// Stats.Drops) and is repaired by anti-entropy. Publish takes ownership of
// b: the caller must not modify it afterwards.
func (m *Mesh) Publish(b Batch) {
	if m.state.Load() != stateStarted || b.Empty() {
		return
	}
	m.stats.Published.Add(1)
	m.stats.PublishedDeltas.Add(uint64(len(b.Deltas)))
	r := m.routes.Load()
	now := time.Now()
	if m.sharding() {
		var per map[string]*Batch
		b, per = m.splitSharded(r, b)
		for name, pb := range per {
			if p := m.peer(r.alive[name], r.relayTo[name]); p != nil {
				p.Enqueue(*pb, now)
			}
		}
		if b.Empty() {
			return
		}
	}
	for i, pi := range r.publish {
		if p := m.peer(pi, r.relay[i]); p != nil {
			p.Enqueue(b, now)
		}
	}
}

// forward relays a batch received from a node of another region to the
// other nodes of this node's region.
func (m *Mesh) forward(b Batch, from string) {
	if m.state.Load() != stateStarted {
		return
	}
	if b = m.relayable(b, from); b.Empty() {
		return
	}
	m.stats.Forwarded.Add(1)
	r := m.routes.Load()
	now := time.Now()
	for _, pi := range r.local {
		if pi.name == from {
			continue
		}
		if p := m.peer(pi, false); p != nil {
			p.Enqueue(b, now)
		}
	}
}

// peer returns the stream to pi, starting it on first use; nil when pi is
// no longer an alive member or the mesh is closing.
func (m *Mesh) peer(pi peerInfo, relay bool) *stream.Stream {
	m.peers.RLock()
	p := m.peers.m[pi.name]
	m.peers.RUnlock()
	if p != nil && p.To() == pi.peer() && p.Relays() == relay {
		return p
	}
	m.peers.Lock()
	defer m.peers.Unlock()
	if m.peers.closed {
		return nil
	}
	if p = m.peers.m[pi.name]; p != nil {
		if p.To() == pi.peer() && p.Relays() == relay {
			return p
		}
		p.Close() // the member moved or changed role: start afresh
		delete(m.peers.m, pi.name)
	}
	// Routes may have changed since the caller read them: only alive
	// members get a stream (dropPeer runs after the routes are replaced).
	if cur, ok := m.routes.Load().alive[pi.name]; !ok || cur != pi {
		return nil
	}
	p = stream.New(m.streams, pi.peer(), relay)
	m.peers.m[pi.name] = p
	m.wg.Add(1)
	go p.Run()
	return p
}

// dropPeer stops the stream to a member that died, left or moved.
func (m *Mesh) dropPeer(name string) {
	m.peers.Lock()
	p := m.peers.m[name]
	delete(m.peers.m, name)
	m.peers.Unlock()
	if p != nil {
		p.Close()
	}
}

// prunePeers stops idle streams to peers that are no longer targets (a
// bridge that another member replaced, for example).
func (m *Mesh) prunePeers() {
	r := m.routes.Load()
	wanted := make(map[string]bool)
	if m.spaces.seen() {
		for name := range r.alive { // any of them may own a shard
			wanted[name] = true
		}
	}
	for _, pi := range r.publish {
		wanted[pi.name] = true
	}
	for _, pi := range r.local {
		wanted[pi.name] = true
	}
	m.peers.Lock()
	var stop []*stream.Stream
	for name, p := range m.peers.m {
		if !wanted[name] && p.Idle() {
			stop = append(stop, p)
			delete(m.peers.m, name)
		}
	}
	m.peers.Unlock()
	for _, p := range stop {
		p.Close()
	}
}

// syncWith runs a full exchange with p, asking again (up to 5 times, 100 ms
// apart) while p is busy with other exchanges.
func (m *Mesh) syncWith(ctx context.Context, p peerInfo) error {
	var err error
	for range 5 {
		if err = m.exchange(ctx, p, true); !errors.Is(err, antientropy.ErrBusy) {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return err
}

// SyncOnce runs an anti-entropy exchange with every reachable peer (the
// regions in parallel, a busy peer asked again a few times), without the
// grace of periodic exchanges, so that this node holds, before it reports
// ready, everything its peers hold. One peer per region is not enough: the
// chaos campaign wiped the only node of a region right after quorum writes
// that, being a region of one, lived on it and in its streams; the peer it
// caught up from had not received them yet, and its next quorum read
// answered 0. It returns nil when at least one exchange succeeded, or
// when no peer is known and Join was never given an address (the first
// node of a mesh); otherwise an error wrapping ErrSyncFailed (every region
// failed, or Join found nobody). ctx bounds it.
func (m *Mesh) SyncOnce(ctx context.Context) error {
	if m.state.Load() != stateStarted {
		return m.notRunning()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(m.ctx, stop)() // Close aborts it
	r := m.routes.Load()
	groups := make(map[string][]peerInfo)
	for _, p := range r.alive {
		groups[p.region] = append(groups[p.region], p)
	}
	if len(groups) == 0 {
		m.members.Lock()
		joined := len(m.members.joinAddrs) > 0
		m.members.Unlock()
		if joined {
			return fmt.Errorf("%w: no peer is known although join addresses were given (none answered)", ErrSyncFailed)
		}
		return nil // the first node of a new mesh: nothing to catch up with
	}
	type result struct {
		region string
		err    error
	}
	results := make(chan result, len(groups))
	for region, ps := range groups {
		slices.SortFunc(ps, func(a, b peerInfo) int { return strings.Compare(a.name, b.name) })
		m.shuffle(ps)
		go func() {
			var errs []error
			answered := false
			for _, p := range ps {
				if ctx.Err() != nil {
					errs = append(errs, ctx.Err())
					break
				}
				err := m.syncWith(ctx, p)
				if err == nil {
					answered = true
					continue
				}
				errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			}
			if answered {
				results <- result{region: region}
				return
			}
			results <- result{region: region, err: errors.Join(errs...)}
		}()
	}
	var ok int
	var errs []error
	for range groups {
		res := <-results
		if res.err == nil {
			ok++
			continue
		}
		m.log.Warn("sync: no peer of a region answered", zap.String("region", res.region), zap.Error(res.err))
		errs = append(errs, fmt.Errorf("region %s: %w", res.region, res.err))
	}
	if ok == 0 {
		return fmt.Errorf("%w: no peer answered (is the mesh reachable?): %w", ErrSyncFailed, errors.Join(errs...))
	}
	return nil
}

func (m *Mesh) shuffle(ps []peerInfo) {
	m.rngMu.Lock()
	defer m.rngMu.Unlock()
	m.rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
}

func (m *Mesh) randFloat() float64 {
	m.rngMu.Lock()
	defer m.rngMu.Unlock()
	return m.rng.Float64()
}

func (m *Mesh) randN(n int) int {
	m.rngMu.Lock()
	defer m.rngMu.Unlock()
	return m.rng.IntN(n)
}

// Self returns this node's description: its advertised addresses once
// Start has returned, the configured ones before.
func (m *Mesh) Self() NodeInfo {
	switch m.state.Load() {
	case stateNew, stateStarting:
		return NodeInfo{Name: m.cfg.Name, Region: m.cfg.Region, HTTPAddr: m.cfg.HTTPAddr, GossipAddr: m.cfg.GossipAddr, ReplAddr: m.cfg.ReplAddr}
	}
	if m.self.Name == "" { // Start failed
		return NodeInfo{Name: m.cfg.Name, Region: m.cfg.Region, HTTPAddr: m.cfg.HTTPAddr, GossipAddr: m.cfg.GossipAddr, ReplAddr: m.cfg.ReplAddr}
	}
	return m.self
}

// Status returns this node, the members it knows (itself included, sorted
// by name) and the replication lag towards the peers it streams to.
func (m *Mesh) Status() Status {
	st := Status{Self: m.Self()}
	selfState := StateAlive
	switch m.state.Load() {
	case stateNew, stateStarting:
		selfState = StateDead
	case stateLeft, stateClosed:
		selfState = StateLeft
	}
	st.Members = append(st.Members, Member{Name: st.Self.Name, Region: st.Self.Region, State: selfState,
		HTTPAddr: st.Self.HTTPAddr, GossipAddr: st.Self.GossipAddr, ReplAddr: st.Self.ReplAddr, ID: m.selfID})
	suspect := make(map[string]bool)
	m.reach.Lock()
	for name := range m.reach.failing {
		suspect[name] = true
	}
	m.reach.Unlock()
	m.members.Lock()
	for _, rec := range m.members.m {
		if !rec.verified {
			continue // not a member until it proves its name
		}
		mb := rec.info
		mb.State = rec.state
		if mb.State == StateAlive && suspect[mb.Name] {
			mb.State = StateSuspect
		}
		st.Members = append(st.Members, mb)
	}
	m.members.Unlock()
	slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })

	now := time.Now()
	m.peers.RLock()
	for _, p := range m.peers.m {
		st.Replication = append(st.Replication, PeerLag{Peer: p.To().Name, Region: p.To().Region, LagMS: p.Lag(now).Milliseconds()})
	}
	m.peers.RUnlock()
	slices.SortFunc(st.Replication, func(a, b PeerLag) int { return strings.Compare(a.Peer, b.Peer) })
	return st
}

// Stats returns the cumulative counters.
func (m *Mesh) Stats() Stats {
	s := snapshot(&m.stats)
	s.InboundConns, s.MaxInboundConns = m.tr.InboundConns(), m.cfg.MaxInboundConns
	return s
}

// Leave leaves the mesh gracefully: it stops the background loops, flushes
// the peers' queues (Publish still works meanwhile), runs a last full
// exchange with one peer so that every change this node holds is held
// elsewhere too, announces the leave (the others mark this node "left" and
// stop retrying it) and stops membership. LeaveTimeout bounds it (the flush
// ends by 0.4 of it, the exchange by 0.6, then 0.2 each for the rest). The
// node still answers anti-entropy until Close. It is idempotent.
func (m *Mesh) Leave() error {
	m.leaveOnce.Do(func() {
		if m.state.Load() != stateStarted {
			m.leaveErr = m.notRunning()
			return
		}
		lt := m.cfg.LeaveTimeout
		start := time.Now()
		close(m.loopDone)
		m.loopStop()
		m.loopWG.Wait()
		m.stopHeals()
		m.drain(start.Add(lt * 2 / 5))
		m.state.Store(stateLeft) // Publish, Join and SyncOnce stop here
		// The hand-over keeps what no stream delivered: it gets what the
		// drain left of its share too.
		m.handOver(start.Add(lt * 3 / 5))
		// Announce the leave in the meta first, so that the others record
		// "left" rather than "dead" and do not try to reconnect.
		m.setMeta(m.self.ReplAddr, true)
		if err := m.ml.UpdateNode(lt / 5); err != nil {
			m.log.Debug("announce leave", zap.Error(err))
		}
		if err := m.ml.Leave(lt / 5); err != nil {
			m.leaveErr = fmt.Errorf("gossip: leave: %w", err)
		}
		if err := m.ml.Shutdown(); err != nil && m.leaveErr == nil {
			m.leaveErr = fmt.Errorf("gossip: stop memberlist: %w", err)
		}
		m.log.Info("left the mesh", zap.Error(m.leaveErr))
	})
	return m.leaveErr
}

// handOver runs one full exchange with a peer (of this region if there is
// one), so that what this node holds and no stream delivered (a dropped
// batch, say) survives its departure. The peer gets the shards it does not
// own too: the leaving node's own changes of them may be on no owner yet.
// It tries the peers in turn until one completes or deadline passes: a
// peer busy with an exchange with this node refuses at once, and a loaded
// one may be slow.
func (m *Mesh) handOver(deadline time.Time) {
	r := m.routes.Load()
	pool := r.local
	if len(pool) == 0 {
		for _, ps := range r.remote {
			pool = append(pool, ps...)
		}
	}
	if len(pool) == 0 {
		return
	}
	pool = slices.Clone(pool)
	slices.SortFunc(pool, func(a, b peerInfo) int { return strings.Compare(a.name, b.name) })
	m.shuffle(pool)
	ctx, cancel := context.WithDeadline(m.ctx, deadline)
	defer cancel()
	for ctx.Err() == nil {
		for _, p := range pool {
			err := m.ae.HandOver(ctx, p.peer())
			if err == nil {
				return
			}
			m.log.Debug("hand-over exchange failed", zap.String("peer", p.name), zap.Error(err))
			if ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(m.cfg.FlushInterval):
		}
	}
	m.log.Warn("leaving without a final exchange: no peer completed one in time; changes that no stream delivered stay on this node's disk only")
}

// drain waits until every connected peer has sent and had acknowledged
// what is queued for it, or until deadline.
func (m *Mesh) drain(deadline time.Time) {
	t := time.NewTicker(m.cfg.FlushInterval / 2)
	defer t.Stop()
	for {
		busy := false
		m.peers.RLock()
		for _, p := range m.peers.m {
			if p.Draining() {
				busy = true
				p.Kick()
			}
		}
		m.peers.RUnlock()
		if !busy || time.Now().After(deadline) {
			return
		}
		<-t.C
	}
}

// Close leaves the mesh (see Leave) and stops everything, in the reverse
// order of Start: background loops, membership, peer streams, then the
// replication listener and the connections it accepted. It is idempotent.
func (m *Mesh) Close() error {
	m.closeOnce.Do(func() {
		var errL error
		if m.state.Load() == stateStarted {
			errL = m.Leave()
		}
		started := m.state.Load() != stateNew
		m.state.Store(stateClosed)
		m.cancel()
		if !started {
			return
		}
		m.peers.Lock()
		m.peers.closed = true
		ps := m.peers.m
		m.peers.m = make(map[string]*stream.Stream)
		m.peers.Unlock()
		close(m.peerDone)
		for _, p := range ps {
			p.Close()
		}
		m.tr.Close()
		m.wg.Wait()
		m.closeErr = errL
		m.log.Info("gossip closed")
	})
	return m.closeErr
}
