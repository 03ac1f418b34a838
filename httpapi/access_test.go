package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/internal/wait"
)

// Tokens of the tests.
const (
	tokRead    = "read-all-token-0123456789"
	tokPages   = "write-pages-token-0123456789" // write pages clicks-*
	tokAdmin   = "admin-token-0123456789abcd"
	tokUnknown = "unknown-token-0123456789"
)

const testTokensFile = "# test tokens\n" +
	tokRead + " read\n" +
	tokPages + " write pages clicks-*\n" +
	tokAdmin + " admin\n"

// writeTokens writes a tokens file and loads it.
func writeTokens(t *testing.T, content string) (*auth.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := auth.LoadFile(path)
	if err != nil {
		t.Fatalf("load tokens: %v", err)
	}
	return st, path
}

// newAuthAPI is a test API with the test tokens; its logs are kept in
// the returned observer.
func newAuthAPI(t *testing.T, mutateAPI func(*Config)) (*testAPI, *auth.Store, string, *observer.ObservedLogs) {
	t.Helper()
	st, path := writeTokens(t, testTokensFile)
	core, logs := observer.New(zap.DebugLevel)
	a := newTestAPIWith(t, nil, func(c *Config) {
		c.Tokens = st
		c.Logger = zap.New(core)
		if mutateAPI != nil {
			mutateAPI(c)
		}
	})
	return a, st, path, logs
}

func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

