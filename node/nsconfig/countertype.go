package nsconfig

import "github.com/countmesh/countmesh/node/exact"

// CounterType is what differs between the namespace types (eventual, exact,
// approximate), chosen once per namespace from its config: the write and
// read paths ask the namespace's counter type instead of comparing type
// names.
type CounterType interface {
	// Consistency is the level of an operation that asks for none.
	Consistency() string
	// Clamp keeps a value read or written within the bounds of cfg.
	Clamp(cfg *Config, v int64) int64
	// Sketch reports whether counts live in a Count-Min Sketch rather than
	// in a counter per key (package node/approx).
	Sketch() bool
	// Escrow reports whether bounds are kept by per-node rights (package node/exact)
	// rather than by the value this node sees.
	Escrow() bool
}

// counterTypes maps each namespace type to its behaviour.
var counterTypes = map[string]CounterType{
	TypeEventual:    eventualType{},
	TypeExact:       exactType{},
	TypeApproximate: approximateType{},
}

// counterTypeOf returns the counter type of a namespace's config (eventual
// for an unknown name, which Normalize refuses).
func counterTypeOf(cfg *Config) CounterType {
	if t, ok := counterTypes[cfg.Type]; ok {
		return t
	}
	return eventualType{}
}

// eventualType is the PN-counter: local by default, bounds checked against
// the value this node sees.
type eventualType struct{}

func (eventualType) Consistency() string            { return exact.ConsistencyLocal }
func (eventualType) Clamp(_ *Config, v int64) int64 { return v }
func (eventualType) Sketch() bool                   { return false }
func (eventualType) Escrow() bool                   { return false }

// exactType is the bounded counter with quorum by default and rights.
type exactType struct{}

func (exactType) Consistency() string { return exact.ConsistencyQuorum }

// Clamp: the merged state never crosses the bounds; a node that has seen a
// decrement before the increment or transfer that allowed it could, until
// that arrives.
func (exactType) Clamp(cfg *Config, v int64) int64 {
	if cfg.Min != nil && v < *cfg.Min {
		v = *cfg.Min
	}
	if cfg.Max != nil && v > *cfg.Max {
		v = *cfg.Max
	}
	return v
}
func (exactType) Sketch() bool { return false }
func (exactType) Escrow() bool { return true }

// approximateType is the Count-Min Sketch namespace.
type approximateType struct{}

func (approximateType) Consistency() string            { return exact.ConsistencyLocal }
func (approximateType) Clamp(_ *Config, v int64) int64 { return v }
func (approximateType) Sketch() bool                   { return true }
func (approximateType) Escrow() bool                   { return false }
