package gossip

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/countmesh/countmesh/gossip/transport"
	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
)

// FanOut chooses how a node sends its own changes to other regions.
type FanOut int

const (
	// FanOutBridge sends each change to every peer of the node's own region
	// and to one bridge per remote region, which relays it into its region:
	// a change crosses each region boundary once.
	FanOutBridge FanOut = iota
	// FanOutDirect sends each change to every peer, in every region: a
	// change crosses a boundary once per remote node. It exists to measure
	// what bridging saves, and for meshes where regions are one node each.
	FanOutDirect
)

func (f FanOut) String() string {
	switch f {
	case FanOutBridge:
		return "bridge"
	case FanOutDirect:
		return "direct"
	}
	return "FanOut(" + strconv.Itoa(int(f)) + ")"
}

// Membership holds the memberlist timings. memberlist has one set of
// timings per pool, and a countmesh mesh is one pool spanning regions, so
// the defaults keep LAN-like probing (a failed node is suspected within
// about a second) with timeouts that tolerate cross-region round trips.
type Membership struct {
	// ProbeInterval is how often a random member is probed (memberlist LAN
	// default 1 s, WAN 5 s). Default 1 s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct probe waits for its ack before
	// indirect probes start; it must cover the slowest cross-region round
	// trip (LAN default 500 ms, WAN 3 s). Default 600 ms, leaving 400 ms of
	// the interval for the indirect probes and the TCP fallback.
	ProbeTimeout time.Duration
	// IndirectChecks is the number of members asked to probe indirectly.
	// Default 3.
	IndirectChecks int
	// SuspicionMult scales how long a suspect has to refute before it is
	// declared dead (SuspicionMult * max(1, log10(N)) * ProbeInterval).
	// Default 6 (WAN): a suspicion raised by one lost round trip across an
	// ocean must not kill a healthy node.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout without
	// confirmations. Default 6.
	SuspicionMaxTimeoutMult int
	// GossipInterval and GossipNodes shape memberlist's own gossip (it
	// carries membership only; counters use the streams). Defaults 200 ms
	// and 4.
	GossipInterval time.Duration
	GossipNodes    int
	// RetransmitMult scales how often a membership message is retransmitted.
	// Default 4.
	RetransmitMult int
	// PushPullInterval is memberlist's full membership sync. Default 30 s.
	PushPullInterval time.Duration
	// TCPTimeout bounds memberlist's stream operations (join, push-pull,
	// TCP probes). Default 10 s.
	TCPTimeout time.Duration
	// GossipToTheDeadTime is how long memberlist keeps gossiping to a dead
	// member before forgetting it. Default 30 s.
	GossipToTheDeadTime time.Duration
	// DeadNodeReclaimTime lets a node restarted under the same name at a
	// different address take its name back once the old one has been dead
	// this long. Default 30 s.
	DeadNodeReclaimTime time.Duration
	// Label separates meshes that share a network (memberlist Label).
	Label string
	// Tune, when set, may adjust the memberlist.Config last, for settings
	// this struct does not expose (encryption keys, for example).
	Tune func(*memberlist.Config)
}