func TestAuthentication(t *testing.T) {
	a, _, _, logs := newAuthAPI(t, nil)
	// Written through the admin token for the reads below.
	if s, b := a.as(tokAdmin).json("POST", "/v1/counters/views/k/incr", ""); s != 200 {
		t.Fatalf("admin incr: %d %v", s, b)
	}

	tests := []struct {
		name, token, method, path, body string
		status                          int
		code                            string
	}{
		{"healthz is open", "", "GET", "/healthz", "", 200, ""},
		{"readyz is open", "", "GET", "/readyz", "", 200, ""},
		{"no token", "", "GET", "/v1/counters/views/k", "", 401, "unauthenticated"},
		{"unknown token", tokUnknown, "GET", "/v1/counters/views/k", "", 401, "unauthenticated"},
		{"unknown route without token", "", "GET", "/v1/nothing", "", 401, "unauthenticated"},
		{"unknown route with token", tokRead, "GET", "/v1/nothing", "", 404, "not_found"},
		{"wrong method with token", tokRead, "PATCH", "/v1/counters/views/k", "", 405, "method_not_allowed"},
		{"metrics without token", "", "GET", "/metrics", "", 401, "unauthenticated"},
		{"metrics with read", tokRead, "GET", "/metrics", "", 200, ""},
		{"metrics with a namespace-bound token", tokPages, "GET", "/metrics", "", 200, ""},
		{"cluster with read", tokRead, "GET", "/v1/cluster", "", 200, ""},
		{"read reads", tokRead, "GET", "/v1/counters/views/k", "", 200, ""},
		{"read lists", tokRead, "GET", "/v1/counters/views", "", 200, ""},
		{"read cannot incr", tokRead, "POST", "/v1/counters/views/k/incr", "", 403, "permission_denied"},
		{"read cannot reset", tokRead, "PUT", "/v1/counters/views/k", `{"value":1}`, 403, "permission_denied"},
		{"read cannot delete", tokRead, "DELETE", "/v1/counters/views/k", "", 403, "permission_denied"},
		{"read cannot batch", tokRead, "POST", "/v1/batch", `{"ops":[{"ns":"views","key":"k"}]}`, 403, "permission_denied"},
		{"read cannot rate limit", tokRead, "POST", "/v1/ratelimit/views/k", `{"limit":1,"window":"1s"}`, 403, "permission_denied"},
		{"write increments its namespace", tokPages, "POST", "/v1/counters/pages/k/incr", "", 200, ""},
		{"write increments under its prefix", tokPages, "POST", "/v1/counters/clicks-eu/k/incr", "", 200, ""},
		{"write reads its namespace", tokPages, "GET", "/v1/counters/pages/k", "", 200, ""},
		{"write cannot touch another namespace", tokPages, "POST", "/v1/counters/views/k/incr", "", 403, "permission_denied"},
		{"write cannot read another namespace", tokPages, "GET", "/v1/counters/views/k", "", 403, "permission_denied"},
		{"write cannot watch another namespace", tokPages, "GET", "/v1/namespaces/views/watch", "", 403, "permission_denied"},
		{"write cannot top another namespace", tokPages, "GET", "/v1/namespaces/views/top", "", 403, "permission_denied"},
		{"write cannot configure", tokPages, "PUT", "/v1/namespaces/pages", `{"ttl":"1h"}`, 403, "permission_denied"},
		{"admin configures", tokAdmin, "PUT", "/v1/namespaces/pages", `{"ttl":"1h"}`, 200, ""},
		{"escaped namespace is checked unescaped", tokPages, "POST", "/v1/counters/%76iews/k%2F/incr", "", 403, "permission_denied"},
		{"bad namespace with token", tokPages, "POST", "/v1/counters/Bad!/k/incr", "", 400, "invalid_argument"},
		// The profiler is on --admin-addr and peer calls on the peer
		// listener: neither is served here, whatever the token.
		{"no profiler, even for admin", tokAdmin, "GET", "/debug/pprof/", "", 404, "not_found"},
		{"no peer route, even for admin", tokAdmin, "GET", "/internal/v1/state/views/k", "", 404, "not_found"},
		{"unknown route without token", "", "POST", "/internal/v1/state", "", 401, "unauthenticated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := ""
			if tt.body != "" {
				ct = "application/json"
			}
			s, h, b := a.as(tt.token).doFull(tt.method, tt.path, ct, []byte(tt.body))
			if s != tt.status || errCode(b) != tt.code {
				t.Fatalf("%s %s: %d %v, want %d %q", tt.method, tt.path, s, b, tt.status, tt.code)
			}
			if s == 401 {
				if got := h.Get("WWW-Authenticate"); got != `Bearer realm="countmesh"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if msg := errMessage(b); !strings.Contains(msg, "Authorization: Bearer <token>") || !strings.Contains(msg, "--api-tokens-file") {
					t.Errorf("the 401 message %q does not say what to do", msg)
				}
			}
			if tt.token != "" && strings.Contains(fmt.Sprint(b), tt.token) {
				t.Errorf("the answer %v holds the token", b)
			}
		})
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, tok := range []string{tokRead, tokPages, tokAdmin, tokUnknown} {
			if strings.Contains(line, tok) {
				t.Errorf("a log entry holds a token: %s", line)
			}
		}
	}
}

func TestAuthorizationHeaderForms(t *testing.T) {
	a, _, _, _ := newAuthAPI(t, nil)
	tests := []struct {
		name, header string
		status       int
	}{
		{"bearer", "Bearer " + tokRead, 200},
		{"scheme in lower case", "bearer " + tokRead, 200},
		{"extra spaces", "Bearer   " + tokRead + " ", 200},
		{"basic", "Basic " + tokRead, 401},
		{"token alone", tokRead, 401},
		{"scheme alone", "Bearer", 401},
		{"empty token", "Bearer ", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", a.url+"/v1/cluster", nil)
			req.Header.Set("Authorization", tt.header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("Authorization %q: %d, want %d", tt.header, resp.StatusCode, tt.status)
			}
		})
	}
}

func TestBatchChecksEveryOp(t *testing.T) {
	a, _, _, _ := newAuthAPI(t, nil)
	w := a.as(tokPages)
	s, b := w.json("POST", "/v1/batch", `{"ops":[{"ns":"pages","key":"a"},{"ns":"clicks-x","key":"a"},{"ns":"views","key":"a"},{"ns":"pages","key":"b"}]}`)
	if s != 403 || errCode(b) != "permission_denied" || !strings.Contains(errMessage(b), "op 2") || !strings.Contains(errMessage(b), `"views"`) {
		t.Fatalf("batch with a foreign op: %d %v", s, b)
	}
	admin := a.as(tokAdmin)
	for _, k := range []string{"pages/a", "clicks-x/a", "views/a", "pages/b"} {
		ns, key, _ := strings.Cut(k, "/")
		if v := admin.value(ns, key); v != 0 {
			t.Fatalf("%s = %d after a refused batch, want 0", k, v)
		}
	}
	if s, b := w.do("POST", "/v1/batch", "application/msgpack", []byte("\x81\xa3ops\x91\x82\xa2ns\xa5views\xa3key\xa1a")); s != 403 || errCode(b) != "permission_denied" {
		t.Fatalf("msgpack batch with a foreign op: %d %v", s, b)
	}
	if s, b := w.json("POST", "/v1/batch", `{"ops":[{"ns":"pages","key":"a"},{"ns":"clicks-x","key":"a","by":3}]}`); s != 200 || b["applied"].(float64) != 2 {
		t.Fatalf("batch in its namespaces: %d %v", s, b)
	}
	if v := admin.value("clicks-x", "a"); v != 3 {
		t.Fatalf("clicks-x/a = %d, want 3", v)
	}
}

func TestNamespaceListIsFiltered(t *testing.T) {
	a, _, _, _ := newAuthAPI(t, nil)
	for _, ns := range []string{"pages", "clicks-eu", "views", "clicks"} {
		if s, b := a.as(tokAdmin).json("PUT", "/v1/namespaces/"+ns, `{}`); s != 200 {
			t.Fatalf("put %s: %d %v", ns, s, b)
		}
	}
	names := func(token string) string {
		t.Helper()
		s, b := a.as(token).json("GET", "/v1/namespaces", "")
		if s != 200 {
			t.Fatalf("list with %s: %d %v", token, s, b)
		}
		var out []string
		for _, it := range b["items"].([]any) {
			out = append(out, it.(map[string]any)["name"].(string))
		}
		return strings.Join(out, ",")
	}
	if got := names(tokPages); got != "clicks-eu,pages" {
		t.Errorf("namespace-bound token lists %q, want clicks-eu,pages", got)
	}
	if got := names(tokRead); got != "clicks,clicks-eu,pages,views" {
		t.Errorf("unbound token lists %q, want all four", got)
	}
}

func TestTokensReload(t *testing.T) {
	a, st, path, _ := newAuthAPI(t, nil)
	const tokNew = "new-token-after-reload-0123"
	if err := os.WriteFile(path, []byte(tokNew+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if s, _ := a.as(tokRead).json("GET", "/v1/cluster", ""); s != 401 {
		t.Errorf("removed token: %d, want 401", s)
	}
	if s, _ := a.as(tokNew).json("GET", "/v1/cluster", ""); s != 200 {
		t.Errorf("added token: %d, want 200", s)
	}
}

// TestEveryRouteDeclaresItsScope walks the router: every route must be in
// the access table, so that a route added without a scope fails here (at
// run time it would need an admin token). There are no exceptions: the
// profiler is on the admin listener and peer calls on the peer listener.
func TestEveryRouteDeclaresItsScope(t *testing.T) {
	a, _, _, _ := newAuthAPI(t, nil)
	walked := map[string]bool{}
	err := chi.Walk(a.srv.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		route = strings.ReplaceAll(route, "/*/", "/")
		key := accessKey(method, route)
		walked[key] = true
		if _, ok := a.srv.access[key]; !ok {
			t.Errorf("route %s declares no access: add it to Server.routes with its scope", key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key := range a.srv.access {
		if !walked[key] {
			t.Errorf("the access table names %s, which is not routed", key)
		}
	}
	if len(a.srv.access) < 19 {
		t.Fatalf("only %d routes declared", len(a.srv.access))
	}
}

// TestEveryRouteNeedsAToken sends each routed method and path without a
// token: all but the health checks answer 401.
func TestEveryRouteNeedsAToken(t *testing.T) {
	a, _, _, _ := newAuthAPI(t, nil)
	n := 0
	err := chi.Walk(a.srv.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		path := strings.NewReplacer("/*/", "/", "{ns}", "c", "{key}", "k", "*", "x").Replace(route)
		want := 401
		switch path {
		case "/healthz", "/readyz", "/ui": // /ui redirects to the page
			want = 200
		case "/ui/x": // the dashboard's files are open: no such file
			want = 404
		}
		if s, b := a.do(method, path, "", nil); s != want {
			t.Errorf("%s %s without a token: %d %v, want %d", method, path, s, b, want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("walked only %d routes", n)
	}
}

func TestWithoutTokensEverythingIsOpen(t *testing.T) {
	a := newTestAPI(t, nil)
	if s, b := a.json("PUT", "/v1/namespaces/x", `{}`); s != 200 {
		t.Fatalf("put namespace without tokens: %d %v", s, b)
	}
	if s, b := a.as(tokUnknown).json("POST", "/v1/counters/x/k/incr", ""); s != 200 {
		t.Fatalf("a token sent to a node without tokens: %d %v", s, b)
	}
}

// openWatch opens a watch stream and returns once the server has started
// it (its first comment line arrived); cancel ends it.
func openWatch(t *testing.T, a *testAPI, path string) (int, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", a.url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("watch: %v", err)
	}
	if resp.StatusCode == 200 {
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, ": watching") {
			cancel()
			t.Fatalf("watch: first line %q, %v", line, err)
		}
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp.StatusCode, func() { cancel(); resp.Body.Close() }
}

func TestWatchStreamCap(t *testing.T) {
	a := newTestAPIWith(t, nil, func(c *Config) { c.MaxWatchStreams = 2 })
	s1, cancel1 := openWatch(t, a, "/v1/counters/w/a/watch")
	s2, _ := openWatch(t, a, "/v1/namespaces/w/watch")
	if s1 != 200 || s2 != 200 {
		t.Fatalf("first two watches: %d %d", s1, s2)
	}
	s, h, b := a.doFull("GET", "/v1/counters/w/b/watch", "", nil)
	if s != 429 || errCode(b) != "overloaded" || !strings.Contains(errMessage(b), "limit of 2 watch streams") || h.Get("Retry-After") == "" {
		t.Fatalf("third watch: %d %v %v", s, h, b)
	}
	cancel1()
	wait.Until(t, 10*time.Second, "the closed watch to end", func() bool { return a.srv.watchers.Load() < 2 })
	if s, _ := openWatch(t, a, "/v1/counters/w/b/watch"); s != 200 {
		t.Fatalf("watch after one ended: %d", s)
	}
}

func TestMaxWatchStreamsConfig(t *testing.T) {
	a := newTestAPI(t, nil)
	if a.srv.maxWatchers != DefaultMaxWatchStreams || DefaultConfig().MaxWatchStreams != DefaultMaxWatchStreams {
		t.Fatalf("default cap %d, want %d", a.srv.maxWatchers, DefaultMaxWatchStreams)
	}
	if _, err := New(Config{Node: a.node, MaxWatchStreams: -1}); err == nil || !strings.Contains(err.Error(), "MaxWatchStreams") {
		t.Fatalf("New with a negative cap: %v", err)
	}
}

func TestLabelValidation(t *testing.T) {
	a := newTestAPI(t, nil)
	tests := []struct {
		name, labels string
		ok           bool
	}{
		{"plain", `{"country":"de","plan":"pro"}`, true},
		{"unicode value", `{"city":"Zürich 東京"}`, true},
		{"NUL in value", `{"country":"de\u0000plan"}`, false},
		{"unit separator forges a label", `{"country":"de\u001fplan\u0000pro"}`, false},
		{"newline in value", `{"country":"de\n"}`, false},
		{"DEL in value", `{"country":"de\u007f"}`, false},
		{"C1 control in value", `{"country":"de\u0085"}`, false},
		{"value too long", `{"country":"` + strings.Repeat("v", 257) + `"}`, false},
		{"value at the bound", `{"country":"` + strings.Repeat("v", 256) + `"}`, true},
		{"control in name", `{"coun\u0001try":"de"}`, false},
		{"name too long", `{"` + strings.Repeat("n", 65) + `":"de"}`, false},
		{"empty name", `{"":"de"}`, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("k%d", i)
			s, b := a.json("POST", "/v1/counters/l/"+key+"/incr", `{"labels":`+tt.labels+`}`)
			if tt.ok {
				if s != 200 {
					t.Fatalf("labels %s: %d %v", tt.labels, s, b)
				}
				return
			}
			if s != 400 || errCode(b) != "invalid_argument" {
				t.Fatalf("labels %s: %d %v, want 400 invalid_argument", tt.labels, s, b)
			}
			if v := a.value("l", key); v != 0 {
				t.Fatalf("a refused increment counted: %d", v)
			}
		})
	}
}

func TestValidateLabelsInvalidUTF8(t *testing.T) {
	// encoding/json turns invalid UTF-8 into U+FFFD, so this is the check
	// itself, for bodies that do not come through JSON.
	for _, labels := range []map[string]string{{"country": "de\xff"}, {"co\xc3": "de"}} {
		err := validateLabels(labels)
		if status, _ := classify(err); status != 400 || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("validateLabels(%q) = %v", labels, err)
		}
	}
}

// TestBadEscapes: a bad percent escape gets the JSON error wherever the code
// path is this package's.
func TestBadEscapes(t *testing.T) {
	a := newTestAPI(t, nil)
	a.json("POST", "/v1/counters/esc/pre-a/incr", "")
	a.json("POST", "/v1/counters/esc/other/incr", "")
	for _, path := range []string{
		"/v1/counters/esc?prefix=%G1",
		"/v1/counters/esc/pre-a?at=%zz",
		"/v1/namespaces/esc/top?prefix=pre%",
		"/v1/namespaces/esc/watch?prefix=%G1",
	} {
		s, b := a.json("GET", path, "")
		if s != 400 || errCode(b) != "invalid_argument" || !strings.Contains(errMessage(b), "malformed query string") {
			t.Errorf("GET %s: %d %v, want the JSON invalid_argument error", path, s, b)
		}
	}
	// A bad escape in the path never reaches a handler over net/http (its
	// request-line parser answers a plain-text 400); a request built by
	// the caller reaches ours and gets the JSON error.
	req, _ := http.NewRequest("GET", "/", nil)
	req.URL.Path = "/v1/counters/pages/a%G1"
	req.URL.RawPath = "/v1/counters/pages/a%G1"
	rec := newRecorder()
	a.srv.ServeHTTP(rec, req)
	if rec.Code != 400 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") || !strings.Contains(rec.Body.String(), `"invalid_argument"`) {
		t.Fatalf("bad escape in the raw path: %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
}

func TestBadPathEscapeOverTheWire(t *testing.T) {
	a := newTestAPI(t, nil)
	status, ct := rawGet(t, a.url, "/v1/counters/pages/a%G1")
	if status != 400 {
		t.Fatalf("bad path escape: %d, want 400", status)
	}
	// net/http answers this one before any handler: see unescapeParam.
	t.Logf("net/http's answer to a bad path escape: %d %q", status, ct)
}
