package exact

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/retire"
)

// Consistency levels of a read or a write (docs/api.md, "Consistency").
const (
	ConsistencyLocal  = "local"
	ConsistencyQuorum = "quorum"
	ConsistencyAll    = "all"
)

// DefaultQuorumTimeout bounds a quorum or all operation when
// Config.QuorumTimeout is zero.
const DefaultQuorumTimeout = 2 * time.Second

// Peer is another node of the mesh as the consistency levels see it.
type Peer struct {
	Name string
	// ID is the peer's slot id; 0 when unknown (crdt.NodeIDFromName(Name)
	// is then assumed).
	ID       crdt.NodeID
	Region   string
	HTTPAddr string
	// Alive is false for a member the failure detector suspects or declared
	// dead. A quorum still asks it (the majority counts every member of the
	// region); all skips it.
	Alive bool
	// Suspect is true for a member the mesh still counts alive but this
	// node cannot reach: it keeps its place in the placement of sharded
	// namespaces.
	Suspect bool
}

// Peers lists the other members of the mesh (cmd/countd builds it from the
// gossip mesh; members that left gracefully are not listed). It may list
// this node too; it is skipped by name. Peers must be safe for concurrent
// use and must not block.
type Peers interface {
	Peers() []Peer
}

// CounterState is one counter's full CRDT state, as peers exchange it for
// the quorum and all levels.
type CounterState struct {
	NS, Key string
	State   crdt.Counter
	// Origin and Seq, when both are set, say that State holds Origin's
	// change Seq of this counter (its latest): the receiver then counts
	// that change as held, as if it had come by Origin's stream. A quorum
	// push sets them (the transport sets Origin to the caller); without
	// them a change that reached some nodes only by pushes would have no
	// place in their version vectors, and if its origin then lost its disk
	// anti-entropy could never carry it to the others (the chaos campaign
	// saw the nodes disagree for good that way).
	Origin crdt.NodeID
	Seq    uint64
}

// PeerTransport is the peer RPC of the quorum and all levels (package
// httpapi implements it over HTTP). Both calls must return when ctx ends.
type PeerTransport interface {
	// FetchState returns p's durable state of ns/key (the zero Counter for
	// a counter p never saw), as a node's PeerState answers it.
	FetchState(ctx context.Context, p Peer, ns, key string) (crdt.Counter, error)
	// PushStates merges states into p and returns once p holds them
	// durably, as a node's MergeStates does.
	PushStates(ctx context.Context, p Peer, states []CounterState) error
}

// Config holds what the quorum needs from the node.
type Config struct {
	Name, Region string      // this node's
	ID           crdt.NodeID // this node's slot
	// Peers and Transport reach the other nodes; with either nil this
	// node alone is every quorum.
	Peers     Peers
	Transport PeerTransport
	Timeout   time.Duration // of one operation (0: DefaultQuorumTimeout)
	Log       *zap.Logger
	// Flush returns once every change this node applied so far is durable.
	Flush func(ctx context.Context) error
	// OwnChange returns the state of ns/key and the sequence of this
	// node's latest change of it.
	OwnChange func(ns, key string) (crdt.Counter, uint64, error)
	// State returns this node's state of ns/key (the zero Counter when it
	// never saw it).
	State func(ns, key string) (crdt.Counter, error)
	// Check refuses a peer's state of ns/key that is malformed or out of
	// bounds (the rules of peer input); OnRefused counts a refusal.
	Check     func(ns, key string, c *crdt.Counter) error
	OnRefused func()
	// Merge merges full states into this node's counters and returns once
	// they are durable.
	Merge func(states []CounterState) error
	// CheckReadable refuses a read on a node that is not ready.
	CheckReadable func() error
	// Retired returns the retired list's ids (package node/retire), with
	// which the answers of a read merge across retired generations; nil:
	// none.
	Retired func() []crdt.NodeID
}

// Quorum runs the quorum and all consistency levels: it pushes a write's
// counters to the nodes a level asks for (Replicate) and brings a read's
// counter up to what they hold (Gather). It is safe for concurrent use.
type Quorum struct{ cfg Config }

// NewQuorum returns the quorum of a node.
func NewQuorum(cfg Config) *Quorum { return &Quorum{cfg: cfg} }

// quorumSet is who an operation at a level must reach.
type quorumSet struct {
	level   string
	targets []Peer // the other nodes asked
	need    int    // acknowledgements needed from targets
	of      int    // the nodes the level counts, this one included
}

