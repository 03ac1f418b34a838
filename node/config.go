package node

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/store"
)

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// Name is the node's unique name in the mesh; its slot id derives from
	// it and Incarnation (crdt.NodeIDOf).
	Name string
	// Incarnation is the life of the data directory the node runs on
	// (LoadIncarnation); 0 for a node whose slot is named by Name alone.
	Incarnation uint64
	// Region is the data center the node belongs to.
	Region string
	// Store configures the Pebble store (its Dir is the data directory).
	Store store.Config
	// CacheCounters bounds the counters held in memory, the most recently
	// used as entries and, beyond hotCounters of them, as packed records;
	// the rest are read through from the store.
	CacheCounters int
	// HotCounters, when positive, is how many of CacheCounters are kept as
	// entries (the rest as packed records); 0 derives it (hotCounters).
	HotCounters int
	// DefaultDurability is the durability of namespaces created by a first
	// write: DurabilitySync or DurabilityAsync.
	DefaultDurability string
	// Stripes is the number of lock stripes over the counters (a power of two).
	Stripes int
	// MaxPending bounds the changed counters waiting for the committer; past
	// it, writes are refused with ErrOverloaded until the committer catches up.
	MaxPending int
	// CommitMaxDelay bounds how long an async write waits for the fsynced WAL.
	CommitMaxDelay time.Duration
	// CheckpointInterval is how often counters changed since the last
	// checkpoint are written from the operation log's coalesced state to
	// Pebble; CheckpointLogBytes of log start one sooner. Together they
	// bound the log a restart replays.
	CheckpointInterval time.Duration
	CheckpointLogBytes int64
	// ExpiryInterval is how often time buckets past their retention and
	// counters idle past their namespace's ttl are dropped.
	ExpiryInterval time.Duration
	// ReleaseInterval is how often the node drops its copies of counters
	// of sharded namespaces it wrote but does not own, once every owner
	// holds them (copies.go); 0 keeps them.
	ReleaseInterval time.Duration
	// StartUnready keeps /readyz at 503 after Open until MarkReady, so that
	// the daemon can first recover the node's own slot from its peers.
	StartUnready bool
	// Peers and PeerTransport reach the other nodes for the quorum and all
	// consistency levels; with either nil the node is its own quorum.
	// QuorumTimeout bounds one such operation (0: DefaultQuorumTimeout);
	// past it the operation fails with ErrUnavailable.
	Peers         Peers
	PeerTransport PeerTransport
	QuorumTimeout time.Duration
	// Rights asks peers for rights on bounded counters of exact namespaces
	// (package node/exact); with it or Peers nil, a node short of rights refuses
	// with 409.
	Rights RightsTransport
	// MaxClockOffset bounds how far ahead of this node's clock a hybrid
	// logical timestamp from a peer (a namespace config record) may be; one
	// further ahead is refused with ErrInvalidPeerData, so that no peer can
	// move this node's clock, or win last-writer-wins, by a timestamp from
	// the future. 0 means DefaultMaxClockOffset (500 ms, CockroachDB's
	// default --max-offset). The nodes' clocks must agree within it.
	MaxClockOffset time.Duration
	// MaxNamespaces bounds the namespaces of the node, whoever creates them
	// (a first write, PUT, or a config record replicated from a peer); past
	// it they are refused with ErrTooManyNamespaces. 0 means
	// DefaultMaxNamespaces (10,000).
	MaxNamespaces int
	// MaxSeriesPerKey bounds the label series of one counter key; an
	// increment that would create one more is refused with ErrTooManySeries.
	// 0 means DefaultMaxSeriesPerKey (1,000).
	MaxSeriesPerKey int
	// Registerer receives the node's Prometheus metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger; nil logs nothing.
	Logger *zap.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Defaults of the Config fields of the same names.
const (
	DefaultMaxClockOffset  = 500 * time.Millisecond
	DefaultMaxNamespaces   = 10_000
	DefaultMaxSeriesPerKey = 1_000
)

