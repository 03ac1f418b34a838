package node

import "github.com/countmesh/countmesh/node/internal/nodeerr"

// Sentinel errors. Errors returned by Node wrap one of these with a message
// that says what was wrong and how to fix it; package httpapi maps them to the
// status codes of docs/api.md in one place. They are defined in
// node/internal/nodeerr, so that node's subpackages return the same kinds.
var (
	ErrInvalidArgument = nodeerr.ErrInvalidArgument
	ErrNotFound        = nodeerr.ErrNotFound
	ErrConflict        = nodeerr.ErrConflict
	ErrOverflow        = nodeerr.ErrOverflow
	ErrOverloaded      = nodeerr.ErrOverloaded
	ErrUnavailable     = nodeerr.ErrUnavailable
	ErrTooLarge        = nodeerr.ErrTooLarge
	ErrClosed          = nodeerr.ErrClosed
	// ErrInvalidPeerData refuses what a peer sent (a replicated batch, a
	// state of the peer RPC, a rights request or grant) that is malformed or
	// out of bounds: nothing of it is applied. A peer is trusted to be a
	// member, never to be well-formed.
	ErrInvalidPeerData = nodeerr.ErrInvalidPeerData
	// ErrTooManyNamespaces refuses a write or config that would create a
	// namespace past Config.MaxNamespaces.
	ErrTooManyNamespaces = nodeerr.ErrTooManyNamespaces
	// ErrTooManySeries refuses an increment that would create a label series
	// of a key past Config.MaxSeriesPerKey.
	ErrTooManySeries = nodeerr.ErrTooManySeries
)
