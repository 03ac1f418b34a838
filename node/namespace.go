package node

import (
	"time"

	"github.com/countmesh/countmesh/node/nsconfig"
)

// The namespace configs and the namespace table live in package
// node/nsconfig; these names keep node's API as it was.

// Namespace types.
const (
	TypeEventual    = nsconfig.TypeEventual
	TypeExact       = nsconfig.TypeExact
	TypeApproximate = nsconfig.TypeApproximate
)

// Durability levels.
const (
	DurabilitySync  = nsconfig.DurabilitySync
	DurabilityAsync = nsconfig.DurabilityAsync
)

// Windows lists the time-bucket granularities a namespace may keep, finest
// first.
var Windows = nsconfig.Windows

// NamespaceConfig is the stored configuration of a namespace (see
// nsconfig.Config).
type NamespaceConfig = nsconfig.Config

// Defaults of an approximate namespace's sketch.
const (
	DefaultEpsilon    = nsconfig.DefaultEpsilon
	DefaultConfidence = nsconfig.DefaultConfidence
)

// DefaultNamespaceConfig is the configuration of a namespace created by a
// first write, given the node's default durability.
func DefaultNamespaceConfig(durability string) NamespaceConfig { return nsconfig.Default(durability) }

// NullableInt is a JSON field that distinguishes absent, null and a number.
type NullableInt = nsconfig.NullableInt

// NamespacePatch is the body of PUT /v1/namespaces/{ns} (see
// nsconfig.Patch).
type NamespacePatch = nsconfig.Patch

// ParseDuration parses "0", a Go duration ("90s", "48h") or a whole number
// of days ("90d"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) { return nsconfig.ParseDuration(s) }

// namespaceRecord is what the store keeps for a namespace.
type namespaceRecord = nsconfig.Record
