package nsconfig

import (
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/idem"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/series"
)

// Record is what the store keeps for a namespace: the config and
// the hybrid logical clock of the write that set it (last writer wins when
// configs replicate).
type Record struct {
	Config    Config `msgpack:"c"`
	HLC       uint64 `msgpack:"t"`
	Origin    uint64 `msgpack:"o"`
	CreatedAt int64  `msgpack:"ca"`
	// Bank is the node that holds the initial rights of the bounds (the
	// node that set them; package node/exact).
	Bank uint64 `msgpack:"b"`

	rt   *Runtime    // the parsed config (see Prepare); not stored
	kind CounterType // the namespace type's behaviour (see Prepare); not stored
}

// Runtime is the parsed form of a namespace config that the write and read
// paths need.
type Runtime struct {
	Windows  []series.Window // finest first
	TTL      time.Duration
	IDWindow time.Duration // how long increment ids are remembered
}

// Runtime returns the parsed config. Records are immutable once installed,
// and Prepare runs before a record is installed.
func (r *Record) Runtime() *Runtime {
	if r.rt != nil {
		return r.rt
	}
	return parseRuntime(r.Config)
}

// Prepare parses the config once, before the record is shared.
func (r *Record) Prepare() {
	r.rt = parseRuntime(r.Config)
	r.kind = counterTypeOf(&r.Config)
}

// CounterType returns the namespace's counter type.
func (r *Record) CounterType() CounterType {
	if r.kind != nil {
		return r.kind
	}
	return counterTypeOf(&r.Config)
}

func parseRuntime(cfg Config) *Runtime {
	rt := &Runtime{}
	for _, name := range cfg.Windows {
		g, ok := series.GranularityByName(name)
		if !ok {
			continue // Normalize refuses unknown windows
		}
		w := series.Window{G: g}
		if s, ok := cfg.Retention[name]; ok {
			w.Retention, _ = ParseDuration(s)
		}
		rt.Windows = append(rt.Windows, w)
	}
	series.Sort(rt.Windows)
	rt.TTL, _ = ParseDuration(cfg.TTL)
	rt.IDWindow, _ = ParseDuration(cfg.IdempotencyWindow)
	return rt
}

// Dropped reports whether a replicated or imported change of key has been
// dropped here by expiry (a time bucket past its retention, an id record
// older than the idempotency window): it is then kept dropped.
func (r *Record) Dropped(key string, c *crdt.Counter, now time.Time, ids *idem.IDs) bool {
	return series.BucketExpired(r.Runtime().Windows, key, now) ||
		(key[0] == keyspace.KindID && ids.Expired(r.Runtime().IDWindow, c))
}

// Bounds returns the bounds of a namespace.
func (r *Record) Bounds() exact.Bounds {
	return exact.Bounds{Min: r.Config.Min, Max: r.Config.Max, Bank: crdt.NodeID(r.Bank), Exact: r.CounterType().Escrow()}
}

// Clamp keeps a read of a counter of the namespace rec (nil: none) within
// its bounds, as its counter type does (callers under a stripe lock must
// not take the Table's lock).
func Clamp(rec *Record, v int64) int64 {
	if rec == nil {
		return v
	}
	return rec.CounterType().Clamp(&rec.Config, v)
}
