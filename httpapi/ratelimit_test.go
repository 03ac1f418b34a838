package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/client"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

// rlServer is one node serving the API with a rate limiter.
type rlServer struct {
	url     string
	limiter *ratelimit.Limiter
}

// localLeases is an in-process ratelimit.Transport: addresses are node
// names.
type localLeases struct {
	mu       sync.Mutex // guards limiters
	limiters map[string]*ratelimit.Limiter
}

func (ll *localLeases) add(name string, l *ratelimit.Limiter) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	ll.limiters[name] = l
}

func (ll *localLeases) Lease(ctx context.Context, addr string, req ratelimit.LeaseRequest) (ratelimit.LeaseResponse, error) {
	ll.mu.Lock()
	l := ll.limiters[addr]
	ll.mu.Unlock()
	if l == nil {
		return ratelimit.LeaseResponse{}, errors.New("no such node")
	}
	return l.HandleLease(ctx, req)
}

// startRateLimitNodes starts n nodes on 127.0.0.1 whose limiters see each
// other (n = 1: a single node); with noLimiter the API has none.
func startRateLimitNodes(t *testing.T, n int, noLimiter bool) []rlServer {
	t.Helper()
	handlers := make([]atomic.Pointer[http.Handler], n)
	srvs := make([]*httptest.Server, n)
	all := make([]ratelimit.Member, n)
	for i := range n {
		srvs[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			(*handlers[i].Load()).ServeHTTP(w, r)
		}))
		t.Cleanup(srvs[i].Close)
		all[i] = ratelimit.Member{Name: "node-" + strconv.Itoa(i), Addr: "node-" + strconv.Itoa(i)}
	}
	// Leases go straight to the owner's limiter (the peer transport is
	// tested in packages gossip and peerrpc); the public API is what runs
	// over HTTP here.
	leases := &localLeases{limiters: make(map[string]*ratelimit.Limiter)}
	out := make([]rlServer, n)
	for i := range n {
		cfg := node.DefaultConfig()
		cfg.Name = all[i].Name
		cfg.Store.Dir = "data"
		cfg.Store.FS = vfs.NewMem()
		cfg.Logger = zaptest.NewLogger(t).Named(cfg.Name)
		nd, err := node.Open(cfg)
		if err != nil {
			t.Fatalf("open node: %v", err)
		}
		t.Cleanup(func() { nd.Close() })
		var l *ratelimit.Limiter
		if !noLimiter {
			rcfg := ratelimit.DefaultConfig()
			rcfg.Membership = ratelimit.Static{SelfName: all[i].Name, All: all}
			rcfg.Transport = leases
			rcfg.Logger = cfg.Logger
			if l, err = ratelimit.New(rcfg); err != nil {
				t.Fatal(err)
			}
			leases.add(all[i].Name, l)
			t.Cleanup(func() { l.Close() })
		}
		api, err := New(Config{Node: nd, RateLimit: l, Logger: cfg.Logger})
		if err != nil {
			t.Fatalf("new api: %v", err)
		}
		var h http.Handler = api
		handlers[i].Store(&h)
		out[i] = rlServer{url: srvs[i].URL, limiter: l}
	}
	return out
}

type rlAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func postRateLimit(t *testing.T, url, path, body string) rlAnswer {
	t.Helper()
	resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("POST %s: answer is not JSON: %q", path, raw)
	}
	return rlAnswer{resp.StatusCode, resp.Header, m}
}

