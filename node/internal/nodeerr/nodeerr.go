// Package nodeerr holds the sentinel errors of package node, so that the
// packages node is built from (node/series, node/query, ...) return errors
// of the same kinds without importing node. Package node re-exports each
// one under its public name (node.ErrInvalidArgument is
// nodeerr.ErrInvalidArgument), so errors.Is works across the split.
package nodeerr

import "errors"

// Sentinel errors; see package node for what each one means.
var (
	ErrInvalidArgument   = errors.New("node: invalid argument")
	ErrNotFound          = errors.New("node: not found")
	ErrConflict          = errors.New("node: conflict")
	ErrOverflow          = errors.New("node: value would leave int64")
	ErrOverloaded        = errors.New("node: overloaded")
	ErrUnavailable       = errors.New("node: unavailable")
	ErrTooLarge          = errors.New("node: too large")
	ErrClosed            = errors.New("node: closed")
	ErrInvalidPeerData   = errors.New("node: invalid peer data")
	ErrTooManyNamespaces = errors.New("node: too many namespaces")
	ErrTooManySeries     = errors.New("node: too many label series")
)
