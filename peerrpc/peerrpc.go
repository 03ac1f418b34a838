package peerrpc

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

// MaxStates bounds the counter states of one push (a quorum batch of
// 10,000 operations pushes at most that many).
const MaxStates = 10_000

// ErrInvalid wraps every request refused here before it reaches the node.
var ErrInvalid = errors.New("peerrpc: invalid request")

// Mesh is what peerrpc needs of the mesh (a *gossip.Mesh).
type Mesh interface {
	Call(ctx context.Context, to string, method gossip.Method, req, resp any) error
	Handle(method gossip.Method, h gossip.Handler)
	Status() gossip.Status
	// MemberID is the slot id a member advertises.
	MemberID(name string) (crdt.NodeID, bool)
}

// The bodies of the calls (msgpack, structs as arrays: fields may only be
// appended).
type (
	fetchReq struct {
		NS, Key string
	}
	fetchResp struct {
		State crdt.Counter
	}
	fetchManyReq struct {
		Keys []fetchReq
	}
	fetchManyResp struct {
		States []crdt.Counter
	}
	coversReq struct {
		Spaces []uint64
		Keys   []fetchReq
	}
	coversResp struct {
		Upto   []uint64 // per space
		States []crdt.Counter
	}
	wireState struct {
		NS, Key string
		State   crdt.Counter
		Seq     uint64 // the caller's change of the counter State holds
	}
	pushReq struct {
		States []wireState
	}
	rightsReq struct {
		NS, Key string
		Down    bool
		Want    int64
		To      uint64
	}
	rightsResp struct {
		Amount int64
		Record crdt.Counter
	}
)

// Client calls the peers. The zero value is ready; until Attach it knows
// no peer, so the node is its own quorum and owns every rate limit.
type Client struct {
	mesh atomic.Pointer[meshRef]
}

type meshRef struct{ m Mesh }

var (
	_ node.Peers           = (*Client)(nil)
	_ node.PeerTransport   = (*Client)(nil)
	_ node.StatesFetcher   = (*Client)(nil)
	_ node.RightsTransport = (*Client)(nil)
	_ ratelimit.Transport  = (*Client)(nil)
)

// Attach sets the mesh the client calls through.
func (c *Client) Attach(m Mesh) { c.mesh.Store(&meshRef{m}) }

func (c *Client) call(ctx context.Context, to string, method gossip.Method, req, resp any) error {
	ref := c.mesh.Load()
	if ref == nil {
		return fmt.Errorf("peerrpc: %s call to %s: the node is not in a mesh", method, to)
	}
	return ref.m.Call(ctx, to, method, req, resp)
}

// Peers implements node.Peers: every member but those that left the mesh
// gracefully (the node skips itself by name).
func (c *Client) Peers() []node.Peer {
	ref := c.mesh.Load()
	if ref == nil {
		return nil
	}
	st := ref.m.Status()
	out := make([]node.Peer, 0, len(st.Members))
	for _, m := range st.Members {
		if m.State == gossip.StateLeft {
			continue
		}
		out = append(out, node.Peer{Name: m.Name, ID: m.ID, Region: m.Region, HTTPAddr: m.HTTPAddr,
			Alive: m.State == gossip.StateAlive, Suspect: m.State == gossip.StateSuspect})
	}
	return out
}

// FetchState implements node.PeerTransport.
func (c *Client) FetchState(ctx context.Context, p node.Peer, ns, key string) (crdt.Counter, error) {
	var out fetchResp
	if err := c.call(ctx, p.Name, gossip.MethodFetchState, fetchReq{NS: ns, Key: key}, &out); err != nil {
		return crdt.Counter{}, err
	}
	return out.State, nil
}

// FetchStates reads the durable states of many counters of p in one call
// (node.StatesFetcher).
func (c *Client) FetchStates(ctx context.Context, p node.Peer, keys []node.KeyRef) ([]crdt.Counter, error) {
	if len(keys) > MaxStates {
		return nil, fmt.Errorf("%w: %d keys in one fetch (at most %d)", ErrInvalid, len(keys), MaxStates)
	}
	in := fetchManyReq{Keys: make([]fetchReq, len(keys))}
	for i, k := range keys {
		in.Keys[i] = fetchReq{NS: k.NS, Key: k.Key}
	}
	var out fetchManyResp
	if err := c.call(ctx, p.Name, gossip.MethodFetchStates, in, &out); err != nil {
		return nil, err
	}
	if len(out.States) != len(keys) {
		return nil, fmt.Errorf("peerrpc: %s answered %d states for %d keys", p.Name, len(out.States), len(keys))
	}
	return out.States, nil
}

// Covers returns p's durable vector entries of spaces and, read after
// them, its states of keys (node.CoversFetcher).
func (c *Client) Covers(ctx context.Context, p node.Peer, spaces []crdt.NodeID, keys []node.KeyRef) ([]uint64, []crdt.Counter, error) {
	if len(keys) > MaxStates || len(spaces) > MaxStates {
		return nil, nil, fmt.Errorf("%w: %d keys and %d spaces in one call (at most %d each)", ErrInvalid, len(keys), len(spaces), MaxStates)
	}
	in := coversReq{Spaces: make([]uint64, len(spaces)), Keys: make([]fetchReq, len(keys))}
	for i, sp := range spaces {
		in.Spaces[i] = uint64(sp)
	}
	for i, k := range keys {
		in.Keys[i] = fetchReq{NS: k.NS, Key: k.Key}
	}
	var out coversResp
	if err := c.call(ctx, p.Name, gossip.MethodCovers, in, &out); err != nil {
		return nil, nil, err
	}
	if len(out.Upto) != len(spaces) || len(out.States) != len(keys) {
		return nil, nil, fmt.Errorf("peerrpc: %s answered %d entries and %d states for %d spaces and %d keys", p.Name, len(out.Upto), len(out.States), len(spaces), len(keys))
	}
	return out.Upto, out.States, nil
}

