package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/node"
)

// The peer RPC of the quorum and all consistency levels, under
// /internal/v1 (not part of the public API of spec/API.md; peers only):
//
//	GET  /internal/v1/state/{ns}/{key}  -> msgpack wireState: the counter's
//	     full CRDT state, durable on the answering node
//	POST /internal/v1/state             <- msgpack wireStates: merged, and
//	     answered 204 once durable
//
// Errors are the JSON error bodies of the public API.

// wireState is one counter's state on the peer RPC.
type wireState struct {
	NS    string       `msgpack:"ns"`
	Key   string       `msgpack:"key"`
	State crdt.Counter `msgpack:"state"`
}

// wireStates is the body of POST /internal/v1/state.
type wireStates struct {
	States []wireState `msgpack:"states"`
}

// internalRoutes registers the peer RPC (mounted at /internal/v1).
func (s *Server) internalRoutes(r chi.Router) {
	r.Get("/state/{ns}/{key}", s.getState)
	r.Post("/state", s.postState)
	r.Post("/rights", s.postRights)
}

// getState answers GET /internal/v1/state/{ns}/{key}. The key may be an
// internal one (control-byte prefix), so it is checked by the node, not by
// nsKey.
func (s *Server) getState(w http.ResponseWriter, r *http.Request) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := pathParam(r, "key")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.node.PeerState(r.Context(), ns, key)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := msgpack.Marshal(wireState{NS: ns, Key: key, State: c})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encode state: %w", err))
		return
	}
	w.Header().Set("Content-Type", mediaMsgpack)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// postState answers POST /internal/v1/state.
func (s *Server) postState(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var in wireStates
	if err := msgpack.Unmarshal(body, &in); err != nil {
		s.writeError(w, r, badRequest(fmt.Sprintf("the body must be msgpack {states: [{ns, key, state}]}: %v", err)))
		return
	}
	states := make([]node.CounterState, len(in.States))
	for i, st := range in.States {
		states[i] = node.CounterState{NS: st.NS, Key: st.Key, State: st.State}
	}
	if err := s.node.MergeStates(r.Context(), states); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// PeerClient is the peer RPC's client: a node.PeerTransport over HTTP. It
// keeps connections to the peers open between calls. It is safe for
// concurrent use.
type PeerClient struct {
	hc *http.Client
}

var _ node.PeerTransport = (*PeerClient)(nil)

// NewPeerClient returns a client with its own connection pool. Every call
// is bounded by its context (the node's quorum timeout).
func NewPeerClient() *PeerClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &PeerClient{hc: &http.Client{Transport: tr}}
}

// Close closes the idle connections.
func (c *PeerClient) Close() {
	c.hc.CloseIdleConnections()
}

// ErrPeer wraps every failure of a peer call.
var ErrPeer = errors.New("httpapi: peer call failed")

// FetchState implements node.PeerTransport.
func (c *PeerClient) FetchState(ctx context.Context, p node.Peer, ns, key string) (crdt.Counter, error) {
	u := "http://" + p.HTTPAddr + "/internal/v1/state/" + url.PathEscape(ns) + "/" + url.PathEscape(key)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return crdt.Counter{}, fmt.Errorf("%w: %v", ErrPeer, err)
	}
	req.Header.Set("Accept", mediaMsgpack)
	body, err := c.do(req, http.StatusOK)
	if err != nil {
		return crdt.Counter{}, err
	}
	var out wireState
	if err := msgpack.Unmarshal(body, &out); err != nil {
		return crdt.Counter{}, fmt.Errorf("%w: decode the state from %s: %v", ErrPeer, p.HTTPAddr, err)
	}
	if out.NS != ns || out.Key != key {
		return crdt.Counter{}, fmt.Errorf("%w: %s answered for %s/%q, not %s/%q", ErrPeer, p.HTTPAddr, out.NS, out.Key, ns, key)
	}
	return out.State, nil
}

// PushStates implements node.PeerTransport.
func (c *PeerClient) PushStates(ctx context.Context, p node.Peer, states []node.CounterState) error {
	in := wireStates{States: make([]wireState, len(states))}
	for i, st := range states {
		in.States[i] = wireState{NS: st.NS, Key: st.Key, State: st.State}
	}
	body, err := msgpack.Marshal(in)
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrPeer, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.HTTPAddr+"/internal/v1/state", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPeer, err)
	}
	req.Header.Set("Content-Type", mediaMsgpack)
	_, err = c.do(req, http.StatusNoContent)
	return err
}

// do sends req and returns the body of an answer with status want.
func (c *PeerClient) do(req *http.Request, want int) ([]byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPeer, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: read the answer of %s: %v", ErrPeer, req.URL.Host, err)
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%w: %s %s answered %d: %s", ErrPeer, req.Method, req.URL.Path, resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}

// ClusterPeers is a node.Peers over a Cluster (a *gossip.Mesh) that may be
// attached after the node is open (the mesh needs the node first). Before
// Set it lists no peer, and the node is its own quorum.
type ClusterPeers struct {
	c atomic.Pointer[Cluster]
}

var _ node.Peers = (*ClusterPeers)(nil)

// Set attaches the cluster.
func (p *ClusterPeers) Set(c Cluster) { p.c.Store(&c) }

// Peers implements node.Peers: every member but those that left the mesh
// gracefully (the node skips itself by name).
func (p *ClusterPeers) Peers() []node.Peer {
	c := p.c.Load()
	if c == nil {
		return nil
	}
	st := (*c).Status()
	out := make([]node.Peer, 0, len(st.Members))
	for _, m := range st.Members {
		if m.State == gossip.StateLeft {
			continue
		}
		out = append(out, node.Peer{Name: m.Name, Region: m.Region, HTTPAddr: m.HTTPAddr, Alive: m.State == gossip.StateAlive})
	}
	return out
}
