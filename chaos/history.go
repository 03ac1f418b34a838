// This file holds the history: what the clients and the nemesis record
// and what the checker reads. It is plain data, in memory and as JSON
// lines (one Op or Fault per line) for a run kept on disk.

package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Outcome is how an operation ended from the client's point of view.
type Outcome uint8

const (
	// OK: the node acknowledged it.
	OK Outcome = iota + 1
	// Fail: the node refused it (4xx/5xx with an error body): it changed
	// nothing.
	Fail
	// Unknown: no answer (a timeout, a connection reset): it may or may
	// not have been applied, now or later.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Fail:
		return "fail"
	case Unknown:
		return "unknown"
	}
	return "outcome?"
}

// Kind is what an operation does.
type Kind string

const (
	// Incr adds By (negative: a decrement) to NS/Key, with ID when set.
	Incr Kind = "incr"
	// Read reads NS/Key at Consistency; Value holds the answer.
	Read Kind = "read"
	// Series reads the windowed series of NS/Key; Value holds its total.
	Series Kind = "series"
	// RateLimit asks for Cost units of the limit Limit per Window of
	// NS/Key; Allowed holds the answer.
	RateLimit Kind = "ratelimit"
)

// Op is one operation of one client, as it was invoked and completed.
type Op struct {
	Client int    `json:"client"`
	Kind   Kind   `json:"kind"`
	Node   string `json:"node"` // the node the request went to
	NS     string `json:"ns"`
	Key    string `json:"key"`
	// By is the amount of an Incr (negative for a decrement).
	By int64 `json:"by,omitempty"`
	// ID is the idempotency id of an Incr ("" none). Retries of one
	// logical increment share it, each retry being an Op of its own.
	ID string `json:"id,omitempty"`
	// Consistency of an Incr or a Read: local, quorum or all.
	Consistency string `json:"consistency,omitempty"`
	// Value is what a Read or Series answered (Outcome OK), or what an
	// Incr answered as the counter's value.
	Value int64 `json:"value,omitempty"`
	// Duplicate: the node answered that ID was seen before.
	Duplicate bool `json:"duplicate,omitempty"`
	// Rate limits.
	Limit   int64         `json:"limit,omitempty"`
	Window  time.Duration `json:"window,omitempty"`
	Cost    int64         `json:"cost,omitempty"`
	Allowed bool          `json:"allowed,omitempty"`

	Invoke   time.Time `json:"invoke"`
	Complete time.Time `json:"complete"`
	Outcome  Outcome   `json:"outcome"`
	// Status is the HTTP status (0: no answer); Error the error code or
	// the transport error, for the report.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// FaultKind names what the nemesis did.
type FaultKind string

const (
	PartitionRegions FaultKind = "partition-regions" // Groups: the sides
	PartitionNodes   FaultKind = "partition-nodes"   // Groups: the sides
	PartitionOneWay  FaultKind = "partition-one-way" // Nodes[0] stops hearing Nodes[1:]
	Kill             FaultKind = "kill"              // SIGKILL, restarted at End
	Pause            FaultKind = "pause"             // SIGSTOP, SIGCONT at End
	Wipe             FaultKind = "wipe"              // SIGKILL, data directory removed, restarted at End
	Join             FaultKind = "join"              // a new node joined at Start
	Leave            FaultKind = "leave"             // a node left for good at Start
	ClockSkew        FaultKind = "clock-skew"        // Nodes run Skew off, from Start to End
	DiskFull         FaultKind = "disk-full"         // the data disk filled at Start, freed and the node restarted at End
	FsyncError       FaultKind = "fsync-error"       // fsyncs fail from Start; the node restarted at End
	// Forget: countctl cluster forget Nodes[0] (a node that left for good,
	// or the earlier incarnations of a wiped one), sent to Nodes[1]; no
	// count may move. Skew is unused; End is when the answer came.
	Forget FaultKind = "forget"
)

// Fault is one fault the nemesis injected and healed.
type Fault struct {
	Kind   FaultKind     `json:"kind"`
	Nodes  []string      `json:"nodes,omitempty"`
	Groups [][]string    `json:"groups,omitempty"`
	Skew   time.Duration `json:"skew,omitempty"`
	Start  time.Time     `json:"start"`
	End    time.Time     `json:"end"` // zero: never healed (a leave)
}

// Bounds are the bounds of an exact namespace (nil: unbounded side).
type Bounds struct {
	Min *int64 `json:"min,omitempty"`
	Max *int64 `json:"max,omitempty"`
}

// History is a whole run: what the checker reads.
type History struct {
	Seed   uint64  `json:"seed"`
	Ops    []Op    `json:"-"`
	Faults []Fault `json:"-"`
	// Nodes are the nodes that were in the mesh at the end.
	Nodes []string `json:"nodes"`
	// Bounds of the exact namespaces, by namespace.
	Bounds map[string]Bounds `json:"bounds,omitempty"`
	// Final holds, after every fault was healed and the mesh settled, what
	// every node read for every key: Final[node]["ns/key"].
	Final map[string]map[string]int64 `json:"final"`
	// FinalSeries holds the total of each windowed counter's series, read
	// after the mesh settled: FinalSeries["ns/key"].
	FinalSeries map[string]int64 `json:"final_series,omitempty"`
	// LossWindow: an increment acknowledged by a node less than this
	// before the node's data directory was wiped may be lost (it may not
	// have left the node yet); the checker counts it as unknown.
	LossWindow time.Duration `json:"loss_window"`
	// RateLimitSlack is the documented factor by which a partitioned mesh
	// may over-admit: at most Slack x limit per window (docs/ratelimit.md).
	RateLimitSlack int64 `json:"rate_limit_slack"`
	// Regions maps every node that took part to its region. Quorum is a
	// majority of the node's own region (docs/consistency.md), so a strong
	// read need only see the strong writes made in its region. Nil: one
	// region.
	Regions map[string]string `json:"regions,omitempty"`
}

// WriteHistory writes h as JSON lines: {"history":…} first (everything but
// the faults and operations), then one {"fault":…} per fault and one
// {"op":…} per operation, in order.
func WriteHistory(w io.Writer, h *History) error {
	enc := json.NewEncoder(w)
	if err := enc.Encode(map[string]any{"history": h}); err != nil {
		return err
	}
	for _, f := range h.Faults {
		if err := enc.Encode(map[string]any{"fault": f}); err != nil {
			return err
		}
	}
	for _, o := range h.Ops {
		if err := enc.Encode(map[string]any{"op": o}); err != nil {
			return err
		}
	}
	return nil
}

// ReadHistory reads what WriteHistory wrote, so that a recorded campaign
// can be checked again (by a newer checker, say).
func ReadHistory(r io.Reader) (*History, error) {
	dec := json.NewDecoder(r)
	var h *History
	for line := 1; ; line++ {
		var rec struct {
			History *History `json:"history"`
			Fault   *Fault   `json:"fault"`
			Op      *Op      `json:"op"`
		}
		err := dec.Decode(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("chaos: history record %d: %w", line, err)
		}
		switch {
		case rec.History != nil:
			if h != nil {
				return nil, fmt.Errorf("chaos: history record %d: a second history header", line)
			}
			h = rec.History
		case h == nil:
			return nil, fmt.Errorf("chaos: history record %d: a fault or operation before the history header", line)
		case rec.Fault != nil:
			h.Faults = append(h.Faults, *rec.Fault)
		case rec.Op != nil:
			h.Ops = append(h.Ops, *rec.Op)
		default:
			return nil, fmt.Errorf("chaos: history record %d: neither history, fault nor op", line)
		}
	}
	if h == nil {
		return nil, errors.New("chaos: empty history")
	}
	return h, nil
}