// PushStates implements node.PeerTransport.
func (c *Client) PushStates(ctx context.Context, p node.Peer, states []node.CounterState) error {
	in := pushReq{States: make([]wireState, len(states))}
	for i, st := range states {
		in.States[i] = wireState{NS: st.NS, Key: st.Key, State: st.State, Seq: st.Seq}
	}
	return c.call(ctx, p.Name, gossip.MethodPushStates, in, nil)
}

// TransferRights implements node.RightsTransport.
func (c *Client) TransferRights(ctx context.Context, p node.Peer, req node.RightsRequest) (node.RightsGrant, error) {
	var out rightsResp
	in := rightsReq{NS: req.NS, Key: req.Key, Down: req.Down, Want: req.Want, To: uint64(req.To)}
	if err := c.call(ctx, p.Name, gossip.MethodRights, in, &out); err != nil {
		return node.RightsGrant{}, err
	}
	return node.RightsGrant{Amount: out.Amount, Record: out.Record}, nil
}

// Lease implements ratelimit.Transport; addr is the owner's member name
// (Member.Addr of MeshMembership).
func (c *Client) Lease(ctx context.Context, addr string, req ratelimit.LeaseRequest) (ratelimit.LeaseResponse, error) {
	var out ratelimit.LeaseResponse
	err := c.call(ctx, addr, gossip.MethodLease, req, &out)
	return out, err
}

// Services are the answering side: the node, and the rate limiter (nil
// when the node has none).
type Services struct {
	Node    *node.Node
	Limiter *ratelimit.Limiter
}

// Serve registers the handlers of every peer call on m.
func Serve(m Mesh, s Services) {
	m.Handle(gossip.MethodFetchState, func(ctx context.Context, _ string, decode func(any) error) (any, error) {
		var req fetchReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		st, err := s.Node.PeerState(ctx, req.NS, req.Key)
		if err != nil {
			return nil, err
		}
		return fetchResp{State: st}, nil
	})
	m.Handle(gossip.MethodFetchStates, func(ctx context.Context, _ string, decode func(any) error) (any, error) {
		var req fetchManyReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		if len(req.Keys) > MaxStates {
			return nil, fmt.Errorf("%w: %d keys in one fetch (at most %d)", ErrInvalid, len(req.Keys), MaxStates)
		}
		keys := make([]node.KeyRef, len(req.Keys))
		for i, k := range req.Keys {
			keys[i] = node.KeyRef{NS: k.NS, Key: k.Key}
		}
		sts, err := s.Node.PeerStates(ctx, keys)
		if err != nil {
			return nil, err
		}
		return fetchManyResp{States: sts}, nil
	})
	m.Handle(gossip.MethodCovers, func(ctx context.Context, _ string, decode func(any) error) (any, error) {
		var req coversReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		if len(req.Keys) > MaxStates || len(req.Spaces) > MaxStates {
			return nil, fmt.Errorf("%w: %d keys and %d spaces in one call (at most %d each)", ErrInvalid, len(req.Keys), len(req.Spaces), MaxStates)
		}
		spaces := make([]crdt.NodeID, len(req.Spaces))
		for i, sp := range req.Spaces {
			spaces[i] = crdt.NodeID(sp)
		}
		keys := make([]node.KeyRef, len(req.Keys))
		for i, k := range req.Keys {
			keys[i] = node.KeyRef{NS: k.NS, Key: k.Key}
		}
		upto, sts, err := s.Node.PeerCovers(ctx, spaces, keys)
		if err != nil {
			return nil, err
		}
		return coversResp{Upto: upto, States: sts}, nil
	})
	m.Handle(gossip.MethodPushStates, func(ctx context.Context, from string, decode func(any) error) (any, error) {
		var req pushReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		if len(req.States) > MaxStates {
			return nil, fmt.Errorf("%w: %d states in one push (at most %d)", ErrInvalid, len(req.States), MaxStates)
		}
		// The changes are the caller's own, as the transport names it.
		origin, ok := m.MemberID(from)
		states := make([]node.CounterState, len(req.States))
		for i, st := range req.States {
			states[i] = node.CounterState{NS: st.NS, Key: st.Key, State: st.State}
			if ok {
				states[i].Origin, states[i].Seq = origin, st.Seq
			}
		}
		return struct{}{}, s.Node.MergeStates(ctx, states)
	})
	m.Handle(gossip.MethodRights, func(ctx context.Context, from string, decode func(any) error) (any, error) {
		var req rightsReq
		if err := decode(&req); err != nil {
			return nil, err
		}
		// Rights go to the node that asks, as the transport names it.
		if to, ok := m.MemberID(from); !ok || req.To != uint64(to) {
			return nil, fmt.Errorf("%w: %s asked for rights on behalf of another node", ErrInvalid, from)
		}
		g, err := s.Node.GrantRights(ctx, node.RightsRequest{NS: req.NS, Key: req.Key, Down: req.Down, Want: req.Want, To: crdt.NodeID(req.To)})
		if err != nil {
			return nil, err
		}
		return rightsResp{Amount: g.Amount, Record: g.Record}, nil
	})
	m.Handle(gossip.MethodLease, func(ctx context.Context, from string, decode func(any) error) (any, error) {
		if s.Limiter == nil {
			return nil, errors.New("peerrpc: rate limiting is not configured on this node")
		}
		var req ratelimit.LeaseRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		// The holder is who the transport says called, whatever the body
		// claims: a member cannot return or sync another's lease.
		req.From = from
		return s.Limiter.HandleLease(ctx, req)
	})
	serveRetire(m, s.Node)
}
