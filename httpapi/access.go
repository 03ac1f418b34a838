package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/httpapi/ui"
	"github.com/countmesh/countmesh/node"
)

// route is one public route and who may use it. Every public route is
// declared in Server.routes with its access, and the authenticate middleware
// looks the access up by the pattern chi matched; a route registered some
// other way needs an admin token (and TestEveryRouteDeclaresItsScope fails).
type route struct {
	method  string
	pattern string // the full pattern, as chi reports it
	access  access
	handler http.HandlerFunc
}

// access is what a route needs when tokens are configured.
type access struct {
	// open routes need no token (health checks of load balancers).
	open bool
	// scope is the scope needed otherwise; a pattern with {ns} needs its
	// namespace covered too.
	scope auth.Scope
}

var (
	open      = access{open: true}
	needRead  = access{scope: auth.ScopeRead}
	needWrite = access{scope: auth.ScopeWrite}
	needAdmin = access{scope: auth.ScopeAdmin}
)

// routes returns the public routes (docs/api.md) with their access.
func (s *Server) routes(cfg Config, dashboard http.HandlerFunc) []route {
	rs := []route{
		{"GET", "/healthz", open, s.healthz},
		{"GET", "/readyz", open, s.readyz},
		// The dashboard's page and assets hold nothing secret: the page
		// asks for a token and sends it on its own API calls.
		{"GET", "/ui", open, redirectToUI},
		{"GET", "/ui/*", open, dashboard},
		{"POST", "/v1/counters/{ns}/{key}/incr", needWrite, s.incr(1)},
		{"POST", "/v1/counters/{ns}/{key}/decr", needWrite, s.incr(-1)},
		{"GET", "/v1/counters/{ns}/{key}", needRead, s.getCounter},
		{"GET", "/v1/counters/{ns}/{key}/series", needRead, s.getSeries},
		{"GET", "/v1/counters/{ns}/{key}/watch", needRead, s.watchCounter},
		{"PUT", "/v1/counters/{ns}/{key}", needWrite, s.resetCounter},
		{"DELETE", "/v1/counters/{ns}/{key}", needWrite, s.deleteCounter},
		{"GET", "/v1/counters/{ns}", needRead, s.listCounters},
		// Each op's namespace is checked by the handler (batchAllowed).
		{"POST", "/v1/batch", needWrite, s.batch},
		// Each key's namespace is checked by the handler (eachAllowed).
		{"POST", "/v1/batch/get", needRead, s.batchGet},
		// Lists only the namespaces the token covers.
		{"GET", "/v1/namespaces", needRead, s.listNamespaces},
		{"PUT", "/v1/namespaces/{ns}", needAdmin, s.putNamespace},
		{"GET", "/v1/namespaces/{ns}", needRead, s.getNamespace},
		{"GET", "/v1/namespaces/{ns}/top", needRead, s.getTop},
		{"GET", "/v1/namespaces/{ns}/aggregate", needRead, s.getAggregate},
		{"GET", "/v1/namespaces/{ns}/watch", needRead, s.watchNamespace},
		{"GET", "/v1/cluster", needRead, s.getCluster},
		{"POST", "/v1/cluster/forget", needAdmin, s.forget},
		{"POST", "/v1/ratelimit/{ns}/{key}", needWrite, s.rateLimit(cfg.RateLimit)},
		// Backup and restore; a token limited to some namespaces exports
		// and imports those only (export.go).
		{"GET", "/v1/export", needAdmin, s.exportAll},
		{"POST", "/v1/import", needAdmin, s.importAll},
		// The OpenAPI description of these routes (openapi.go).
		{"GET", "/v1/openapi.json", needRead, s.getOpenAPI},
	}
	if cfg.Gatherer != nil {
		rs = append(rs, route{"GET", "/metrics", needRead, promHandler(cfg.Gatherer)})
	}
	return rs
}

