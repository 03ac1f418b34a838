package fakenet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Ports every host uses: memberlist packets and streams on GossipPort,
// replication streams on ReplPort.
const (
	GossipPort = 7946
	ReplPort   = 7947
)

// Faults are the network's misbehaviours. The zero value is a perfect
// network.
type Faults struct {
	// PacketDrop is the probability that a packet (memberlist's UDP) is lost.
	PacketDrop float64
	// PacketDup is the probability that a packet is delivered twice.
	PacketDup float64
	// PacketDelay is the largest delay of a packet, drawn uniformly from
	// [0, PacketDelay]; packets may overtake each other, as datagrams do.
	PacketDelay time.Duration
	// StreamDelay is the largest delay of a stream write, drawn uniformly;
	// a stream stays in order.
	StreamDelay time.Duration
	// StreamReset is the probability that a stream write breaks its
	// connection (both ends fail with ErrReset) instead of being sent.
	StreamReset float64
}

// Stats counts what the network did.
type Stats struct {
	Packets, PacketsDropped, PacketsDuplicated uint64
	Dials, DialsRefused                        uint64
	Resets                                     uint64 // connections broken by cuts, downs and injected resets
}

// Network is an in-process network of named hosts. Every random choice
// (drops, duplicates, delays, resets) comes from one generator seeded by
// the caller, so a run is repeatable as far as goroutine scheduling allows.
// It is safe for concurrent use.
type Network struct {
	bufferLimit int

	mu        sync.Mutex // guards the fields below
	rng       *rand.Rand
	faults    Faults
	hosts     map[string]*Host // by name
	byIP      map[string]*Host
	listeners map[string]*Listener   // by "ip:port"
	gossip    map[string]*Transport  // by "ip:port"
	conns     map[*connPair]struct{} // open connections
	group     map[string]int         // host name -> side of the partition; nil when healed
	nextPort  int
	stats     Stats
}

// New returns a network whose random choices derive from seed. Each
// direction of a stream buffers up to bufferLimit bytes before a write
// blocks (0 means 1 MiB).
func New(seed uint64, bufferLimit int) *Network {
	if bufferLimit <= 0 {
		bufferLimit = 1 << 20
	}
	return &Network{
		bufferLimit: bufferLimit,
		rng:         rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		hosts:       make(map[string]*Host),
		byIP:        make(map[string]*Host),
		listeners:   make(map[string]*Listener),
		gossip:      make(map[string]*Transport),
		conns:       make(map[*connPair]struct{}),
	}
}

// SetFaults changes the network's misbehaviour from now on.
func (n *Network) SetFaults(f Faults) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults = f
}

// Stats returns what the network did so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Host returns the host with that name, creating it (up, with the next free
// address) on first use. A host keeps its address for the life of the
// network, so a node restarted on it comes back at the same address.
func (n *Network) Host(name, region string) *Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.hosts[name]; ok {
		return h
	}
	i := len(n.hosts) + 1
	ip := fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
	h := &Host{nw: n, name: name, region: region, ip: ip, up: true}
	n.hosts[name] = h
	n.byIP[ip] = h
	return h
}

// Partition cuts the network into sides: each listed group of host names is
// one side, and the hosts listed in no group form one more side. Hosts on
// different sides cannot exchange packets or open connections, and the open
// connections between them break. It replaces any earlier partition.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = make(map[string]int)
	for i, g := range groups {
		for _, name := range g {
			n.group[name] = i + 1
		}
	}
	n.cutLocked()
}

// PartitionRegions is Partition by region: each listed group of regions is
// one side.
func (n *Network) PartitionRegions(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	side := make(map[string]int)
	for i, g := range groups {
		for _, r := range g {
			side[r] = i + 1
		}
	}
	n.group = make(map[string]int)
	for name, h := range n.hosts {
		if s, ok := side[h.region]; ok {
			n.group[name] = s
		}
	}
	n.cutLocked()
}

// Heal removes the partition.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = nil
}

// Connected reports whether hosts a and b can reach each other now.
func (n *Network) Connected(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reachableLocked(a, b)
}

func (n *Network) reachableLocked(a, b string) bool {
	ha, hb := n.hosts[a], n.hosts[b]
	if ha == nil || hb == nil || !ha.up || !hb.up {
		return false
	}
	return n.group == nil || n.group[a] == n.group[b]
}

// cutLocked breaks every open connection between hosts that can no longer
// reach each other.
func (n *Network) cutLocked() {
	for cp := range n.conns {
		if !n.reachableLocked(cp.hostA, cp.hostB) {
			delete(n.conns, cp)
			n.stats.Resets++
			cp.reset()
		}
	}
}

// streamWriteFate draws a stream write's delay and whether it resets.
func (n *Network) streamWriteFate() (time.Duration, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.faults.StreamReset > 0 && n.rng.Float64() < n.faults.StreamReset {
		return 0, true
	}
	return n.delayLocked(n.faults.StreamDelay), false
}