// DefaultConfig returns the embedded defaults: a node named after the host,
// in region "local", storing in ./data, with one million cached counters.
func DefaultConfig() Config {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "countd"
	}
	st := store.DefaultConfig()
	st.Dir = "./data"
	return Config{
		Name:               name,
		Region:             "local",
		Store:              st,
		CacheCounters:      1_000_000,
		DefaultDurability:  DurabilitySync,
		Stripes:            256,
		MaxPending:         4_000_000,
		CommitMaxDelay:     10 * time.Millisecond,
		CheckpointInterval: 5 * time.Second,
		ExpiryInterval:     10 * time.Second,
		ReleaseInterval:    5 * time.Second,
		CheckpointLogBytes: 128 << 20,
		QuorumTimeout:      DefaultQuorumTimeout,
		MaxClockOffset:     DefaultMaxClockOffset,
		MaxNamespaces:      DefaultMaxNamespaces,
		MaxSeriesPerKey:    DefaultMaxSeriesPerKey,
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("node name must not be empty"))
	}
	if c.Region == "" {
		errs = append(errs, errors.New("region must not be empty"))
	}
	if c.CacheCounters < 1 {
		errs = append(errs, fmt.Errorf("cache-counters must be at least 1, got %d", c.CacheCounters))
	}
	if c.DefaultDurability != DurabilitySync && c.DefaultDurability != DurabilityAsync {
		errs = append(errs, fmt.Errorf("durability must be sync or async, got %q", c.DefaultDurability))
	}
	if c.Stripes < 1 || c.Stripes&(c.Stripes-1) != 0 {
		errs = append(errs, fmt.Errorf("stripes must be a power of two, got %d", c.Stripes))
	}
	if c.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("max pending must be at least 1, got %d", c.MaxPending))
	}
	if c.CommitMaxDelay <= 0 {
		errs = append(errs, fmt.Errorf("commit max delay must be positive, got %v", c.CommitMaxDelay))
	}
	if c.ExpiryInterval <= 0 {
		errs = append(errs, fmt.Errorf("expiry interval must be positive, got %v", c.ExpiryInterval))
	}
	if c.CheckpointInterval <= 0 {
		errs = append(errs, fmt.Errorf("checkpoint interval must be positive, got %v", c.CheckpointInterval))
	}
	if c.CheckpointLogBytes <= 0 {
		errs = append(errs, fmt.Errorf("checkpoint log bytes must be positive, got %d", c.CheckpointLogBytes))
	}
	if c.ReleaseInterval < 0 {
		errs = append(errs, fmt.Errorf("release interval must not be negative, got %v", c.ReleaseInterval))
	}
	if c.QuorumTimeout < 0 {
		errs = append(errs, fmt.Errorf("quorum timeout must not be negative, got %v", c.QuorumTimeout))
	}
	if c.MaxClockOffset < 0 {
		errs = append(errs, fmt.Errorf("max clock offset must not be negative, got %v", c.MaxClockOffset))
	}
	if c.MaxNamespaces < 0 {
		errs = append(errs, fmt.Errorf("max namespaces must not be negative, got %d", c.MaxNamespaces))
	}
	if c.MaxSeriesPerKey < 0 {
		errs = append(errs, fmt.Errorf("max series per key must not be negative, got %d", c.MaxSeriesPerKey))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node: invalid config: %w", err)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxClockOffset == 0 {
		c.MaxClockOffset = DefaultMaxClockOffset
	}
	if c.MaxNamespaces == 0 {
		c.MaxNamespaces = DefaultMaxNamespaces
	}
	if c.MaxSeriesPerKey == 0 {
		c.MaxSeriesPerKey = DefaultMaxSeriesPerKey
	}
	return nil
}

// hotCounters returns how many of the cache's counters the hot set may keep
// as entries (about 240 bytes each, what the write path works on); the rest
// of the cache holds packed records (node/keyspace/compact.go, tens of
// bytes each) of counters evicted from the entries, or idle in them for
// packIdleAfter. Up to 1,048,576 entries, so that a working set of a million
// counters (the default cache) is served from entries as before, at full
// speed; only a larger cache holds packed records.
func hotCounters(cache, set int) int {
	if set > 0 {
		return min(set, cache)
	}
	return min(cache, 1<<20)
}

// checkpointUnsaved returns how many unsaved counters start a checkpoint
// early. Until a checkpoint saves them they are entries, whatever the cache
// holds packed: a quarter of the cache, but no more than 262,144, so that a
// burst of new counters into a large cache does not grow the Go heap by
// gigabytes.
func checkpointUnsaved(cache int) int64 {
	return int64(min(cache/4, 1<<18))
}