// Config configures a Mesh. Start from DefaultConfig.
type Config struct {
	// Name is the node's unique name in the mesh (its memberlist name).
	Name string
	// NodeID is the node's slot id, advertised to the others in the node
	// meta; 0 means crdt.NodeIDFromName(Name).
	NodeID crdt.NodeID
	// Region is the data center the node is in.
	Region string
	// HTTPAddr is the node's HTTP API address, advertised to the others.
	HTTPAddr string

	// GossipAddr is memberlist's bind address ("host:port", TCP and UDP).
	GossipAddr string
	// AdvertiseAddr is the gossip address the others use to reach this
	// node; empty derives it from GossipAddr (or the transport).
	AdvertiseAddr string
	// ReplAddr is the replication listener ("host:port", TCP); empty means
	// GossipAddr's host with GossipAddr's port + 1 (7947 by default).
	ReplAddr string
	// ReplAdvertiseAddr is the replication address the others dial; empty
	// means the replication listener's port at the gossip advertise host
	// when AdvertiseAddr is set or the listener binds every interface, else
	// the listener's address.
	ReplAdvertiseAddr string

	// Transport replaces memberlist's UDP/TCP transport (tests use
	// fakenet); nil binds GossipAddr.
	Transport memberlist.Transport
	// Network carries the replication streams; nil is TCP.
	Network Network
	// TLS, when set, runs every connection of the peer listener over
	// mutual TLS: a peer that presents no certificate signed by the CA
	// gets nothing but a closed connection, and a peer's hello must name
	// the node its certificate was issued to (the certificate's common
	// name). Nil runs plain TCP (loopback meshes and tests).
	TLS *PeerTLS
	// GossipKeys, when set, encrypts and authenticates memberlist's
	// traffic (AES-GCM): the first key encrypts, every key decrypts, and a
	// node without one of them cannot join. Each key is 16, 24 or 32
	// bytes. SetGossipKeys rotates them at run time.
	GossipKeys [][]byte
	// MaxInboundConns bounds the connections the peer listener holds at
	// once; more are closed as they arrive. Default 512.
	MaxInboundConns int
	// MaxIdleRPCConns bounds the idle connections Call keeps per member.
	// Default 8.
	MaxIdleRPCConns int

	// FanOut chooses bridged or direct cross-region sends.
	FanOut FanOut
	// FlushInterval is how often each peer's queue of coalesced changes is
	// sent. Default 50 ms.
	FlushInterval time.Duration
	// MaxQueueBytes bounds each peer's queue of unsent changes (estimated
	// encoded size). A batch that does not fit is dropped for that peer and
	// left to anti-entropy. Default 16 MiB.
	MaxQueueBytes int
	// MaxInflightFrames bounds the frames sent to a peer and not yet
	// acknowledged. Default 8.
	MaxInflightFrames int
	// MaxFrameDeltas bounds the deltas in one frame (streams and
	// anti-entropy chunks). Default 10,000.
	MaxFrameDeltas int
	// MaxFrameBytes refuses larger incoming frames. Default 64 MiB.
	MaxFrameBytes int
	// IOTimeout bounds each read and write on replication connections, and
	// how long a frame may wait for its ack. Default 10 s.
	IOTimeout time.Duration
	// DialTimeout bounds opening a replication connection. Default 3 s.
	DialTimeout time.Duration

	// AntiEntropyInterval is how often this node starts an exchange with a
	// random peer. Default 1 s.
	AntiEntropyInterval time.Duration
	// AntiEntropyRemote is the probability that the peer is chosen from
	// another region when the own region has peers too. Default 0.25.
	AntiEntropyRemote float64
	// AntiEntropyGrace leaves the changes this node has held for less than
	// this to the streams: a periodic exchange sends only what the peer
	// lacks up to this node's version vector of AntiEntropyGrace ago, so
	// that under load it does not resend changes still in flight (a bridge
	// adds a hop). It should cover a flush, a cross-region round trip and a
	// bridge's flush. SyncOnce ignores it. Default 500 ms.
	AntiEntropyGrace time.Duration
	// MaxConcurrentAntiEntropy bounds the exchanges other nodes run against
	// this one at a time; more are refused. Default 4.
	MaxConcurrentAntiEntropy int

	// ReconnectInterval is how often the node tries to reach failed
	// members (up to 4 at once; and, when it has failed members or no
	// peers, one join address) in the background, as serf does. It bounds
	// how long a healed partition goes unnoticed. Default 500 ms.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long a failed member is retried before it is
	// forgotten. Default 24 h.
	ReconnectTimeout time.Duration
	// TombstoneTimeout is how long a member that left stays listed.
	// Default 24 h.
	TombstoneTimeout time.Duration
	// LeaveTimeout bounds flushing the queues and broadcasting the leave
	// on Leave and Close. Default 5 s.
	LeaveTimeout time.Duration

	// Membership holds memberlist's timings.
	Membership Membership

	// Replicas returns how many nodes of each region hold the counters of
	// a namespace: 0, the default (and every namespace when Replicas is
	// nil), replicates the namespace to every node; R > 0 shards it: each
	// key hashes into one of change.Partitions partitions, placed on the R
	// alive members of each region with the highest rendezvous scores
	// (ShardOwners), and the replica numbers its changes per shard
	// (change.Shard.Space). See shard.go. It must answer the same for a
	// namespace on every node and for the namespace's life.
	Replicas func(ns string) int

	// Seed seeds the random peer choices; 0 picks one at random.
	Seed uint64
	// Logger; nil logs nothing.
	Logger *zap.Logger
}

