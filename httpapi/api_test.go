package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/node"
)

type testAPI struct {
	t    *testing.T
	url  string
	node *node.Node
	srv  *Server
	// token, when set, is sent as "Authorization: Bearer <token>".
	token string
}

func newTestAPI(t *testing.T, mutate func(*node.Config)) *testAPI {
	t.Helper()
	return newTestAPIWith(t, mutate, nil)
}

// newTestAPIWith is newTestAPI with a hook that changes the API's Config.
func newTestAPIWith(t *testing.T, mutate func(*node.Config), mutateAPI func(*Config)) *testAPI {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Name = "test-node"
	cfg.Store.Dir = "data"
	cfg.Store.FS = vfs.NewMem()
	cfg.Logger = zaptest.NewLogger(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	apiCfg := Config{Node: n, Registerer: reg, Gatherer: reg, Logger: cfg.Logger}
	if mutateAPI != nil {
		mutateAPI(&apiCfg)
	}
	api, err := New(apiCfg)
	if err != nil {
		t.Fatalf("new api: %v", err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		n.Close()
	})
	return &testAPI{t: t, url: srv.URL, node: n, srv: api}
}

// as returns a copy of a that sends token.
func (a *testAPI) as(token string) *testAPI {
	c := *a
	c.token = token
	return &c
}

// do sends a request and returns the status and the decoded JSON body.
func (a *testAPI) do(method, path, contentType string, body []byte) (int, map[string]any) {
	a.t.Helper()
	status, _, out := a.doFull(method, path, contentType, body)
	return status, out
}

// doFull is do that also returns the answer's header.
func (a *testAPI) doFull(method, path, contentType string, body []byte) (int, http.Header, map[string]any) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(body))
	if err != nil {
		a.t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			a.t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
		}
	}
	return resp.StatusCode, resp.Header, out
}

func (a *testAPI) json(method, path, body string) (int, map[string]any) {
	a.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	return a.do(method, path, ct, []byte(body))
}