// quorumFor returns the peers a level asks and how many of them must
// answer: for quorum, a majority of this node's region (this node counts as
// one); for all, every live member of every region. Without peers (a single
// node) this node alone is the quorum.
func (q *Quorum) quorumFor(level string) quorumSet {
	qs := quorumSet{level: level, of: 1}
	if q.cfg.Peers == nil || q.cfg.Transport == nil {
		return qs
	}
	for _, p := range q.cfg.Peers.Peers() {
		if p.Name == q.cfg.Name {
			continue
		}
		switch level {
		case ConsistencyQuorum:
			if p.Region == q.cfg.Region {
				qs.targets = append(qs.targets, p)
				qs.of++
			}
		case ConsistencyAll:
			if p.Alive {
				qs.targets = append(qs.targets, p)
				qs.of++
			}
		}
	}
	switch level {
	case ConsistencyQuorum:
		qs.need = qs.of/2 + 1 - 1 // a majority, this node included
	case ConsistencyAll:
		qs.need = len(qs.targets)
	}
	return qs
}

// describe says who the level waits for, for error messages.
func (qs quorumSet) describe(region string) string {
	if qs.level == ConsistencyAll {
		return fmt.Sprintf("all %d live nodes of the mesh", qs.of)
	}
	return fmt.Sprintf("%d of the %d nodes of region %q", qs.need+1, qs.of, region)
}

// Timeout returns the bound of one quorum operation.
func (q *Quorum) Timeout() time.Duration {
	if q.cfg.Timeout > 0 {
		return q.cfg.Timeout
	}
	return DefaultQuorumTimeout
}

// Replicate makes the counters ns/keys reach the nodes a level asks for,
// after a write applied here: it waits until this node holds them durably
// (whatever the namespace's durability: only what is durable leaves the
// node), then pushes their state to the level's targets and returns once
// enough acknowledged, or nodeerr.ErrUnavailable after Config.QuorumTimeout. On
// failure the write stays applied here and may still reach the others (the
// pushes in flight and replication go on).
func (q *Quorum) Replicate(ctx context.Context, level, ns string, keys ...string) error {
	qs := q.quorumFor(level)
	ctx, cancel := context.WithTimeout(ctx, q.Timeout())
	defer cancel()
	if err := q.cfg.Flush(ctx); err != nil {
		return err
	}
	if qs.need == 0 {
		return nil
	}
	states := make([]CounterState, 0, len(keys))
	for _, key := range keys {
		c, seq, err := q.cfg.OwnChange(ns, key)
		if err != nil {
			return kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
		}
		states = append(states, CounterState{NS: ns, Key: key, State: c, Origin: q.cfg.ID, Seq: seq})
	}
	acked, errs := q.push(ctx, qs.targets, qs.need, states)
	if acked >= qs.need {
		return nil
	}
	q.cfg.Log.Debug("write did not reach its quorum", zap.String("level", level), zap.String("ns", ns),
		zap.Strings("keys", keys), zap.Int("acked", acked), zap.Int("need", qs.need), zap.Error(errs))
	return kinderr.New(nodeerr.ErrUnavailable, orUnknown(errs), "consistency %s needs %s to acknowledge the write; %d did within %v (%v). "+
		"The write is applied on this node and may still reach the others; "+
		"retry with the same id to have it counted once, or use consistency local", level, qs.describe(q.cfg.Region), acked+1, q.Timeout(), orUnknown(errs))
}

// push sends states to every target in parallel and returns when need of
// them acknowledged, when too many failed for that, or when ctx ends. It
// returns the acknowledgements counted and the failures seen.
func (q *Quorum) push(ctx context.Context, targets []Peer, need int, states []CounterState) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the pushes still in flight stop with it
	results := make(chan error, len(targets))
	for _, p := range targets {
		go func() {
			err := q.cfg.Transport.PushStates(ctx, p, states)
			if err != nil {
				err = fmt.Errorf("%s: %w", p.Name, err)
			}
			results <- err
		}()
	}
	acked, failed := 0, 0
	var errs []error
	for acked < need && len(targets)-failed >= need {
		select {
		case err := <-results:
			if err == nil {
				acked++
			} else {
				failed++
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return acked, errors.Join(append(errs, ctx.Err())...)
		}
	}
	return acked, errors.Join(errs...)
}

