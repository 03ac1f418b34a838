package node

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Namespace types.
const (
	TypeEventual    = "eventual"
	TypeExact       = "exact"
	TypeApproximate = "approximate"
)

// Durability levels.
const (
	DurabilitySync  = "sync"
	DurabilityAsync = "async"
)

// Windows lists the time-bucket granularities a namespace may keep, finest
// first.
var Windows = []string{"1s", "10s", "1m", "5m", "1h", "1d"}

// NamespaceConfig is the stored configuration of a namespace, with the JSON
// shape of docs/api.md. Durations are strings: "0" or a Go duration ("48h",
// "90s") or a whole number of days ("90d").
type NamespaceConfig struct {
	Type              string            `json:"type" msgpack:"type"`
	Durability        string            `json:"durability" msgpack:"durability"`
	Windows           []string          `json:"windows" msgpack:"windows"`
	Retention         map[string]string `json:"retention" msgpack:"retention"`
	TTL               string            `json:"ttl" msgpack:"ttl"`
	Min               *int64            `json:"min" msgpack:"min"`
	Max               *int64            `json:"max" msgpack:"max"`
	IdempotencyWindow string            `json:"idempotency_window" msgpack:"idempotency_window"`
	// Epsilon and Confidence size the Count-Min Sketch of an approximate
	// namespace (docs/approximate.md); zero elsewhere. A config stored
	// before they existed decodes as zero, which reads as the defaults.
	Epsilon    float64 `json:"epsilon,omitempty" msgpack:"epsilon,omitempty"`
	Confidence float64 `json:"confidence,omitempty" msgpack:"confidence,omitempty"`
}

// Defaults of an approximate namespace's sketch: estimates within 0.1 % of
// the namespace's total with 99 % confidence.
const (
	DefaultEpsilon    = 0.001
	DefaultConfidence = 0.99
)

// DefaultNamespaceConfig is the configuration of a namespace created by a
// first write, given the node's default durability.
func DefaultNamespaceConfig(durability string) NamespaceConfig {
	return NamespaceConfig{
		Type:              TypeEventual,
		Durability:        durability,
		Windows:           []string{},
		Retention:         map[string]string{},
		TTL:               "0",
		IdempotencyWindow: "24h",
	}
}

// NullableInt is a JSON field that distinguishes absent (Set false), null
// (Set true, Value nil) and a number.
type NullableInt struct {
	Set   bool
	Value *int64
}

// UnmarshalJSON records that the field was present.
func (n *NullableInt) UnmarshalJSON(b []byte) error {
	n.Set = true
	if string(b) == "null" {
		n.Value = nil
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("must be an integer or null, got %s", b)
	}
	n.Value = &v
	return nil
}

// NamespacePatch is the body of PUT /v1/namespaces/{ns}: fields that are
// absent keep their current value (the default for a new namespace).
type NamespacePatch struct {
	Type              *string            `json:"type"`
	Durability        *string            `json:"durability"`
	Windows           *[]string          `json:"windows"`
	Retention         *map[string]string `json:"retention"`
	TTL               *string            `json:"ttl"`
	Min               NullableInt        `json:"min"`
	Max               NullableInt        `json:"max"`
	IdempotencyWindow *string            `json:"idempotency_window"`
	Epsilon           *float64           `json:"epsilon"`
	Confidence        *float64           `json:"confidence"`
}

// apply returns cfg with the patch's fields set.
func (p NamespacePatch) apply(cfg NamespaceConfig) NamespaceConfig {
	out := cfg
	if p.Type != nil {
		out.Type = *p.Type
	}
	if p.Durability != nil {
		out.Durability = *p.Durability
	}
	if p.Windows != nil {
		out.Windows = slices.Clone(*p.Windows)
	}
	if p.Retention != nil {
		out.Retention = make(map[string]string, len(*p.Retention))
		for k, v := range *p.Retention {
			out.Retention[k] = v
		}
	}
	if p.TTL != nil {
		out.TTL = *p.TTL
	}
	if p.Min.Set {
		out.Min = p.Min.Value
	}
	if p.Max.Set {
		out.Max = p.Max.Value
	}
	if p.IdempotencyWindow != nil {
		out.IdempotencyWindow = *p.IdempotencyWindow
	}
	if p.Type != nil && *p.Type != TypeApproximate {
		// Leaving the approximate type drops its sketch parameters
		// (unless the patch sets them, which normalize refuses).
		out.Epsilon, out.Confidence = 0, 0
	}
	if p.Epsilon != nil {
		out.Epsilon = *p.Epsilon
	}
	if p.Confidence != nil {
		out.Confidence = *p.Confidence
	}
	return out
}

