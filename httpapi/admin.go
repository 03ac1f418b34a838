package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// AdminHandler serves the operator-only routes: Go's profiler under
// /debug/pprof (docs/operations.md). countd mounts it on --admin-addr,
// never on the public listener: a profile reveals memory contents and
// costs CPU.
func AdminHandler() http.Handler {
	r := chi.NewRouter()
	r.Mount("/debug", middleware.Profiler())
	return r
}
