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
	var patch node.NamespacePatch
	if err := decodeJSON(w, r, &patch); err != nil {
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
	all := s.node.Namespaces()
	items := make([]namespaceAnswer, len(all))
	for i, ns := range all {
		items[i] = namespaceAnswer{Name: ns.Name, NamespaceConfig: ns.Config}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}
