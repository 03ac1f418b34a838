package gossip

import (
	"context"
	"fmt"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/transport"
)

// Method names a peer call (see package gossip/transport).
type Method = transport.Method

// The peer calls.
const (
	// MethodFetchState reads one counter's durable state (quorum and all
	// reads).
	MethodFetchState = transport.MethodFetchState
	// MethodPushStates merges counter states and answers once they are
	// durable (quorum and all writes).
	MethodPushStates = transport.MethodPushStates
	// MethodRights asks for rights of a bounded counter (exact namespaces).
	MethodRights = transport.MethodRights
	// MethodLease asks the owner of a rate limit for a lease.
	MethodLease = transport.MethodLease
	// MethodFetchStates reads many counters' durable states (reads of
	// sharded namespaces).
	MethodFetchStates = transport.MethodFetchStates
	// MethodCovers reads durable vector entries of sequence spaces, then
	// counters' states (a writer's copies of sharded counters).
	MethodCovers = transport.MethodCovers
	// MethodRetirePrepare, MethodRetireAccept and MethodRetireSync decide
	// and spread the retired list (countctl cluster forget).
	MethodRetirePrepare = transport.MethodRetirePrepare
	MethodRetireAccept  = transport.MethodRetireAccept
	MethodRetireSync    = transport.MethodRetireSync
)

// Handler answers a peer call (see transport.Handler).
type Handler = transport.Handler

// ErrRemote wraps the error a peer's handler answered a call with.
var ErrRemote = transport.ErrRemote

// ErrUnknownPeer is a call to a name that is not a member this node knows.
var ErrUnknownPeer = transport.ErrUnknownPeer

// Handle registers the handler of a method, replacing any earlier one; a
// method without a handler answers every call with an error. It is safe
// to call at any time.
func (m *Mesh) Handle(method Method, h Handler) { m.tr.Handle(method, h) }

// Call sends req to the member called to, over the peer transport, and
// decodes its answer into resp (nil to ignore it). ctx bounds the whole
// call; an error wraps ErrRemote when the peer's handler refused, else it
// is a transport failure. Connections are kept open between calls (at
// most MaxIdleRPCConns idle per member).
func (m *Mesh) Call(ctx context.Context, to string, method Method, req, resp any) error {
	if st := m.state.Load(); st != stateStarted && st != stateLeft {
		return m.notRunning()
	}
	return m.tr.Call(ctx, to, method, req, resp)
}

// memberView answers the transport's questions about members.
type memberView struct{ m *Mesh }

// Lookup returns what dialing a member needs: any verified member
// this node knows but one that left.
func (v memberView) Lookup(name string) (transport.Peer, bool) {
	m := v.m
	m.members.Lock()
	defer m.members.Unlock()
	rec, ok := m.members.m[name]
	if !ok || rec.state == StateLeft || !rec.verified {
		return transport.Peer{}, false
	}
	return transport.Peer{Name: name, Region: rec.info.Region, Addr: rec.info.ReplAddr}, true
}

// MemberID returns the slot id a verified member advertises (its name and
// incarnation), and whether name is such a member.
func (m *Mesh) MemberID(name string) (crdt.NodeID, bool) {
	m.members.Lock()
	defer m.members.Unlock()
	rec, ok := m.members.m[name]
	if !ok || !rec.verified {
		return 0, false
	}
	return rec.info.ID, true
}

// IsMember reports whether name is a member this node knows, in any
// state: only members may open streams, exchanges and calls (the
// transport waits a little for membership to learn of a new one).
func (v memberView) IsMember(name string) bool {
	m := v.m
	m.members.Lock()
	defer m.members.Unlock()
	_, ok := m.members.m[name]
	return ok
}

// SetGossipKeys replaces memberlist's keyring without a restart: the new
// keys are installed, the first becomes the one that encrypts, and keys
// not listed are dropped. Rotate in three steps, each on every node
// before the next: add the new key (second), make it first, drop the old.
func (m *Mesh) SetGossipKeys(keys [][]byte) error {
	if err := checkGossipKeys(keys); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	kr := m.keyring
	if kr == nil {
		return fmt.Errorf("%w: gossip encryption was not enabled at start; restart with a key", ErrInvalidConfig)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: at least one gossip key is needed once encryption is on", ErrInvalidConfig)
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("gossip: add key: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	keep := make(map[string]bool, len(keys))
	for _, k := range keys {
		keep[string(k)] = true
	}
	for _, k := range kr.GetKeys() {
		if !keep[string(k)] {
			if err := kr.RemoveKey(k); err != nil {
				return fmt.Errorf("gossip: remove key: %w", err)
			}
		}
	}
	return nil
}
