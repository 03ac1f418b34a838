package httpapi

import (
	"net/http"

	"github.com/countmesh/countmesh/node"
)

type namespaceAnswer struct {
	Name string `json:"name"`
	node.NamespaceConfig
}

func (s *Server) putNamespace(w http.ResponseWriter, r *http.Request) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	patch, err := decodeBody(w, r, decodeNamespacePatch)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	got, err := s.node.PutNamespace(r.Context(), ns, patch)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, namespaceAnswer{Name: got.Name, NamespaceConfig: got.Config})
}

// decodeNamespacePatch decodes the body of PUT /v1/namespaces/{ns}
// (Content-Type ct); its errors are 400 or 415. The node validates the
// values.
func decodeNamespacePatch(ct string, body []byte) (node.NamespacePatch, error) {
	var patch node.NamespacePatch
	if err := decodeJSONBody(ct, body, &patch); err != nil {
		return node.NamespacePatch{}, err
	}
	return patch, nil
}

func (s *Server) getNamespace(w http.ResponseWriter, r *http.Request) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	got, err := s.node.GetNamespace(ns)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, namespaceAnswer{Name: got.Name, NamespaceConfig: got.Config})
}

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) {
	grant := grantOf(r)
	all := s.node.Namespaces()
	items := make([]namespaceAnswer, 0, len(all))
	for _, ns := range all {
		if grant != nil && !grant.Covers(ns.Name) {
			continue // a token sees only its namespaces
		}
		items = append(items, namespaceAnswer{Name: ns.Name, NamespaceConfig: ns.Config})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}
