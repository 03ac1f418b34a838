package node

import "errors"

// Sentinel errors. Errors returned by Node wrap one of these with a message
// that says what was wrong and how to fix it; package httpapi maps them to the
// status codes of docs/api.md in one place.
var (
	ErrInvalidArgument = errors.New("node: invalid argument")
	ErrNotFound        = errors.New("node: not found")
	ErrConflict        = errors.New("node: conflict")
	ErrOverflow        = errors.New("node: value would leave int64")
	ErrOverloaded      = errors.New("node: overloaded")
	ErrUnavailable     = errors.New("node: unavailable")
	ErrTooLarge        = errors.New("node: too large")
	ErrClosed          = errors.New("node: closed")
	// ErrInvalidPeerData refuses what a peer sent (a replicated batch, a
	// state of the peer RPC, a rights request or grant) that is malformed or
	// out of bounds: nothing of it is applied. A peer is trusted to be a
	// member, never to be well-formed.
	ErrInvalidPeerData = errors.New("node: invalid peer data")
	// ErrTooManyNamespaces refuses a write or config that would create a
	// namespace past Config.MaxNamespaces.
	ErrTooManyNamespaces = errors.New("node: too many namespaces")
	// ErrTooManySeries refuses an increment that would create a label series
	// of a key past Config.MaxSeriesPerKey.
	ErrTooManySeries = errors.New("node: too many label series")
)