// Gather brings this node's copy of ns/key up to what the level's nodes
// hold, before a read answers from it: it fetches the counter's state from
// the targets in parallel, merges what need of them returned into the local
// copy (durably, through Apply), and when the merged state is more than
// some of those nodes held, writes it back until need of the targets hold
// it. So a read returns every write that a quorum acknowledged before it
// started, and a later read anywhere in the region returns at least as
// much (a quorum read is linearizable for a counter of unit increments).
// It returns the merged state, which the read must answer rather than the
// local copy: that may have moved on since (a write in flight here, not yet
// on a majority). nodeerr.ErrUnavailable when that cannot be done within
// Config.QuorumTimeout.
func (q *Quorum) Gather(ctx context.Context, level, ns, key string) (crdt.Counter, error) {
	// A node that is not ready may have lost what it acknowledged (a
	// restart with an empty disk): its copy cannot count toward a quorum,
	// least of all when it is the whole quorum (a region of one). Found
	// by the chaos campaign (seed 20261201): a wiped node of a one-node
	// region answered a quorum read with 0 before it had caught up.
	if err := q.cfg.CheckReadable(); err != nil {
		return crdt.Counter{}, err
	}
	qs := q.quorumFor(level)
	ctx, cancel := context.WithTimeout(ctx, q.Timeout())
	defer cancel()
	if qs.need == 0 {
		// This node alone: answer only what is durable here.
		local, err := q.cfg.State(ns, key)
		if err != nil {
			return crdt.Counter{}, kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
		}
		return local, q.cfg.Flush(ctx)
	}
	type fetched struct {
		peer  Peer
		state crdt.Counter
		err   error
	}
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	results := make(chan fetched, len(qs.targets))
	for _, p := range qs.targets {
		go func() {
			c, err := q.cfg.Transport.FetchState(fctx, p, ns, key)
			if err != nil {
				err = fmt.Errorf("%s: %w", p.Name, err)
			}
			results <- fetched{p, c, err}
		}()
	}
	var got []fetched
	var errs []error
	failed := 0
	for len(got) < qs.need && len(qs.targets)-failed >= qs.need {
		select {
		case f := <-results:
			if f.err == nil {
				// A peer's answer is peer input: checked like a pushed
				// state before it is merged or answered.
				if err := q.cfg.Check(ns, key, &f.state); err != nil {
					q.cfg.OnRefused()
					f.err = fmt.Errorf("%s: %w", f.peer.Name, err)
				}
			}
			if f.err != nil {
				failed++
				errs = append(errs, f.err)
				continue
			}
			got = append(got, f)
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			failed = len(qs.targets) // leave the loop
		}
	}
	fcancel()
	if len(got) < qs.need {
		return crdt.Counter{}, kinderr.New(nodeerr.ErrUnavailable, orUnknown(errors.Join(errs...)), "consistency %s needs %s to answer the read; %d did within %v (%v); "+
			"retry, or use consistency local for this node's value", level, qs.describe(q.cfg.Region), len(got)+1, q.Timeout(), orUnknown(errors.Join(errs...)))
	}

	local, err := q.cfg.State(ns, key)
	if err != nil {
		return crdt.Counter{}, kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
	}
	merged := local.Clone()
	var retired []crdt.NodeID
	if q.cfg.Retired != nil {
		retired = q.cfg.Retired()
	}
	for _, f := range got {
		if err := retire.Merge(&merged, f.state, retired); err != nil {
			return crdt.Counter{}, kinderr.New(nodeerr.ErrUnavailable, err, "merge a peer's state of %s/%q: %v; retry once the retired list has reached this node", ns, key, err)
		}
	}
	if !merged.Equal(local) {
		if err := q.cfg.Merge([]CounterState{{NS: ns, Key: key, State: merged}}); err != nil {
			return crdt.Counter{}, err
		}
	}
	// Every write this node saw before the read is part of the answer:
	// make it durable before it is shown.
	if err := q.cfg.Flush(ctx); err != nil {
		return crdt.Counter{}, err
	}
	// Write back: the merged state must sit on enough nodes that any later
	// read meets it. The nodes that returned it already hold it.
	var behind []Peer
	for _, f := range got {
		if !f.state.Equal(merged) {
			behind = append(behind, f.peer)
		}
	}
	if len(behind) == 0 {
		return merged, nil
	}
	held := len(got) - len(behind)
	var others []Peer
	for _, p := range qs.targets {
		holds := false
		for _, f := range got {
			if f.peer.Name == p.Name && f.state.Equal(merged) {
				holds = true
			}
		}
		if !holds {
			others = append(others, p)
		}
	}
	acked, perr := q.push(ctx, others, qs.need-held, []CounterState{{NS: ns, Key: key, State: merged}})
	if acked >= qs.need-held {
		return merged, nil
	}
	return crdt.Counter{}, kinderr.New(nodeerr.ErrUnavailable, orUnknown(perr), "consistency %s: the read's value could not be written back to %s within %v (%v); retry", level, qs.describe(q.cfg.Region), q.Timeout(), orUnknown(perr))
}

// errNoAnswer stands for the failures of a quorum operation that saw none.
var errNoAnswer = errors.New("no answer")

func orUnknown(err error) error {
	if err == nil {
		return errNoAnswer
	}
	return err
}