func TestRateLimitBadRequests(t *testing.T) {
	srv := startRateLimitNodes(t, 1, false)[0]
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantCode         string
	}{
		{"bad window", "/v1/ratelimit/api/u", `{"limit":10,"window":"soon"}`, 400, "invalid_argument"},
		{"zero window", "/v1/ratelimit/api/u", `{"limit":10,"window":"0"}`, 400, "invalid_argument"},
		{"negative window", "/v1/ratelimit/api/u", `{"limit":10,"window":"-1m"}`, 400, "invalid_argument"},
		{"window under 1ms", "/v1/ratelimit/api/u", `{"limit":10,"window":"10us"}`, 400, "invalid_argument"},
		{"no window", "/v1/ratelimit/api/u", `{"limit":10}`, 400, "invalid_argument"},
		{"no limit", "/v1/ratelimit/api/u", `{"window":"1m"}`, 400, "invalid_argument"},
		{"no body", "/v1/ratelimit/api/u", ``, 400, "invalid_argument"},
		{"zero limit", "/v1/ratelimit/api/u", `{"limit":0,"window":"1m"}`, 400, "invalid_argument"},
		{"negative limit", "/v1/ratelimit/api/u", `{"limit":-5,"window":"1m"}`, 400, "invalid_argument"},
		{"fractional limit", "/v1/ratelimit/api/u", `{"limit":1.5,"window":"1m"}`, 400, "invalid_argument"},
		{"limit as a string", "/v1/ratelimit/api/u", `{"limit":"10","window":"1m"}`, 400, "invalid_argument"},
		{"limit over 2^53", "/v1/ratelimit/api/u", `{"limit":9007199254740992,"window":"1m"}`, 400, "invalid_argument"},
		{"negative cost", "/v1/ratelimit/api/u", `{"limit":10,"window":"1m","cost":-1}`, 400, "invalid_argument"},
		{"zero cost", "/v1/ratelimit/api/u", `{"limit":10,"window":"1m","cost":0}`, 400, "invalid_argument"},
		{"cost over limit", "/v1/ratelimit/api/u", `{"limit":10,"window":"1m","cost":11}`, 400, "invalid_argument"},
		{"unknown field", "/v1/ratelimit/api/u", `{"limit":10,"window":"1m","burst":5}`, 400, "invalid_argument"},
		{"malformed JSON", "/v1/ratelimit/api/u", `{"limit":10,`, 400, "invalid_argument"},
		{"trailing data", "/v1/ratelimit/api/u", `{"limit":10,"window":"1m"} {}`, 400, "invalid_argument"},
		{"bad namespace", "/v1/ratelimit/Bad%20NS/u", `{"limit":10,"window":"1m"}`, 400, "invalid_argument"},
		{"bad key", "/v1/ratelimit/api/a%01b", `{"limit":10,"window":"1m"}`, 400, "invalid_argument"},
		// Peer calls are not served on the public listener at all.
		{"the old lease route", "/internal/v1/ratelimit/lease", `{"from":"x","ns":"api","key":"u","window_ns":60000000000,"limit":10,"want":1}`, 404, "not_found"},
		{"the old state route", "/internal/v1/state", `{}`, 404, "not_found"},
		{"the old rights route", "/internal/v1/rights", `{}`, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := postRateLimit(t, srv.url, tt.path, tt.body)
			if a.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %v", a.status, tt.wantStatus, a.body)
			}
			e, _ := a.body["error"].(map[string]any)
			if e == nil || e["code"] != tt.wantCode || e["message"] == "" {
				t.Errorf("body %v, want error code %s with a message", a.body, tt.wantCode)
			}
			if strings.Contains(e["message"].(string), "ratelimit:") {
				t.Errorf("message %q leaks the package prefix", e["message"])
			}
		})
	}
	// Nothing was taken by the refused requests.
	a := postRateLimit(t, srv.url, "/v1/ratelimit/api/u", `{"limit":10,"window":"1m","cost":10}`)
	if a.status != 200 || a.body["allowed"] != true {
		t.Errorf("the whole limit after refused requests: %d %v", a.status, a.body)
	}
}