// newDashboard returns the handler of /ui/* (package ui): it asks for a
// token when the server has tokens, and answers an unknown asset with the
// API's 404.
func (s *Server) newDashboard() (http.HandlerFunc, error) {
	h, err := ui.Handler(ui.Config{TokenRequired: s.tokens != nil, NotFound: http.HandlerFunc(s.notFound)})
	if err != nil {
		return nil, fmt.Errorf("httpapi: dashboard: %w", err)
	}
	return h.ServeHTTP, nil
}

// redirectToUI sends /ui to the dashboard's page, /ui/.
func redirectToUI(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
}

// accessKey is the key of Server.access.
func accessKey(method, pattern string) string { return method + " " + pattern }

// grantKey is the context key of the request's *auth.Grant.
type grantKey struct{}

// grantOf returns the grant of the request's token; nil when the server has
// no tokens (everything is allowed).
func grantOf(r *http.Request) *auth.Grant {
	g, _ := r.Context().Value(grantKey{}).(*auth.Grant)
	return g
}

// Messages of the 401 answers; they never hold the token.
const sendToken = "send Authorization: Bearer <token>; tokens are in the file given to --api-tokens-file"

// bearerToken returns the token of the Authorization header, or an error
// wrapping auth.ErrUnauthenticated saying what is wrong with the header.
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", fmt.Errorf("%w: this node requires an API token: %s", auth.ErrUnauthenticated, sendToken)
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", fmt.Errorf("%w: the Authorization header is not a bearer token: %s", auth.ErrUnauthenticated, sendToken)
	}
	return token, nil
}

// authenticate enforces the tokens (a nil store: no authentication). It
// finds the route the request will take and checks the token against the
// route's declared access: the scope, and the {ns} of the path. A matched
// route that declares nothing needs an admin token; a request that matches
// no route needs a valid token (and then gets its 404 or 405).
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.tokens == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx := chi.NewRouteContext()
		path := r.URL.RawPath // what chi routes on, see pathParam
		if path == "" {
			path = r.URL.Path
		}
		pattern := s.router.Find(rctx, r.Method, path)
		acc, declared := s.access[accessKey(r.Method, pattern)]
		if declared && acc.open {
			next.ServeHTTP(w, r)
			return
		}
		grant, err := s.authorize(r, pattern, acc, declared, rctx.URLParam("ns"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), grantKey{}, grant)))
	})
}

// authorize checks the request's bearer token against the access acc that
// the route pattern declares (declared false: the pattern declares none and
// needs an admin token; pattern "": no route matched, any valid token will
// do). rawNS is the route's {ns} parameter as routed (escaped when the URL
// holds escapes). It returns the token's grant, or the error to answer.
// Both the middleware (authenticate) and the fast path (fastpath.go) call
// it, so that they refuse alike.
func (s *Server) authorize(r *http.Request, pattern string, acc access, declared bool, rawNS string) (*auth.Grant, error) {
	token, err := bearerToken(r)
	if err != nil {
		return nil, err
	}
	grant, err := s.tokens.Current().Authenticate(token)
	if err != nil {
		return nil, fmt.Errorf("%w: the bearer token is not one of this node's API tokens; %s", auth.ErrUnauthenticated, sendToken)
	}
	if pattern != "" {
		need := auth.ScopeAdmin // undeclared: fail closed
		if declared {
			need = acc.scope
		}
		ns := ""
		if strings.Contains(pattern, "{ns}") {
			if ns, err = unescapeParam(r, "ns", rawNS); err != nil {
				return nil, err
			}
			if err := node.ValidateNamespace(ns); err != nil {
				return nil, err
			}
		}
		if err := grant.Allow(need, ns); err != nil {
			return nil, err
		}
	}
	return grant, nil
}

// checkQuery refuses a malformed query string (a bad percent escape): the
// handlers read the query with URL.Query, which silently drops such pairs,
// so ?prefix=%G1 would otherwise list every counter.
func (s *Server) checkQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
				s.writeError(w, r, badRequest(fmt.Sprintf("malformed query string (%v); escape %% as %%25 and separate parameters with &", err)))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
