package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/meshstatus"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

// MaxBodyBytes bounds a request body (413 past it).
const MaxBodyBytes = 8 << 20

// Config configures a Server.
type Config struct {
	// Node serves the requests.
	Node *node.Node
	// Registerer receives the HTTP metrics and Gatherer serves /metrics; nil
	// means no metrics (and /metrics answers 404).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Cluster answers GET /v1/cluster; nil for a node without the mesh.
	Cluster Cluster
	// Forget forgets a node for good (POST /v1/cluster/forget: slot
	// compaction, docs/operations.md); nil answers 503 (no mesh).
	Forget func(ctx context.Context, name string, gone bool) (ForgetResult, error)
	// RateLimit decides POST /v1/ratelimit/{ns}/{key} and answers the other
	// nodes' lease calls; nil answers 503 there.
	RateLimit *ratelimit.Limiter
	// Logger; nil logs nothing.
	Logger *zap.Logger
	// Tokens are the API tokens (--api-tokens-file): with them every route
	// but /healthz, /readyz and /ui/ needs "Authorization: Bearer <token>" whose
	// scope and namespaces cover the request (docs/security-tokens.md).
	// nil: no authentication.
	Tokens *auth.Store
	// MaxWatchStreams bounds the watch streams (Server-Sent Events) open
	// at once on this node; past it a watch is refused with 429. 0 means
	// DefaultMaxWatchStreams.
	MaxWatchStreams int
}

// DefaultMaxWatchStreams is the default Config.MaxWatchStreams.
const DefaultMaxWatchStreams = 1000

// DefaultConfig returns a Config with the defaults; Node must still be set.
func DefaultConfig() Config {
	return Config{MaxWatchStreams: DefaultMaxWatchStreams}
}

// validate checks cfg and fills in the defaults of zero fields.
func (cfg *Config) validate() error {
	if cfg.Node == nil {
		return errors.New("httpapi: Config.Node is required")
	}
	if cfg.MaxWatchStreams < 0 {
		return fmt.Errorf("httpapi: Config.MaxWatchStreams must be positive (0: the default %d), got %d", DefaultMaxWatchStreams, cfg.MaxWatchStreams)
	}
	if cfg.MaxWatchStreams == 0 {
		cfg.MaxWatchStreams = DefaultMaxWatchStreams
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return nil
}

// Cluster is the mesh as the API shows it (a *gossip.Mesh).
type Cluster interface {
	Status() meshstatus.Status
}

// Server is the HTTP API as an http.Handler.
type Server struct {
	node    *node.Node
	cluster Cluster
	log     *zap.Logger
	router  chi.Router
	latency *prometheus.HistogramVec
	// closing ends the watch streams when the server shuts down (see
	// CloseStreams).
	closing   chan struct{}
	closeOnce sync.Once
	// tokens are the API tokens; nil: no authentication.
	tokens *auth.Store
	// access is the declared access of each public route by method and
	// pattern (see routes); read-only after New.
	access map[string]access
	// watchers counts the open watch streams, at most maxWatchers.
	watchers    atomic.Int64
	maxWatchers int64
	// fast are the routes of the fast path (fastpath.go).
	fast fastRoutes
	// limiter decides POST /v1/ratelimit (nil: not configured).
	limiter *ratelimit.Limiter
	// forgetNode runs POST /v1/cluster/forget (nil: no mesh).
	forgetNode func(ctx context.Context, name string, gone bool) (ForgetResult, error)
	// noFast turns off the fast path and the fast decoding and encoding of
	// the hot handlers, so that the tests can compare them with the general
	// code. Only tests set it, before serving.
	noFast bool
}

// CloseStreams ends every open watch stream with a final event, so that a
// graceful shutdown does not wait for them (register it with
// http.Server.RegisterOnShutdown). It is idempotent.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

// New returns the API handler over cfg.Node.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{node: cfg.Node, cluster: cfg.Cluster, forgetNode: cfg.Forget, log: cfg.Logger, closing: make(chan struct{}),
		tokens: cfg.Tokens, maxWatchers: int64(cfg.MaxWatchStreams)}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "countmesh_http_request_duration_seconds",
		Help:    "HTTP request latency by route and status code.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 17), // 50µs .. 3.3s
	}, []string{"route", "method", "code"})
	if cfg.Registerer != nil {
		cs := []prometheus.Collector{s.latency, newMeshCollector(s)}
		if cfg.RateLimit != nil {
			cs = append(cs, newRateLimitCollector(cfg.RateLimit))
		}
		for _, c := range cs {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("httpapi: register metrics: %w", err)
			}
		}
	}

	r := chi.NewRouter()
	// The fast path (fastpath.go) does for its routes what these three do,
	// without them: a middleware added here must be added there too.
	r.Use(s.instrument, s.authenticate, s.checkQuery)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed,
			fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)})
	})
	// The public routes, each with the access it declares (access.go).
	// The profiler is not among them: it is on --admin-addr (AdminHandler).
	dashboard, err := s.newDashboard()
	if err != nil {
		return nil, err
	}
	routes := s.routes(cfg, dashboard)
	s.access = make(map[string]access, len(routes))
	for _, rt := range routes {
		s.access[accessKey(rt.method, rt.pattern)] = rt.access
		if !strings.HasPrefix(rt.pattern, "/v1/") {
			r.Method(rt.method, rt.pattern, rt.handler)
		}
	}
	r.Route("/v1", func(r chi.Router) {
		for _, rt := range routes {
			if sub, ok := strings.CutPrefix(rt.pattern, "/v1"); ok && strings.HasPrefix(sub, "/") {
				r.Method(rt.method, sub, rt.handler)
			}
		}
	})
	s.router = r
	s.fast = newFastRoutes(s.access)
	s.limiter = cfg.RateLimit
	return s, nil
}