func TestRateLimitAnswers(t *testing.T) {
	srv := startRateLimitNodes(t, 1, false)[0]
	a := postRateLimit(t, srv.url, "/v1/ratelimit/api/user:1", `{"limit":5,"window":"1m","cost":3}`)
	if a.status != 200 || a.body["allowed"] != true || a.body["limit"] != 5.0 || a.body["remaining"] != 2.0 {
		t.Fatalf("first request: %d %v", a.status, a.body)
	}
	if ms := a.body["reset_ms"].(float64); ms <= 0 || ms > 60000 {
		t.Errorf("reset_ms %v, want within the 1m window", ms)
	}
	for h, want := range map[string]string{"RateLimit-Limit": "5", "RateLimit-Remaining": "2", "RateLimit-Policy": "5;w=60"} {
		if got := a.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if s, err := strconv.Atoi(a.header.Get("RateLimit-Reset")); err != nil || s < 1 || s > 60 {
		t.Errorf("RateLimit-Reset = %q, want 1..60 seconds", a.header.Get("RateLimit-Reset"))
	}
	if a.header.Get("Retry-After") != "" {
		t.Error("Retry-After on an allowed request")
	}

	// Over the limit: 200, allowed false, Retry-After; and nothing taken.
	a = postRateLimit(t, srv.url, "/v1/ratelimit/api/user:1", `{"limit":5,"window":"1m","cost":3}`)
	if a.status != 200 || a.body["allowed"] != false || a.body["remaining"] != 2.0 {
		t.Fatalf("request over the limit: %d %v", a.status, a.body)
	}
	if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 || s > 120 {
		t.Errorf("Retry-After = %q, want 1..120 seconds", a.header.Get("Retry-After"))
	}
	if ms, _ := a.body["retry_after_ms"].(float64); ms <= 0 {
		t.Errorf("retry_after_ms = %v, want > 0", a.body["retry_after_ms"])
	}
	if a.header.Get("RateLimit-Remaining") != "2" {
		t.Errorf("RateLimit-Remaining = %q after a refusal, want 2", a.header.Get("RateLimit-Remaining"))
	}
	a = postRateLimit(t, srv.url, "/v1/ratelimit/api/user:1", `{"limit":5,"window":"1m","cost":2}`)
	if a.body["allowed"] != true || a.body["remaining"] != 0.0 {
		t.Errorf("the 2 left after the refusal: %v", a.body)
	}

	// The client reads the refusal as an answer, with its Retry-After.
	c, err := client.New(client.Config{BaseURL: srv.url})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.RateLimit(context.Background(), "api", "user:1", 5, "1m", 0)
	if err != nil || r.Allowed || r.RetryAfter < time.Second {
		t.Errorf("client: %+v, %v; want refused with Retry-After", r, err)
	}
}

func TestRateLimitNotConfigured(t *testing.T) {
	srv := startRateLimitNodes(t, 1, true)[0]
	a := postRateLimit(t, srv.url, "/v1/ratelimit/api/u", `{"limit":10,"window":"1m"}`)
	if a.status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503: %v", a.status, a.body)
	}
}

// TestRateLimitMeshOverHTTP: three nodes on 127.0.0.1 leasing over the
// internal route, clients hammering all three: no more than the limit in
// the window, and (every node hammered until refused) no budget stranded.
func TestRateLimitMeshOverHTTP(t *testing.T) {
	const limit = 1000
	const window = 365 * 24 * time.Hour // one window for the whole test
	nodes := startRateLimitNodes(t, 3, false)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var admitted atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for _, n := range nodes {
		c, err := client.New(client.Config{BaseURL: n.url, HTTPClient: client.NewHTTPClient(8)})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for streak := 0; streak < 20 && ctx.Err() == nil; {
					t0 := time.Now()
					r, err := c.RateLimit(ctx, "api", "hot", limit, "8760h", 1)
					mine = append(mine, time.Since(t0))
					if err != nil {
						if ctx.Err() == nil {
							t.Errorf("%s: %v", n.url, err)
						}
						return
					}
					if r.Allowed {
						admitted.Add(1)
						streak = 0
					} else {
						streak++
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("the clients did not finish within 20 s")
	}
	if start.UnixNano()/int64(window) != time.Now().UnixNano()/int64(window) {
		t.Skipf("the test crossed a window boundary after %v; the bound is per window", time.Since(start))
	}
	got := admitted.Load()
	var calls int64
	for _, n := range nodes {
		calls += n.limiter.Stats().LeaseCalls
	}
	slices.Sort(lat)
	t.Logf("admitted %d of %d requests, %d lease calls; HTTP decision latency p50 %v p99 %v",
		got, len(lat), calls, lat[len(lat)/2], lat[len(lat)*99/100])
	if got > limit+1 {
		t.Errorf("admitted %d, limit %d", got, limit)
	}
	if got < limit-10 {
		t.Errorf("admitted %d, limit %d: budget stranded", got, limit)
	}
}
