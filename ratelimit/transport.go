package ratelimit

import (
	"context"
	"time"
)

// Transport carries a lease request to the owner of a limit. Tests use an
// in-process transport; countd uses the mesh's peer transport
// (peerrpc.Client).
type Transport interface {
	// Lease sends req to the node at addr (its Member.Addr) and returns its
	// answer. An error means no answer: the caller falls back.
	Lease(ctx context.Context, addr string, req LeaseRequest) (LeaseResponse, error)
}

// LeaseRequest asks the owner of a limit for units (Want), gives back the
// unused rest of an earlier lease (Return) and, on first contact with this
// owner, reports what the sender admitted on its own (Sync).
type LeaseRequest struct {
	From   string        `json:"from"`
	NS     string        `json:"ns"`
	Key    string        `json:"key"`
	Window time.Duration `json:"window_ns"`
	Limit  int64         `json:"limit"`
	// Want is the cost of the request that needs the lease; 0 only gives
	// back Return.
	Want   int64         `json:"want"`
	Return *LeaseReturn  `json:"return,omitempty"`
	Sync   []WindowCount `json:"sync,omitempty"`
}

// LeaseReturn gives back the unused units of lease ID. The owner applies it
// at most once (it remembers the last lease of each holder).
type LeaseReturn struct {
	ID    uint64 `json:"id"`
	Units int64  `json:"units"`
}

// WindowCount is a count of units admitted in one window (unix nanoseconds
// / window length).
type WindowCount struct {
	Window int64 `json:"window"`
	Count  int64 `json:"count"`
}

// LeaseResponse is the owner's answer.
type LeaseResponse struct {
	// NotOwner: the receiver does not own the limit in its view of the
	// membership (views differ while membership changes); Owner names the
	// node it thinks does.
	NotOwner bool   `json:"not_owner,omitempty"`
	Owner    string `json:"owner,omitempty"`
	// Epoch changes when the owner restarts (its counts are gone): the
	// holder reports its own counts again.
	Epoch uint64 `json:"epoch"`
	// Granted units (0: refused) under lease ID, usable for ValidFor (until
	// the owner's window ends).
	Granted  int64         `json:"granted"`
	ID       uint64        `json:"id,omitempty"`
	ValidFor time.Duration `json:"valid_ns,omitempty"`
	// Remaining is what is left of the limit after this grant.
	Remaining int64 `json:"remaining"`
	// RetryAfter, when refused: until Want is expected to fit.
	RetryAfter time.Duration `json:"retry_ns,omitempty"`
}
