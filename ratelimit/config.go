package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Sentinel errors. Errors returned by Limiter wrap one of these; package
// httpapi maps them to the codes of docs/api.md.
var (
	// ErrInvalidArgument: a bad limit, window, cost, namespace or key.
	ErrInvalidArgument = errors.New("ratelimit: invalid argument")
	// ErrUnavailable: the limiter cannot decide now (the owner cannot be
	// reached and this node's share is too small, or the caller gave up).
	ErrUnavailable = errors.New("ratelimit: unavailable")
	// ErrOverloaded: Config.MaxKeys limits are active at once.
	ErrOverloaded = errors.New("ratelimit: overloaded")
	// ErrClosed: the limiter was closed.
	ErrClosed = errors.New("ratelimit: closed")
)

// Bounds of a request.
const (
	MaxLimit  = 1<<53 - 1
	MinWindow = time.Millisecond
	MaxWindow = 366 * 24 * time.Hour
)

// Config configures a Limiter.
type Config struct {
	// Membership names this node and the live members; required.
	Membership Membership
	// Transport carries lease calls to other nodes; nil means no other node
	// can be reached (every limit owned elsewhere falls back to shares).
	Transport Transport
	// Now is the clock of the windows and leases; nil is time.Now.
	Now func() time.Time
	// LeaseTimeout bounds one lease call.
	LeaseTimeout time.Duration
	// OwnerDownHold: after a failed lease call, the owner is not asked
	// again for this long (decisions use the local share meanwhile).
	OwnerDownHold time.Duration
	// DenyHold: a refusal from the owner is repeated locally, without a
	// call, for at most this long (and never past its Retry-After).
	DenyHold time.Duration
	// ReturnIdle: the unused rest of a lease not used for this long goes
	// back to the owner, so that idle nodes do not strand budget.
	ReturnIdle time.Duration
	// MembersTTL: how long a snapshot of Membership is used.
	MembersTTL time.Duration
	// SweepInterval: how often idle limits are dropped and idle leases
	// returned.
	SweepInterval time.Duration
	// MaxKeys bounds the limits held at once (ErrOverloaded past it). A
	// limit is dropped two windows after its last use.
	MaxKeys int
	// Logger; nil logs nothing.
	Logger *zap.Logger
}

// DefaultConfig returns the defaults; Membership must still be set.
func DefaultConfig() Config {
	return Config{
		LeaseTimeout:  250 * time.Millisecond,
		OwnerDownHold: time.Second,
		DenyHold:      100 * time.Millisecond,
		ReturnIdle:    time.Second,
		MembersTTL:    100 * time.Millisecond,
		SweepInterval: time.Second,
		MaxKeys:       1 << 20,
	}
}

func (c *Config) validate() error {
	if c.Membership == nil {
		return fmt.Errorf("ratelimit: Config.Membership is required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.LeaseTimeout <= 0 {
		return fmt.Errorf("ratelimit: Config.LeaseTimeout must be positive, got %v", c.LeaseTimeout)
	}
	if c.SweepInterval <= 0 {
		return fmt.Errorf("ratelimit: Config.SweepInterval must be positive, got %v", c.SweepInterval)
	}
	if c.OwnerDownHold < 0 || c.DenyHold < 0 || c.ReturnIdle < 0 || c.MembersTTL < 0 {
		return fmt.Errorf("ratelimit: Config durations must not be negative")
	}
	if c.MaxKeys <= 0 {
		return fmt.Errorf("ratelimit: Config.MaxKeys must be positive, got %d", c.MaxKeys)
	}
	return nil
}

// Request is one rate-limit decision to make.
type Request struct {
	NS, Key string
	// Limit units per Window.
	Limit  int64
	Window time.Duration
	// Cost is the units this request takes: 1 to Limit.
	Cost int64
}

func (r Request) validate() error {
	if r.NS == "" || r.Key == "" {
		return fmt.Errorf("%w: namespace and key are required", ErrInvalidArgument)
	}
	if r.Limit < 1 || r.Limit > MaxLimit {
		return fmt.Errorf("%w: limit must be a whole number from 1 to 2^53-1, got %d", ErrInvalidArgument, r.Limit)
	}
	if r.Window < MinWindow || r.Window > MaxWindow {
		return fmt.Errorf("%w: window must be from 1ms to 366d, such as \"1m\", got %s", ErrInvalidArgument, r.Window)
	}
	if r.Cost < 1 || r.Cost > r.Limit {
		return fmt.Errorf("%w: cost must be from 1 to the limit (%d), got %d; a cost over the limit could never be admitted", ErrInvalidArgument, r.Limit, r.Cost)
	}
	return nil
}

// Source says how a decision was made.
type Source uint8

const (
	// SourceOwner: this node owns the limit and decided on its counts.
	SourceOwner Source = iota + 1
	// SourceLease: decided from a lease (or a refusal) the owner gave.
	SourceLease
	// SourceFallback: the owner could not be reached; decided on this
	// node's share of the limit.
	SourceFallback
)

func (s Source) String() string {
	switch s {
	case SourceOwner:
		return "owner"
	case SourceLease:
		return "lease"
	case SourceFallback:
		return "fallback"
	}
	return "unknown"
}

// Decision is the answer to a Request.
type Decision struct {
	Allowed bool
	Limit   int64
	// Remaining is an estimate of the units still available now (exact on
	// the owner; as of the last lease call on other nodes).
	Remaining int64
	// Reset is the time until the current window ends (its count then
	// starts to weigh less and less).
	Reset time.Duration
	// RetryAfter, when refused: until a request of the same cost is
	// expected to fit, if nothing else is taken meanwhile.
	RetryAfter time.Duration
	Source     Source
}
