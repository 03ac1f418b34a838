package gossip

import (
	"errors"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/transport"
	"github.com/countmesh/countmesh/meshstatus"
)

// Sentinel errors. Errors returned by Mesh wrap one of these.
var (
	// ErrClosed is returned by a Mesh that was closed (or has left).
	ErrClosed = errors.New("gossip: closed")
	// ErrNotStarted is returned by methods that need Start first.
	ErrNotStarted = errors.New("gossip: not started")
	// ErrInvalidConfig wraps every problem validate finds in a Config.
	ErrInvalidConfig = errors.New("gossip: invalid config")
	// ErrSyncFailed is returned by SyncOnce when no peer could be reached.
	ErrSyncFailed = errors.New("gossip: sync failed")
	// ErrProtocol is a peer speaking something this node does not understand.
	ErrProtocol = transport.ErrProtocol
)

// The replication delta types live in package change, below the node and
// the mesh; gossip keeps their names.
type (
	// Delta is one change of one origin's slot of one counter.
	Delta = change.Delta
	// Range says that a batch carries every change of an origin within
	// (After, Upto] that its sender still holds.
	Range = change.Range
	// Batch is the unit of replication: what Publish takes and
	// Replica.Apply receives.
	Batch = change.Batch
	// ConfigRecord is a namespace config, replicated last-writer-wins.
	ConfigRecord = change.ConfigRecord
)

// Replica is what gossip needs from the local node. Implementations are
// safe for concurrent use; gossip calls them from several goroutines.
type Replica interface {
	// Apply merges a batch received from a peer and returns once it is
	// durable. For each range, in order, the replica advances its version
	// vector for r.Origin to r.Upto when it already held everything up to
	// r.After (contiguity), atomically with the data. Applying the same
	// batch twice is harmless (CRDT merge). Apply must neither modify b nor
	// keep references into it after returning (gossip may still be sending
	// the same states to other peers).
	Apply(b Batch) error
	// VersionVector returns origin -> highest seq such that every change
	// of that origin up to it is durably held (or superseded by a held
	// change).
	VersionVector() map[crdt.NodeID]uint64
	// HeldAhead returns, per origin, single changes durably held past the
	// end of the version vector (a gap before them not yet filled); Apply
	// records each delta's (Origin, Seq) as held, and the vector moves over
	// held changes once it reaches them. Anti-entropy offers these to peers
	// that lack them, so that changes of an origin that is gone for good
	// spread even when a gap before them never fills. It may leave some
	// out (a bound), never list one not held.
	HeldAhead() map[crdt.NodeID][]uint64
	// ScanSince calls fn, in ascending seq order, for every change of
	// origin with seq > after that the replica holds (from its
	// (origin, seq) index: per counter, the highest seq merged from that
	// origin), until fn returns false. Each Delta's State must hold the
	// origin's slot and the counter's current reset record. fn may block
	// on network I/O, so ScanSince must not hold locks that Apply needs
	// while it calls fn.
	ScanSince(origin crdt.NodeID, after uint64, fn func(Delta) bool) error
	// Configs returns every namespace config record.
	Configs() []ConfigRecord
}

// The status types live in package meshstatus, which the HTTP layer
// imports without importing gossip.
const (
	StateAlive   = meshstatus.StateAlive
	StateSuspect = meshstatus.StateSuspect
	StateDead    = meshstatus.StateDead
	StateLeft    = meshstatus.StateLeft
)

type (
	NodeInfo = meshstatus.NodeInfo
	Member   = meshstatus.Member
	PeerLag  = meshstatus.PeerLag
	Status   = meshstatus.Status
)

// Stats are cumulative counters since Start.
type Stats struct {
	// Bytes and frames on replication streams and anti-entropy sessions
	// (framing included; memberlist's own traffic is not counted).
	BytesSent, BytesReceived   uint64
	FramesSent, FramesReceived uint64
	// CrossRegionBytesSent and ...Received count the bytes above whose peer
	// is in another region.
	CrossRegionBytesSent, CrossRegionBytesReceived uint64
	// AntiEntropy... count the part of the bytes above (all, and across
	// regions) that anti-entropy sessions moved; the rest is streams.
	AntiEntropyBytesSent, AntiEntropyBytesReceived                       uint64
	AntiEntropyCrossRegionBytesSent, AntiEntropyCrossRegionBytesReceived uint64
	// BytesSentByRegion and BytesReceivedByRegion split the bytes by the
	// peer's region: each key other than this node's region is one region
	// boundary.
	BytesSentByRegion     map[string]uint64
	BytesReceivedByRegion map[string]uint64
	// Published counts batches given to Publish; PublishedDeltas their deltas.
	Published, PublishedDeltas uint64
	// DeltasStreamed and DeltasReceived count deltas sent and received on
	// streams (after coalescing).
	DeltasStreamed, DeltasReceived uint64
	// Forwarded counts batches this node relayed into its region as a bridge.
	Forwarded uint64
	// Drops counts batches not queued for a peer because its queue was full;
	// DroppedDeltas their deltas. Anti-entropy repairs them.
	Drops, DroppedDeltas uint64
	// AntiEntropyRounds counts completed exchanges this node started;
	// AntiEntropyServed those other nodes started; AntiEntropyFailures
	// exchanges that failed (either side).
	AntiEntropyRounds, AntiEntropyServed, AntiEntropyFailures uint64
	// AntiEntropyDeltasSent and ...Received count deltas moved by
	// anti-entropy.
	AntiEntropyDeltasSent, AntiEntropyDeltasReceived uint64
	// ApplyErrors counts batches the replica refused.
	ApplyErrors uint64
	// RefusedConns counts inbound connections closed at once because the
	// peer listener held MaxInboundConns already; RefusedPeers counts
	// connections refused during the handshake or the hello (no valid
	// certificate, a name that is not a member, a bad hello).
	RefusedConns, RefusedPeers uint64
	// Reconnects counts background joins that reached a failed member or a
	// join address.
	Reconnects uint64
	// InboundConns is the connections the peer listener holds now, of at
	// most MaxInboundConns (Config): at the limit, new ones are closed as
	// they arrive (RefusedConns), probes of this node's name among them.
	InboundConns, MaxInboundConns int
}
