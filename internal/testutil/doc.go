// Package testutil holds the helpers the tests of every package share, so
// that none keeps a copy of its own: waiting for a condition by polling it
// with a deadline (Eventually, EventuallyState, Poll), never by sleeping
// for a guessed time.
package testutil
