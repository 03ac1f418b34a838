package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 description of the public routes,
// maintained by hand beside the routes table (access.go) and served as it
// is. TestOpenAPIMatchesTheRouter fails when a route is routed but not
// described, described but not routed, or described with another scope, and
// validates the document.
//
//go:embed openapi.json
var openAPIDocument []byte

// getOpenAPI answers GET /v1/openapi.json.
func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDocument)
}