// DefaultConfig returns the defaults: memberlist on 127.0.0.1:7946,
// replication on 127.0.0.1:7947, bridged fan-out, 50 ms flushes, 1 s
// anti-entropy, cross-region-tolerant membership timings.
func DefaultConfig() Config {
	return Config{
		Region:                   "local",
		GossipAddr:               "127.0.0.1:7946",
		FanOut:                   FanOutBridge,
		FlushInterval:            50 * time.Millisecond,
		MaxQueueBytes:            16 << 20,
		MaxInflightFrames:        8,
		MaxFrameDeltas:           10_000,
		MaxFrameBytes:            64 << 20,
		IOTimeout:                10 * time.Second,
		DialTimeout:              3 * time.Second,
		AntiEntropyInterval:      time.Second,
		AntiEntropyRemote:        0.25,
		AntiEntropyGrace:         500 * time.Millisecond,
		MaxConcurrentAntiEntropy: 4,
		MaxInboundConns:          512,
		MaxIdleRPCConns:          8,
		ReconnectInterval:        500 * time.Millisecond,
		ReconnectTimeout:         24 * time.Hour,
		TombstoneTimeout:         24 * time.Hour,
		LeaveTimeout:             5 * time.Second,
		Membership: Membership{
			ProbeInterval:           time.Second,
			ProbeTimeout:            600 * time.Millisecond,
			IndirectChecks:          3,
			SuspicionMult:           6,
			SuspicionMaxTimeoutMult: 6,
			GossipInterval:          200 * time.Millisecond,
			GossipNodes:             4,
			RetransmitMult:          4,
			PushPullInterval:        30 * time.Second,
			TCPTimeout:              10 * time.Second,
			GossipToTheDeadTime:     30 * time.Second,
			DeadNodeReclaimTime:     30 * time.Second,
		},
	}
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" {
		bad("node name must not be empty")
	}
	if c.Region == "" {
		bad("region must not be empty")
	}
	if c.Transport == nil {
		if _, _, err := splitHostPort(c.GossipAddr); err != nil {
			bad("gossip address %q: %v (want host:port)", c.GossipAddr, err)
		}
	}
	if c.ReplAddr != "" {
		if _, _, err := splitHostPort(c.ReplAddr); err != nil {
			bad("replication address %q: %v (want host:port)", c.ReplAddr, err)
		}
	} else if _, port, err := splitHostPort(c.GossipAddr); err != nil || port == 0 {
		bad("replication address is empty and cannot be derived from gossip address %q: set ReplAddr", c.GossipAddr)
	}
	if c.FanOut != FanOutBridge && c.FanOut != FanOutDirect {
		bad("fan-out must be FanOutBridge or FanOutDirect, got %v", c.FanOut)
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			bad("%s must be positive, got %v", name, d)
		}
	}
	pos("flush interval", c.FlushInterval)
	pos("I/O timeout", c.IOTimeout)
	pos("dial timeout", c.DialTimeout)
	pos("anti-entropy interval", c.AntiEntropyInterval)
	pos("reconnect interval", c.ReconnectInterval)
	pos("reconnect timeout", c.ReconnectTimeout)
	pos("tombstone timeout", c.TombstoneTimeout)
	pos("leave timeout", c.LeaveTimeout)
	if c.AntiEntropyGrace < 0 {
		bad("anti-entropy grace must not be negative, got %v", c.AntiEntropyGrace)
	}
	if c.MaxQueueBytes < 1<<10 {
		bad("max queue bytes must be at least 1 KiB, got %d", c.MaxQueueBytes)
	}
	if c.MaxInflightFrames < 1 {
		bad("max in-flight frames must be at least 1, got %d", c.MaxInflightFrames)
	}
	if c.MaxFrameDeltas < 1 {
		bad("max frame deltas must be at least 1, got %d", c.MaxFrameDeltas)
	}
	if c.MaxFrameBytes < 1<<16 {
		bad("max frame bytes must be at least 64 KiB, got %d", c.MaxFrameBytes)
	}
	if c.MaxConcurrentAntiEntropy < 1 {
		bad("max concurrent anti-entropy must be at least 1, got %d", c.MaxConcurrentAntiEntropy)
	}
	if c.MaxInboundConns < 1 {
		bad("max inbound connections must be at least 1, got %d", c.MaxInboundConns)
	}
	if c.MaxIdleRPCConns < 0 {
		bad("max idle RPC connections must not be negative, got %d", c.MaxIdleRPCConns)
	}
	if c.TLS != nil && (c.TLS.Server == nil || c.TLS.Client == nil) {
		bad("TLS needs both a server configuration and a client configuration")
	}
	if err := checkGossipKeys(c.GossipKeys); err != nil {
		bad("%v", err)
	}
	if c.AntiEntropyRemote < 0 || c.AntiEntropyRemote > 1 {
		bad("anti-entropy remote probability must be in [0, 1], got %v", c.AntiEntropyRemote)
	}
	ms := c.Membership
	pos("probe interval", ms.ProbeInterval)
	pos("probe timeout", ms.ProbeTimeout)
	if ms.ProbeTimeout >= ms.ProbeInterval {
		bad("probe timeout (%v) must be shorter than the probe interval (%v), or indirect probes get no time", ms.ProbeTimeout, ms.ProbeInterval)
	}
	pos("gossip interval", ms.GossipInterval)
	pos("TCP timeout", ms.TCPTimeout)
	pos("push-pull interval", ms.PushPullInterval)
	if ms.SuspicionMult < 1 || ms.SuspicionMaxTimeoutMult < 1 || ms.GossipNodes < 1 || ms.RetransmitMult < 1 || ms.IndirectChecks < 0 {
		bad("suspicion multipliers, gossip nodes and retransmit multiplier must be at least 1")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// memberlistConfig builds the memberlist configuration.
func (c *Config) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.Name
	if c.Transport != nil {
		mc.Transport = c.Transport
	} else {
		host, port, err := splitHostPort(c.GossipAddr)
		if err != nil {
			return nil, err
		}
		mc.BindAddr, mc.BindPort = host, port
		mc.AdvertisePort = port
	}
	if c.AdvertiseAddr != "" {
		host, port, err := splitHostPort(c.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: advertise address %q: %w", ErrInvalidConfig, c.AdvertiseAddr, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	ms := c.Membership
	mc.ProbeInterval = ms.ProbeInterval
	mc.ProbeTimeout = ms.ProbeTimeout
	mc.IndirectChecks = ms.IndirectChecks
	mc.SuspicionMult = ms.SuspicionMult
	mc.SuspicionMaxTimeoutMult = ms.SuspicionMaxTimeoutMult
	mc.GossipInterval = ms.GossipInterval
	mc.GossipNodes = ms.GossipNodes
	mc.RetransmitMult = ms.RetransmitMult
	mc.PushPullInterval = ms.PushPullInterval
	mc.TCPTimeout = ms.TCPTimeout
	mc.GossipToTheDeadTime = ms.GossipToTheDeadTime
	mc.DeadNodeReclaimTime = ms.DeadNodeReclaimTime
	mc.Label = ms.Label
	if len(c.GossipKeys) > 0 {
		kr, err := memberlist.NewKeyring(c.GossipKeys[1:], c.GossipKeys[0])
		if err != nil {
			return nil, fmt.Errorf("%w: gossip keys: %w", ErrInvalidConfig, err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	if ms.Tune != nil {
		ms.Tune(mc)
	}
	return mc, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// replBindAddr returns the replication listener's address.
func (c *Config) replBindAddr() string {
	if c.ReplAddr != "" {
		return c.ReplAddr
	}
	host, port, _ := splitHostPort(c.GossipAddr)
	return net.JoinHostPort(host, strconv.Itoa(port+1))
}

// PeerTLS is the mutual TLS of the peer listener (Config.TLS).
type PeerTLS = transport.PeerTLS

// Network carries the peer connections: TCP in production (TCPNetwork),
// an in-process network in tests (package fakenet).
type Network = transport.Network

// TCPNetwork is the production Network.
type TCPNetwork = transport.TCPNetwork

// checkGossipKeys checks a memberlist keyring: at least one key when any,
// each 16, 24 or 32 bytes (AES-128, -192 or -256), no duplicates.
func checkGossipKeys(keys [][]byte) error {
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		switch len(k) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("gossip key %d is %d bytes; each key must be 16, 24 or 32 bytes", i+1, len(k))
		}
		if seen[string(k)] {
			return fmt.Errorf("gossip key %d appears twice", i+1)
		}
		seen[string(k)] = true
	}
	return nil
}
