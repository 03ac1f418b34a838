package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/node"
)

// discardWriter is a ResponseWriter that keeps one header map and drops the
// body, so that a benchmark counts the handler's allocations, not a
// recorder's.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(b)
	return len(b), nil
}

func (w *discardWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// rewindBody is a request body that can be read again.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchServer returns an API over a node on an in-memory file system whose
// namespaces default to durability (sync or async).
func benchServer(b *testing.B, durability string) *Server {
	b.Helper()
	return benchServerWith(b, durability, nil)
}

// benchServerWith is benchServer with a hook that changes the API's Config.
func benchServerWith(b *testing.B, durability string, mutateAPI func(*Config)) *Server {
	b.Helper()
	cfg := node.DefaultConfig()
	cfg.Name = "bench-node"
	cfg.Store.Dir = "data"
	cfg.Store.FS = vfs.NewMem()
	cfg.Logger = zap.NewNop()
	cfg.DefaultDurability = durability
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	n, err := node.Open(cfg)
	if err != nil {
		b.Fatalf("open node: %v", err)
	}
	b.Cleanup(func() { n.Close() })
	apiCfg := Config{Node: n, Registerer: reg, Gatherer: reg}
	if mutateAPI != nil {
		mutateAPI(&apiCfg)
	}
	s, err := New(apiCfg)
	if err != nil {
		b.Fatalf("new api: %v", err)
	}
	return s
}

// benchServe serves method path with body through s.ServeHTTP b.N times
// and fails on an answer other than 200.
func benchServe(b *testing.B, s *Server, method, path, contentType string, body []byte) {
	b.Helper()
	benchServeAs(b, s, method, path, contentType, "", body)
}

// benchServeAs is benchServe with an Authorization header (none when "").
func benchServeAs(b *testing.B, s *Server, method, path, contentType, authorization string, body []byte) {
	b.Helper()
	u, err := url.ParseRequestURI(path)
	if err != nil {
		b.Fatal(err)
	}
	rb := &rewindBody{}
	r := &http.Request{Method: method, URL: u, RequestURI: path, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Host: "bench", Body: rb, ContentLength: int64(len(body))}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rb.Reset(body)
		w.reset()
		s.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("%s %s: status %d", method, path, w.status)
		}
	}
}

// BenchmarkServeIncr is one POST .../incr {"by":1} through ServeHTTP (issue
// 11): the API's own cost per increment, the node's included.
func BenchmarkServeIncr(b *testing.B) {
	for _, d := range []string{node.DurabilityAsync, node.DurabilitySync} {
		b.Run(d, func(b *testing.B) {
			s := benchServer(b, d)
			benchServe(b, s, "POST", "/v1/counters/bench/k123/incr", "application/json", []byte(`{"by":1}`))
		})
	}
	b.Run("empty-body", func(b *testing.B) {
		s := benchServer(b, node.DurabilityAsync)
		benchServe(b, s, "POST", "/v1/counters/bench/k123/incr", "", nil)
	})
}

// BenchmarkServeGet is one GET of a counter through ServeHTTP, without
// and with API tokens.
func BenchmarkServeGet(b *testing.B) {
	for _, tokens := range []bool{false, true} {
		b.Run(fmt.Sprintf("tokens=%v", tokens), func(b *testing.B) {
			s := benchServerWith(b, node.DurabilityAsync, func(c *Config) {
				if tokens {
					path := filepath.Join(b.TempDir(), "tokens")
					if err := os.WriteFile(path, []byte(testTokensFile), 0o600); err != nil {
						b.Fatal(err)
					}
					st, err := auth.LoadFile(path)
					if err != nil {
						b.Fatal(err)
					}
					c.Tokens = st
				}
			})
			w := &discardWriter{h: http.Header{}}
			r, _ := http.NewRequest("POST", "/v1/counters/bench/k123/incr", http.NoBody)
			r.Header.Set("Authorization", "Bearer "+tokAdmin)
			s.ServeHTTP(w, r)
			if w.status != http.StatusOK {
				b.Fatalf("incr: status %d", w.status)
			}
			benchServeAs(b, s, "GET", "/v1/counters/bench/k123", "", "Bearer "+tokRead, nil)
		})
	}
}
