package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/gossip"
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
	// RateLimit decides POST /v1/ratelimit/{ns}/{key} and answers the other
	// nodes' lease calls; nil answers 503 there.
	RateLimit *ratelimit.Limiter
	// Logger; nil logs nothing.
	Logger *zap.Logger
}

// Cluster is the mesh as the API shows it (a *gossip.Mesh).
type Cluster interface {
	Status() gossip.Status
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
}

// CloseStreams ends every open watch stream with a final event, so that a
// graceful shutdown does not wait for them (register it with
// http.Server.RegisterOnShutdown). It is idempotent.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

// New returns the API handler over cfg.Node.
func New(cfg Config) (*Server, error) {
	if cfg.Node == nil {
		return nil, errors.New("httpapi: Config.Node is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Server{node: cfg.Node, cluster: cfg.Cluster, log: cfg.Logger, closing: make(chan struct{})}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "countmesh_http_request_duration_seconds",
		Help:    "HTTP request latency by route and status code.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 17), // 50µs .. 3.3s
	}, []string{"route", "method", "code"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.latency); err != nil {
			return nil, fmt.Errorf("httpapi: register metrics: %w", err)
		}
	}

	r := chi.NewRouter()
	r.Use(s.instrument)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound,
			fmt.Sprintf("no route %s %s; see spec/API.md for the routes", r.Method, r.URL.Path)})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed,
			fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)})
	})
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	if cfg.Gatherer != nil {
		r.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	r.Route("/v1", func(r chi.Router) {
		r.Post("/counters/{ns}/{key}/incr", s.incr(1))
		r.Post("/counters/{ns}/{key}/decr", s.incr(-1))
		r.Get("/counters/{ns}/{key}", s.getCounter)
		r.Get("/counters/{ns}/{key}/series", s.getSeries)
		r.Get("/counters/{ns}/{key}/watch", s.watchCounter)
		r.Put("/counters/{ns}/{key}", s.resetCounter)
		r.Delete("/counters/{ns}/{key}", s.deleteCounter)
		r.Get("/counters/{ns}", s.listCounters)
		r.Post("/batch", s.batch)
		r.Get("/namespaces", s.listNamespaces)
		r.Put("/namespaces/{ns}", s.putNamespace)
		r.Get("/namespaces/{ns}", s.getNamespace)
		r.Get("/namespaces/{ns}/top", s.getTop)
		r.Get("/namespaces/{ns}/aggregate", s.getAggregate)
		r.Get("/namespaces/{ns}/watch", s.watchNamespace)
		r.Get("/cluster", s.getCluster)
		r.Post("/ratelimit/{ns}/{key}", s.rateLimit(cfg.RateLimit))
	})
	s.router = r
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, nil
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return "", badRequest(fmt.Sprintf("%s: bad URL escape in %q", name, v))
	}
	return u, nil
}

// nsKey returns the {ns} and {key} parameters, validated.
func nsKey(r *http.Request) (string, string, error) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		return "", "", err
	}
	if err := node.ValidateNamespace(ns); err != nil {
		return "", "", err
	}
	key, err := pathParam(r, "key")
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
			st.Members = []gossip.Member{}
		}
		if st.Replication == nil {
			st.Replication = []gossip.PeerLag{}
		}
		writeJSON(w, http.StatusOK, st)
		return
	}
	self := gossip.NodeInfo{Name: s.node.Name(), Region: s.node.Region(), HTTPAddr: r.Host}
	writeJSON(w, http.StatusOK, gossip.Status{
		Self:        self,
		Members:     []gossip.Member{{Name: self.Name, Region: self.Region, State: gossip.StateAlive, HTTPAddr: self.HTTPAddr}},
		Replication: []gossip.PeerLag{},
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
