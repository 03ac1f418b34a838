package node

import "errors"

// Sentinel errors. Errors returned by Node wrap one of these with a message
// that says what was wrong and how to fix it; package httpapi maps them to the
// status codes of spec/API.md in one place.
var (
	ErrInvalidArgument = errors.New("node: invalid argument")
	ErrNotFound        = errors.New("node: not found")
	ErrConflict        = errors.New("node: conflict")
	ErrOverflow        = errors.New("node: value would leave int64")
	ErrOverloaded      = errors.New("node: overloaded")
	ErrUnavailable     = errors.New("node: unavailable")
	ErrTooLarge        = errors.New("node: too large")
	ErrClosed          = errors.New("node: closed")
)
