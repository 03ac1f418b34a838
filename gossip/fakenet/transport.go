package fakenet

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Transport is a memberlist.Transport on a fake host: packets suffer the
// network's drops, duplicates and delays; streams are fake connections.
// A memberlist shuts its transport down, so every memberlist instance needs
// a new one (Host.NewTransport).
type Transport struct {
	host     *Host
	key      string // "ip:port"
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// NewTransport returns a memberlist transport at the host's gossip address,
// replacing any earlier one (which is shut down).
func (h *Host) NewTransport() *Transport {
	n := h.nw
	t := &Transport{
		host:     h,
		key:      h.GossipAddr(),
		packetCh: make(chan *memberlist.Packet, 1024),
		streamCh: make(chan net.Conn, 64),
		done:     make(chan struct{}),
	}
	n.mu.Lock()
	old := n.gossip[t.key]
	n.gossip[t.key] = t
	n.mu.Unlock()
	if old != nil {
		old.Shutdown()
	}
	return t
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.ParseIP(t.host.ip), GossipPort, nil
}

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	n := t.host.nw
	now := time.Now()
	n.mu.Lock()
	n.stats.Packets++
	dest, ok := n.gossip[a.Addr]
	// A datagram to a host that is down, unknown or cut off is lost
	// silently, as UDP would lose it (memberlist then suspects the host).
	if !ok || !n.reachableLocked(t.host.name, dest.host.name) || n.rng.Float64() < n.faults.PacketDrop {
		n.stats.PacketsDropped++
		n.mu.Unlock()
		return now, nil // a datagram is lost silently
	}
	copies := 1
	if n.faults.PacketDup > 0 && n.rng.Float64() < n.faults.PacketDup {
		copies = 2
		n.stats.PacketsDuplicated++
	}
	delays := make([]time.Duration, copies)
	for i := range delays {
		delays[i] = n.delayLocked(n.faults.PacketDelay)
	}
	n.mu.Unlock()
	from := &net.UDPAddr{IP: net.ParseIP(t.host.ip), Port: GossipPort}
	buf := append([]byte(nil), b...)
	for _, d := range delays {
		deliver := func() {
			// A partition cut while the packet was in flight drops it.
			if !n.Connected(t.host.name, dest.host.name) {
				return
			}
			dest.deliverPacket(&memberlist.Packet{Buf: buf, From: from, Timestamp: time.Now()})
		}
		if d == 0 {
			deliver()
		} else {
			time.AfterFunc(d, deliver)
		}
	}
	return now, nil
}

func (t *Transport) deliverPacket(p *memberlist.Packet) {
	select {
	case <-t.done:
	case t.packetCh <- p:
	default: // receive buffer full: lost, as UDP would be
	}
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	n := t.host.nw
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.dial(ctx, t.host, a.Addr, func(addr string) (*Host, func(net.Conn) bool, bool) {
		dest, ok := n.gossip[addr]
		if !ok {
			return nil, nil, false
		}
		return dest.host, func(c net.Conn) bool {
			select {
			case dest.streamCh <- c:
				return true
			case <-dest.done:
			case <-ctx.Done():
			}
			return false
		}, true
	})
}

// StreamCh implements memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport.
func (t *Transport) Shutdown() error {
	t.once.Do(func() {
		unregister(t.host.nw, t.host.nw.gossip, t.key, t)
		close(t.done)
	})
	return nil
}

// String names the transport in logs.
func (t *Transport) String() string {
	return t.host.name + "@" + net.JoinHostPort(t.host.ip, strconv.Itoa(GossipPort))
}