// value reads a counter through the API.
func (a *testAPI) value(ns, key string) int64 {
	a.t.Helper()
	status, body := a.json("GET", "/v1/counters/"+ns+"/"+key, "")
	if status != 200 {
		a.t.Fatalf("GET %s/%s: status %d %v", ns, key, status, body)
	}
	return int64(body["value"].(float64))
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestCounterRoutes(t *testing.T) {
	a := newTestAPI(t, nil)
	if s, b := a.json("POST", "/v1/counters/pages/home/incr", ""); s != 200 || b["value"].(float64) != 1 {
		t.Fatalf("incr with no body: %d %v", s, b)
	}
	if s, b := a.json("POST", "/v1/counters/pages/home/incr", `{"by":41}`); s != 200 || b["value"].(float64) != 42 {
		t.Fatalf("incr by 41: %d %v", s, b)
	}
	// curl -d labels JSON as a form; the body decides.
	if s, b := a.do("POST", "/v1/counters/pages/home/decr", "application/x-www-form-urlencoded", []byte(`{"by":2}`)); s != 200 || b["value"].(float64) != 40 {
		t.Fatalf("decr by 2: %d %v", s, b)
	}
	if s, b := a.json("POST", "/v1/counters/pages/home/incr", `{"by":-10}`); s != 200 || b["value"].(float64) != 30 {
		t.Fatalf("incr by -10: %d %v", s, b)
	}
	s, b := a.json("GET", "/v1/counters/pages/home", "")
	if s != 200 || b["value"].(float64) != 30 || b["ns"] != "pages" || b["key"] != "home" || b["updated_at"] == nil {
		t.Fatalf("get: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/counters/pages/never", "")
	if s != 200 || b["value"].(float64) != 0 || b["updated_at"] != nil {
		t.Fatalf("get of a counter never written: %d %v", s, b)
	}
	if s, b := a.json("PUT", "/v1/counters/pages/home", `{"value":7}`); s != 200 || b["value"].(float64) != 7 {
		t.Fatalf("reset: %d %v", s, b)
	}
	if got := a.value("pages", "home"); got != 7 {
		t.Fatalf("after reset: %d", got)
	}
	// A key with a slash, path-escaped.
	if s, b := a.json("POST", "/v1/counters/pages/a%2Fb%20c/incr", ""); s != 200 || b["key"] != "a/b c" {
		t.Fatalf("escaped key: %d %v", s, b)
	}
	if got := a.value("pages", "a%2Fb%20c"); got != 1 {
		t.Fatalf("escaped key reads %d", got)
	}
	if s, _ := a.json("DELETE", "/v1/counters/pages/home", ""); s != 200 {
		t.Fatalf("delete: %d", s)
	}
	if got := a.value("pages", "home"); got != 0 {
		t.Fatalf("deleted counter reads %d", got)
	}
	s, b = a.json("GET", "/v1/counters/pages", "")
	if s != 200 {
		t.Fatalf("list: %d %v", s, b)
	}
	items := b["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["key"] != "a/b c" {
		t.Fatalf("list after delete shows %v, want only a/b c", items)
	}
}

func TestListPagination(t *testing.T) {
	a := newTestAPI(t, nil)
	for i := range 25 {
		if s, b := a.json("POST", fmt.Sprintf("/v1/counters/shop/item-%02d/incr", i), fmt.Sprintf(`{"by":%d}`, i+1)); s != 200 {
			t.Fatalf("incr: %d %v", s, b)
		}
	}
	a.json("POST", "/v1/counters/shop/other/incr", "")
	var keys []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		s, b := a.json("GET", "/v1/counters/shop?prefix=item-&limit=10&cursor="+cursor, "")
		if s != 200 {
			t.Fatalf("list: %d %v", s, b)
		}
		for _, it := range b["items"].([]any) {
			m := it.(map[string]any)
			keys = append(keys, m["key"].(string))
			if want := float64(len(keys)); m["value"].(float64) != want {
				t.Fatalf("%s = %v, want %v", m["key"], m["value"], want)
			}
		}
		cursor = b["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	if len(keys) != 25 || keys[0] != "item-00" || keys[24] != "item-24" {
		t.Fatalf("listed %d keys: %v", len(keys), keys)
	}
}

func TestBatchJSONAndMsgpack(t *testing.T) {
	a := newTestAPI(t, nil)
	s, b := a.json("POST", "/v1/batch?return=values", `{"ops":[{"ns":"v","key":"a"},{"ns":"v","key":"b","by":5},{"ns":"v","key":"a","by":2}]}`)
	if s != 200 || b["applied"].(float64) != 3 {
		t.Fatalf("json batch: %d %v", s, b)
	}
	if vals := fmt.Sprint(b["values"]); vals != "[1 5 3]" {
		t.Fatalf("values = %s, want [1 5 3]", vals)
	}
	body, err := msgpack.Marshal(map[string]any{
		"ops": []map[string]any{{"ns": "v", "key": "a", "by": 10}, {"ns": "w", "key": "z"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, b = a.do("POST", "/v1/batch", "application/msgpack", body)
	if s != 200 || b["applied"].(float64) != 2 || b["values"] != nil {
		t.Fatalf("msgpack batch: %d %v", s, b)
	}
	if a.value("v", "a") != 13 || a.value("w", "z") != 1 || a.value("v", "b") != 5 {
		t.Fatalf("values after batches: a=%d z=%d b=%d", a.value("v", "a"), a.value("w", "z"), a.value("v", "b"))
	}
}

func TestNamespaces(t *testing.T) {
	a := newTestAPI(t, nil)
	if s, b := a.json("GET", "/v1/namespaces/likes", ""); s != 404 || errCode(b) != "not_found" {
		t.Fatalf("unknown namespace: %d %v", s, b)
	}
	s, b := a.json("PUT", "/v1/namespaces/likes", `{"type":"exact","min":0,"windows":["1h","1m","1h"],"retention":{"1m":"48h","1h":"90d"}}`)
	if s != 200 || b["type"] != "exact" || b["min"].(float64) != 0 || fmt.Sprint(b["windows"]) != "[1m 1h]" || b["durability"] != "sync" {
		t.Fatalf("put: %d %v", s, b)
	}
	// A patch keeps the fields it does not name.
	s, b = a.json("PUT", "/v1/namespaces/likes", `{"durability":"async"}`)
	if s != 200 || b["type"] != "exact" || b["durability"] != "async" || b["min"].(float64) != 0 {
		t.Fatalf("patch: %d %v", s, b)
	}
	s, b = a.json("PUT", "/v1/namespaces/likes", `{"min":null}`)
	if s != 200 || b["min"] != nil {
		t.Fatalf("clearing min: %d %v", s, b)
	}
	a.json("POST", "/v1/counters/views/x/incr", "") // created by a first write
	s, b = a.json("GET", "/v1/namespaces", "")
	if s != 200 || len(b["items"].([]any)) != 2 {
		t.Fatalf("list: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/namespaces/views", "")
	if s != 200 || b["type"] != "eventual" || b["ttl"] != "0" || b["idempotency_window"] != "24h" {
		t.Fatalf("default config: %d %v", s, b)
	}
	// The type may change while the namespace is empty.
	if s, b := a.json("PUT", "/v1/namespaces/likes", `{"type":"eventual"}`); s != 200 {
		t.Fatalf("type change of an empty namespace: %d %v", s, b)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	a := newTestAPI(t, nil)
	if s, _ := a.json("GET", "/healthz", ""); s != 200 {
		t.Fatalf("healthz %d", s)
	}
	if s, _ := a.json("GET", "/readyz", ""); s != 200 {
		t.Fatalf("readyz %d", s)
	}
	a.json("POST", "/v1/counters/m/k/incr", "")
	text := a.metricsText()
	for _, want := range []string{
		"countmesh_increments_total 1",
		`countmesh_http_request_duration_seconds_count{code="200",method="POST",route="/v1/counters/{ns}/{key}/incr"} 1`,
		"countmesh_commits_total",
		"countmesh_fsync_seconds_total",
		"countmesh_ready 1",
		`countmesh_members{state="alive"} 1`,
		`countmesh_members{state="suspect"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