func (n *Network) delayLocked(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(n.rng.Int64N(int64(max) + 1))
}

func (n *Network) resetPair(cp *connPair) {
	n.mu.Lock()
	if _, ok := n.conns[cp]; ok {
		delete(n.conns, cp)
		n.stats.Resets++
	}
	n.mu.Unlock()
	cp.reset()
}

func (n *Network) forget(cp *connPair) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, cp)
}

// dial opens a connection from host to the endpoint at addr; accept hands
// the far end to the listener or memberlist transport found there.
func (n *Network) dial(ctx context.Context, from *Host, addr string, lookup func(addr string) (*Host, func(net.Conn) bool, bool)) (net.Conn, error) {
	n.mu.Lock()
	n.stats.Dials++
	dest, accept, ok := lookup(addr)
	if !ok || !n.reachableLocked(from.name, dest.name) {
		n.stats.DialsRefused++
		n.mu.Unlock()
		if ok {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	n.nextPort++
	local := &net.TCPAddr{IP: net.ParseIP(from.ip), Port: 30000 + n.nextPort%30000}
	remote, _ := net.ResolveTCPAddr("tcp", addr)
	cp := newConnPair(n, from.name, dest.name, local, remote, n.bufferLimit)
	n.conns[cp] = struct{}{}
	n.mu.Unlock()
	if !accept(cp.b) {
		cp.a.Close()
		cp.b.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	if err := ctx.Err(); err != nil {
		cp.a.Close()
		return nil, err
	}
	return cp.a, nil
}

// Host is one machine on the network. It implements the replication
// network of package gossip (Listen and Dial) and makes memberlist
// transports.
type Host struct {
	nw               *Network
	name, region, ip string
	up               bool // guarded by nw.mu
}

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// Region returns the host's region.
func (h *Host) Region() string { return h.region }

// GossipAddr returns the address memberlist uses on this host.
func (h *Host) GossipAddr() string { return net.JoinHostPort(h.ip, strconv.Itoa(GossipPort)) }

// ReplAddr returns the address replication streams use on this host.
func (h *Host) ReplAddr() string { return net.JoinHostPort(h.ip, strconv.Itoa(ReplPort)) }

// Down takes the host off the network, as a crash or a pulled cable would:
// its connections break, its listeners and transports stop, and packets to
// it are lost. Up brings it back (with nothing listening).
func (h *Host) Down() {
	n := h.nw
	n.mu.Lock()
	h.up = false
	var ls []*Listener
	for _, l := range n.listeners {
		if l.host == h {
			ls = append(ls, l)
		}
	}
	var ts []*Transport
	for _, t := range n.gossip {
		if t.host == h {
			ts = append(ts, t)
		}
	}
	n.cutLocked()
	n.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	for _, t := range ts {
		t.Shutdown()
	}
}

// Up puts the host back on the network.
func (h *Host) Up() {
	h.nw.mu.Lock()
	defer h.nw.mu.Unlock()
	h.up = true
}

// Listen listens for replication streams at addr, which must be one of
// this host's addresses.
func (h *Host) Listen(addr string) (net.Listener, error) {
	n := h.nw
	n.mu.Lock()
	defer n.mu.Unlock()
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != h.ip {
		return nil, fmt.Errorf("fakenet: listen on %q: not an address of host %s (%s)", addr, h.name, h.ip)
	}
	if !h.up {
		return nil, fmt.Errorf("fakenet: listen on %q: host %s is down", addr, h.name)
	}
	if _, ok := n.listeners[addr]; ok {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: syscall.EADDRINUSE}
	}
	tcp, _ := net.ResolveTCPAddr("tcp", addr)
	l := &Listener{host: h, addr: tcp, key: addr, ch: make(chan net.Conn, 64), done: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// Dial opens a replication stream to addr.
func (h *Host) Dial(ctx context.Context, addr string) (net.Conn, error) {
	n := h.nw
	return n.dial(ctx, h, addr, func(addr string) (*Host, func(net.Conn) bool, bool) {
		l, ok := n.listeners[addr]
		if !ok {
			return nil, nil, false
		}
		return l.host, func(c net.Conn) bool { return l.deliver(ctx, c) }, true
	})
}

// Listener accepts replication streams on a host.
type Listener struct {
	host      *Host
	addr      net.Addr
	key       string
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

var _ net.Listener = (*Listener)(nil)

func (l *Listener) deliver(ctx context.Context, c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
	case <-ctx.Done():
	}
	return false
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// unregister removes key from m (a registry of n, guarded by n.mu) if it
// still maps to v: a newer registration under the same key stays.
func unregister[K, V comparable](n *Network, m map[K]V, key K, v V) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if m[key] == v {
		delete(m, key)
	}
}

// Close implements net.Listener; connections not yet accepted are closed.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		unregister(l.host.nw, l.host.nw.listeners, l.key, l)
		close(l.done)
		for {
			select {
			case c := <-l.ch:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Addr implements net.Listener.
func (l *Listener) Addr() net.Addr { return l.addr }
