package nsconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
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

// Config is the stored configuration of a namespace, with the JSON
// shape of docs/api.md. Durations are strings: "0" or a Go duration ("48h",
// "90s") or a whole number of days ("90d").
type Config struct {
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
	// Replicas is how many nodes of each region hold each counter: 0,
	// every node (full replication); N > 0 shards the namespace
	// (docs/scale.md). Fixed when the namespace is created.
	Replicas int `json:"replicas" msgpack:"replicas,omitempty"`
}

// Defaults of an approximate namespace's sketch: estimates within 0.1 % of
// the namespace's total with 99 % confidence.
const (
	DefaultEpsilon    = 0.001
	DefaultConfidence = 0.99
)

// Default is the configuration of a namespace created by a first write,
// given the node's default durability.
func Default(durability string) Config {
	return Config{
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

// Patch is the body of PUT /v1/namespaces/{ns}: fields that are
// absent keep their current value (the default for a new namespace).
type Patch struct {
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
	Replicas          *int               `json:"replicas"`
}

// Apply returns cfg with the patch's fields set.
func (p Patch) Apply(cfg Config) Config {
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
		// (unless the patch sets them, which Normalize refuses).
		out.Epsilon, out.Confidence = 0, 0
	}
	if p.Epsilon != nil {
		out.Epsilon = *p.Epsilon
	}
	if p.Confidence != nil {
		out.Confidence = *p.Confidence
	}
	if p.Replicas != nil {
		out.Replicas = *p.Replicas
	}
	return out
}

// Normalize validates cfg and returns it in canonical form (windows sorted
// finest first, no duplicates; empty collections rather than nil).
func (cfg Config) Normalize() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return cfg, fmt.Errorf("%w: "+format, append([]any{nodeerr.ErrInvalidArgument}, args...)...)
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
	if err := out.checkReplicas(); err != nil {
		return cfg, err
	}
	return out, nil
}

// checkReplicas refuses a replicas count out of range, and the options a
// sharded namespace does not support yet (docs/scale.md, "Where it stands").
func (cfg *Config) checkReplicas() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{nodeerr.ErrInvalidArgument}, args...)...)
	}
	switch {
	case cfg.Replicas < 0 || cfg.Replicas > change.MaxReplicas:
		return bad("replicas must be 0 (every node holds every counter) to %d nodes per region; got %d", change.MaxReplicas, cfg.Replicas)
	case cfg.Replicas == 0:
		return nil
	case cfg.Type != TypeEventual:
		return bad("a sharded namespace (replicas > 0) is of type eventual for now; exact and approximate namespaces keep every counter on every node (replicas 0)")
	case len(cfg.Windows) > 0:
		return bad("a sharded namespace (replicas > 0) keeps no time windows yet; leave windows out or use replicas 0")
	case cfg.TTL != "" && cfg.TTL != "0":
		return bad("a sharded namespace (replicas > 0) has no ttl yet; set ttl to \"0\" or use replicas 0")
	case cfg.Min != nil || cfg.Max != nil:
		return bad("a sharded namespace (replicas > 0) has no bounds; leave min and max null or use replicas 0")
	}
	return nil
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

// SketchParams returns the sketch dimensions of an approximate namespace's
// config; zero epsilon or confidence (a config stored before they existed)
// reads as the default.
func (cfg Config) SketchParams() (crdt.SketchParams, error) {
	eps, conf := cfg.Epsilon, cfg.Confidence
	if eps == 0 {
		eps = DefaultEpsilon
	}
	if conf == 0 {
		conf = DefaultConfidence
	}
	return crdt.NewSketchParams(eps, conf)
}

// normalizeApprox validates and completes the sketch fields of cfg (see
// Config.Normalize): an approximate namespace gets the default
// epsilon and confidence when they are not given, and refuses the options a
// sketch cannot honour; other types refuse epsilon and confidence.
func (cfg *Config) normalizeApprox() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{nodeerr.ErrInvalidArgument}, args...)...)
	}
	if cfg.Type != TypeApproximate {
		if cfg.Epsilon != 0 || cfg.Confidence != 0 {
			return bad("epsilon and confidence apply to approximate namespaces only; set \"type\": \"approximate\" or leave them out")
		}
		return nil
	}
	p, err := cfg.SketchParams()
	if err != nil {
		return bad("%s", strings.TrimPrefix(err.Error(), crdt.ErrSketchParams.Error()+": "))
	}
	cfg.Epsilon, cfg.Confidence = p.Epsilon, p.Confidence
	switch {
	case len(cfg.Windows) > 0:
		return bad("an approximate namespace keeps no time windows (its sketch has no per-key history); leave windows out or use an eventual namespace")
	case cfg.TTL != "" && cfg.TTL != "0":
		return bad("an approximate namespace has no per-key ttl (its sketch holds no per-key counters); set ttl to \"0\"")
	case cfg.Min != nil || cfg.Max != nil:
		return bad("an approximate namespace cannot enforce min or max on estimates; leave them null")
	}
	return nil
}
