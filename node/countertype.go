package node

// counterType is what differs between the namespace types (eventual, exact,
// approximate), chosen once per namespace from its config: the write and
// read paths ask the namespace's counter type instead of comparing type
// names.
type counterType interface {
	// consistency is the level of an operation that asks for none.
	consistency() string
	// clamp keeps a value read or written within the bounds of cfg.
	clamp(cfg *NamespaceConfig, v int64) int64
	// sketch reports whether counts live in a Count-Min Sketch rather than
	// in a counter per key (package node/approx).
	sketch() bool
	// escrow reports whether bounds are kept by per-node rights (package node/exact)
	// rather than by the value this node sees.
	escrow() bool
}

// counterTypes maps each namespace type to its behaviour.
var counterTypes = map[string]counterType{
	TypeEventual:    eventualType{},
	TypeExact:       exactType{},
	TypeApproximate: approximateType{},
}

// counterTypeOf returns the counter type of a namespace's config (eventual
// for an unknown name, which normalize refuses).
func counterTypeOf(cfg *NamespaceConfig) counterType {
	if t, ok := counterTypes[cfg.Type]; ok {
		return t
	}
	return eventualType{}
}

// eventualType is the PN-counter: local by default, bounds checked against
// the value this node sees.
type eventualType struct{}

func (eventualType) consistency() string                     { return ConsistencyLocal }
func (eventualType) clamp(_ *NamespaceConfig, v int64) int64 { return v }
func (eventualType) sketch() bool                            { return false }
func (eventualType) escrow() bool                            { return false }

// exactType is the bounded counter with quorum by default and rights.
type exactType struct{}

func (exactType) consistency() string { return ConsistencyQuorum }

// clamp: the merged state never crosses the bounds; a node that has seen a
// decrement before the increment or transfer that allowed it could, until
// that arrives.
func (exactType) clamp(cfg *NamespaceConfig, v int64) int64 {
	if cfg.Min != nil && v < *cfg.Min {
		v = *cfg.Min
	}
	if cfg.Max != nil && v > *cfg.Max {
		v = *cfg.Max
	}
	return v
}
func (exactType) sketch() bool { return false }
func (exactType) escrow() bool { return true }

// approximateType is the Count-Min Sketch namespace.
type approximateType struct{}

func (approximateType) consistency() string                     { return ConsistencyLocal }
func (approximateType) clamp(_ *NamespaceConfig, v int64) int64 { return v }
func (approximateType) sketch() bool                            { return true }
func (approximateType) escrow() bool                            { return false }