// notFound answers a request no route serves.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound,
		fmt.Sprintf("no route %s %s; see docs/api.md for the routes", r.Method, r.URL.Path)})
}

// ServeHTTP implements http.Handler. The hottest routes take the fast path
// (fastpath.go); chi routes the others.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.noFast && s.serveFast(w, r) {
		return
	}
	s.router.ServeHTTP(w, r)
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming answers (Server-Sent Events) through the recorder.
func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument records request latency by route pattern.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.latency.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Observe(time.Since(start).Seconds())
	})
}

// pathParam returns the unescaped URL parameter name. chi routes on the raw
// path when the URL holds escapes (so that a key may contain "/" as %2F), and
// then hands back the escaped segment.
func pathParam(r *http.Request, name string) (string, error) {
	return unescapeParam(r, name, chi.URLParam(r, name))
}

// unescapeParam unescapes the value v of the URL parameter name of r.
//
// A bad escape in the path (/v1/counters/pages/a%G1) does not reach it
// over net/http: the server's request-line parser refuses the URL and
// answers a plain-text "400 Bad Request" before any handler runs (HTTP/2
// parses :path the same way). The error below is reached only by a request
// that net/http did not parse (built by the caller of ServeHTTP), and it is
// the JSON error.
func unescapeParam(r *http.Request, name, v string) (string, error) {
	if r.URL.RawPath == "" {
		return v, nil
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return "", badRequest(fmt.Sprintf("%s: bad URL escape in %q; escape %% as %%25", name, v))
	}
	return u, nil
}

// promHandler serves /metrics from g.
func promHandler(g prometheus.Gatherer) http.HandlerFunc {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{}).ServeHTTP
}

// nsKey returns the {ns} and {key} parameters, validated.
func nsKey(r *http.Request) (string, string, error) {
	return nsKeyOf(r, chi.URLParam(r, "ns"), chi.URLParam(r, "key"))
}

// nsKeyOf returns the namespace and key of the {ns} and {key} parameters
// rawNS and rawKey (as routed: escaped when the URL holds escapes),
// unescaped and validated.
func nsKeyOf(r *http.Request, rawNS, rawKey string) (string, string, error) {
	ns, err := unescapeParam(r, "ns", rawNS)
	if err != nil {
		return "", "", err
	}
	if err := node.ValidateNamespace(ns); err != nil {
		return "", "", err
	}
	key, err := unescapeParam(r, "key", rawKey)
	if err != nil {
		return "", "", err
	}
	if err := node.ValidateKey(key); err != nil {
		return "", "", err
	}
	return ns, key, nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// getCluster answers GET /v1/cluster. A node without the mesh lists itself
// as the only member.
func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	if s.cluster != nil {
		st := s.cluster.Status()
		if st.Members == nil {
			st.Members = []meshstatus.Member{}
		}
		if st.Replication == nil {
			st.Replication = []meshstatus.PeerLag{}
		}
		writeJSON(w, http.StatusOK, st)
		return
	}
	self := meshstatus.NodeInfo{Name: s.node.Name(), Region: s.node.Region(), HTTPAddr: r.Host}
	writeJSON(w, http.StatusOK, meshstatus.Status{
		Self:        self,
		Members:     []meshstatus.Member{{Name: self.Name, Region: self.Region, State: meshstatus.StateAlive, HTTPAddr: self.HTTPAddr}},
		Replication: []meshstatus.PeerLag{},
	})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.node.Ready() {
		// Not logged: load balancers poll this while the node starts.
		var body errorBody
		body.Error.Code = codeUnavailable
		body.Error.Message = "not ready: recovering, catching up with peers, shutting down, or storage failed (see the log)"
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
