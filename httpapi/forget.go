package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/countmesh/countmesh/node"
)

// ForgetResult answers POST /v1/cluster/forget.
type ForgetResult struct {
	// Node is the name forgotten, Index its entry in the retired list,
	// IDs its slot ids (one per incarnation; decimal strings, as the
	// export's node ids: they use all 64 bits, beyond what a JSON number
	// keeps in most readers), and Generation the retired generation once
	// this entry is folded (the ids of the list up to and including it).
	Node       string   `json:"node"`
	Index      int      `json:"index"`
	IDs        []string `json:"ids"`
	Generation uint64   `json:"generation"`
}

// forgetTimeout bounds one forget (rounds over every member), below
// countd's 30 s write timeout so that the answer goes out.
const forgetTimeout = 20 * time.Second

// forget answers POST /v1/cluster/forget {"node": NAME, "gone": bool}: the mesh forgets
// that node for good, and every node folds its slots into the retired slot
// once it has caught up (slot compaction). 409 when the node is alive, a
// member is not, or nothing of it is held; 503 without the mesh.
func (s *Server) forget(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Node string `json:"node"`
		Gone bool   `json:"gone"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Node == "" {
		s.writeError(w, r, fmt.Errorf("%w: the body must name the node to forget: {\"node\": \"NAME\"}", node.ErrInvalidArgument))
		return
	}
	if s.forgetNode == nil {
		s.writeError(w, r, fmt.Errorf("%w: this node is not in a mesh (--gossip-addr off): there is nothing to forget", node.ErrUnavailable))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), forgetTimeout)
	defer cancel()
	res, err := s.forgetNode(ctx, body.Node, body.Gone)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("node forgotten for good; its slots fold into the retired slot on every node that has caught up")
	writeJSON(w, http.StatusOK, res)
}
