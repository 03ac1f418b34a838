package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node"
)

// The rights transfer of bounded counters (node/bounds.go), on the peer RPC:
//
//	POST /internal/v1/rights  <- msgpack wireRightsRequest
//	                          -> msgpack wireRightsGrant, once durable

type wireRightsRequest struct {
	NS   string `msgpack:"ns"`
	Key  string `msgpack:"key"`
	Down bool   `msgpack:"down"`
	Want int64  `msgpack:"want"`
	To   uint64 `msgpack:"to"`
}

type wireRightsGrant struct {
	Amount int64        `msgpack:"amount"`
	Record crdt.Counter `msgpack:"record"`
}

// postRights answers a peer's request for rights.
func (s *Server) postRights(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		s.writeError(w, r, badRequest("cannot read the body"))
		return
	}
	var req wireRightsRequest
	if err := msgpack.Unmarshal(body, &req); err != nil {
		s.writeError(w, r, badRequest(fmt.Sprintf("the body is not a msgpack rights request: %v", err)))
		return
	}
	g, err := s.node.GrantRights(r.Context(), node.RightsRequest{NS: req.NS, Key: req.Key, Down: req.Down, Want: req.Want, To: crdt.NodeID(req.To)})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := msgpack.Marshal(wireRightsGrant{Amount: g.Amount, Record: g.Record})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", mediaMsgpack)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

var _ node.RightsTransport = (*PeerClient)(nil)

// TransferRights implements node.RightsTransport.
func (c *PeerClient) TransferRights(ctx context.Context, p node.Peer, req node.RightsRequest) (node.RightsGrant, error) {
	body, err := msgpack.Marshal(wireRightsRequest{NS: req.NS, Key: req.Key, Down: req.Down, Want: req.Want, To: uint64(req.To)})
	if err != nil {
		return node.RightsGrant{}, fmt.Errorf("%w: encode: %v", ErrPeer, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.HTTPAddr+"/internal/v1/rights", bytes.NewReader(body))
	if err != nil {
		return node.RightsGrant{}, fmt.Errorf("%w: %v", ErrPeer, err)
	}
	hr.Header.Set("Content-Type", mediaMsgpack)
	raw, err := c.do(hr, http.StatusOK)
	if err != nil {
		return node.RightsGrant{}, err
	}
	var g wireRightsGrant
	if err := msgpack.Unmarshal(raw, &g); err != nil {
		return node.RightsGrant{}, fmt.Errorf("%w: decode the grant of %s: %v", ErrPeer, p.HTTPAddr, err)
	}
	return node.RightsGrant{Amount: g.Amount, Record: g.Record}, nil
}