// normalize validates cfg and returns it in canonical form (windows sorted
// finest first, no duplicates; empty collections rather than nil).
func (cfg NamespaceConfig) normalize() (NamespaceConfig, error) {
	bad := func(format string, args ...any) (NamespaceConfig, error) {
		return cfg, fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)
	}
	switch cfg.Type {
	case TypeEventual, TypeExact, TypeApproximate:
	default:
		return bad("type must be one of eventual, exact, approximate; got %q", cfg.Type)
	}
	switch cfg.Durability {
	case DurabilitySync, DurabilityAsync:
	default:
		return bad("durability must be sync or async; got %q", cfg.Durability)
	}
	var windows []string
	for _, w := range cfg.Windows {
		if !slices.Contains(Windows, w) {
			return bad("window %q is not one of %s", w, strings.Join(Windows, ", "))
		}
		if !slices.Contains(windows, w) {
			windows = append(windows, w)
		}
	}
	slices.SortFunc(windows, func(a, b string) int {
		return slices.Index(Windows, a) - slices.Index(Windows, b)
	})
	if windows == nil {
		windows = []string{}
	}
	retention := make(map[string]string, len(cfg.Retention))
	for w, d := range cfg.Retention {
		if !slices.Contains(windows, w) {
			return bad("retention is given for window %q, which the namespace does not keep (windows: %v)", w, windows)
		}
		if _, err := ParseDuration(d); err != nil {
			return bad("retention of %s: %v", w, err)
		}
		retention[w] = d
	}
	if _, err := ParseDuration(cfg.TTL); err != nil {
		return bad("ttl: %v", err)
	}
	if _, err := ParseDuration(cfg.IdempotencyWindow); err != nil {
		return bad("idempotency_window: %v", err)
	}
	if ttl, _ := ParseDuration(cfg.TTL); ttl > 0 && cfg.Type == TypeExact && (cfg.Min != nil || cfg.Max != nil) {
		return bad("an exact namespace with bounds cannot have a ttl: expiring a counter would move its value outside the rights that keep the bounds")
	}
	if cfg.Min != nil && cfg.Max != nil && *cfg.Min > *cfg.Max {
		return bad("min (%d) must not exceed max (%d)", *cfg.Min, *cfg.Max)
	}
	out := cfg
	out.Windows = windows
	out.Retention = retention
	if err := out.normalizeApprox(); err != nil {
		return cfg, err
	}
	return out, nil
}

// ParseDuration parses "0", a Go duration ("90s", "48h") or a whole number
// of days ("90d"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration: use \"0\", a duration such as \"48h\", or days such as \"90d\"")
	}
	if s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("bad duration %q: days must be a whole number from 0 to 36500, such as \"90d\"", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: use \"0\", a duration such as \"48h\", or days such as \"90d\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("bad duration %q: must not be negative", s)
	}
	return d, nil
}

// namespaceRecord is what the store keeps for a namespace: the config and
// the hybrid logical clock of the write that set it (last writer wins when
// configs replicate).
type namespaceRecord struct {
	Config    NamespaceConfig `msgpack:"c"`
	HLC       uint64          `msgpack:"t"`
	Origin    uint64          `msgpack:"o"`
	CreatedAt int64           `msgpack:"ca"`
	// Bank is the node that holds the initial rights of the bounds (the
	// node that set them; package node/exact).
	Bank uint64 `msgpack:"b"`

	rt   *nsRuntime  // the parsed config (see prepare); not stored
	kind counterType // the namespace type's behaviour (see prepare); not stored
}
