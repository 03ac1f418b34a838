package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"

	"github.com/countmesh/countmesh/ratelimit"
)

// loadOpenAPI loads and validates the embedded document with kin-openapi,
// which validates OpenAPI 3.1 documents (their schemas as JSON Schema
// 2020-12) as well as 3.0 ones.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi.json declares version %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableSchemaFormatValidation(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3.1 document: %v", err)
	}
	return doc
}

// documentedRoute is one operation of the document as the router names it.
type documentedRoute struct {
	path  string // the OpenAPI path
	op    *openapi3.Operation
	scope string // x-countmesh-scope
}

// documentedRoutes returns the document's operations keyed like the access
// table: "METHOD chi-pattern". An operation's x-chi-pattern gives the chi
// pattern where OpenAPI cannot write it (a catch-all such as /ui/*);
// otherwise the OpenAPI path is the pattern.
func documentedRoutes(t *testing.T, doc *openapi3.T) map[string]documentedRoute {
	t.Helper()
	out := map[string]documentedRoute{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			pattern := path
			if p, ok := op.Extensions["x-chi-pattern"].(string); ok {
				pattern = p
			}
			scope, _ := op.Extensions["x-countmesh-scope"].(string)
			key := accessKey(method, pattern)
			if prev, dup := out[key]; dup {
				t.Errorf("%s is described twice, by %s and by %s", key, prev.path, path)
			}
			out[key] = documentedRoute{path: path, op: op, scope: scope}
		}
	}
	return out
}

// scopeName names an access as x-countmesh-scope does.
func scopeName(a access) string {
	if a.open {
		return "open"
	}
	return a.scope.String()
}

// TestOpenAPIMatchesTheRouter walks the router and compares it with the
// document both ways: every routed method and pattern is described with the
// scope the routes table gives it, and every described operation is routed.
func TestOpenAPIMatchesTheRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := documentedRoutes(t, doc)
	a, _, _, _ := newAuthAPI(t, nil)
	routed := map[string]bool{}
	err := chi.Walk(a.srv.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		key := accessKey(method, strings.ReplaceAll(route, "/*/", "/"))
		routed[key] = true
		d, ok := documented[key]
		if !ok {
			t.Errorf("%s is routed but not described in httpapi/openapi.json: describe it there (and in docs/api.md)", key)
			return nil
		}
		if acc, declared := a.srv.access[key]; declared && d.scope != scopeName(acc) {
			t.Errorf("%s: openapi.json says x-countmesh-scope %q, the routes table gives %q", key, d.scope, scopeName(acc))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, d := range documented {
		if !routed[key] {
			t.Errorf("openapi.json describes %s (path %s), which is not routed", key, d.path)
		}
		if !slices.Contains([]string{"open", "read", "write", "admin"}, d.scope) {
			t.Errorf("%s: x-countmesh-scope %q is not open, read, write or admin", key, d.scope)
		}
		if (d.scope == "open") != (d.op.Security != nil && len(*d.op.Security) == 0) {
			t.Errorf("%s: an open route, and only one, must say security: []", key)
		}
	}
	if len(routed) < 20 {
		t.Fatalf("walked only %d routes", len(routed))
	}
}

// TestOpenAPIServed checks GET /v1/openapi.json serves the document and
// needs a read token like the other routes.
func TestOpenAPIServed(t *testing.T) {
	a, _, _, _ := newAuthAPI(t, nil)
	if s, _ := a.do("GET", "/v1/openapi.json", "", nil); s != 401 {
		t.Fatalf("openapi.json without a token: %d, want 401", s)
	}
	req, _ := http.NewRequest("GET", a.url+"/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+tokRead)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(body, openAPIDocument) {
		t.Fatal("the served document differs from the embedded one")
	}
}

// TestOpenAPIResponsesMatchSchemas sends requests to each kind of route and
// validates the JSON answers against the schemas the document gives for
// their status, so that the schemas describe what countd really sends.
func TestOpenAPIResponsesMatchSchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	leases := &localLeases{limiters: make(map[string]*ratelimit.Limiter)}
	rcfg := ratelimit.DefaultConfig()
	rcfg.Membership = ratelimit.Static{SelfName: "solo", All: []ratelimit.Member{{Name: "solo", Addr: "solo"}}}
	rcfg.Transport = leases
	limiter, err := ratelimit.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	leases.add("solo", limiter)
	t.Cleanup(func() { limiter.Close() })
	a := newTestAPIWith(t, nil, func(c *Config) { c.RateLimit = limiter })
	if s, b := a.json("PUT", "/v1/namespaces/an", `{"windows":["1m","1h"],"retention":{"1m":"48h","1h":"90d"},"min":null}`); s != 200 {
		t.Fatalf("put namespace: %d %v", s, b)
	}
	for _, k := range []string{"home", "cart"} {
		if s, b := a.json("POST", "/v1/counters/an/"+k+"/incr", `{"by":3,"labels":{"country":"fr"}}`); s != 200 {
			t.Fatalf("incr: %d %v", s, b)
		}
	}
	cases := []struct {
		method, path, pattern, body string
		status                      int
	}{
		{"GET", "/healthz", "/healthz", "", 200},
		{"GET", "/readyz", "/readyz", "", 200},
		{"GET", "/v1/cluster", "/v1/cluster", "", 200},
		{"POST", "/v1/counters/an/home/incr", "/v1/counters/{ns}/{key}/incr", `{"by":2,"id":"x1"}`, 200},
		{"POST", "/v1/counters/an/home/incr", "/v1/counters/{ns}/{key}/incr", `{"by":2,"id":"x1"}`, 200}, // duplicate
		{"POST", "/v1/counters/an/home/decr", "/v1/counters/{ns}/{key}/decr", "", 200},
		{"POST", "/v1/counters/an/home/incr", "/v1/counters/{ns}/{key}/incr", `{"by":1.5}`, 400},
		{"GET", "/v1/counters/an/home", "/v1/counters/{ns}/{key}", "", 200},
		{"GET", "/v1/counters/an/never", "/v1/counters/{ns}/{key}", "", 200},
		{"GET", "/v1/counters/an/home?at=2000-01-01T00:00:00Z", "/v1/counters/{ns}/{key}", "", 400},
		{"GET", "/v1/counters/an/home?at=" + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "/v1/counters/{ns}/{key}", "", 200},
		{"GET", "/v1/counters/an/home?window=1h&at=" + time.Now().UTC().Format(time.RFC3339), "/v1/counters/{ns}/{key}", "", 200},
		{"PUT", "/v1/counters/an/cart", "/v1/counters/{ns}/{key}", `{"value":10}`, 200},
		{"DELETE", "/v1/counters/an/cart", "/v1/counters/{ns}/{key}", "", 200},
		{"GET", "/v1/counters/an?limit=1", "/v1/counters/{ns}", "", 200},
		{"GET", "/v1/counters/an/home/series?step=1h", "/v1/counters/{ns}/{key}/series", "", 200},
		{"POST", "/v1/batch?return=values", "/v1/batch", `{"ops":[{"ns":"an","key":"home"},{"ns":"other","key":"k","by":4}]}`, 200},
		{"POST", "/v1/batch", "/v1/batch", `{"ops":[{"ns":"an","key":"home","by":9223372036854775807}]}`, 400},
		{"GET", "/v1/namespaces", "/v1/namespaces", "", 200},
		{"GET", "/v1/namespaces/an", "/v1/namespaces/{ns}", "", 200},
		{"GET", "/v1/namespaces/nope", "/v1/namespaces/{ns}", "", 404},
		{"PUT", "/v1/namespaces/ex", "/v1/namespaces/{ns}", `{"type":"exact","min":0,"max":10}`, 200},
		{"GET", "/v1/namespaces/an/top?k=2", "/v1/namespaces/{ns}/top", "", 200},
		{"GET", "/v1/namespaces/an/top?window=1m", "/v1/namespaces/{ns}/top", "", 200},
		{"GET", "/v1/namespaces/an/aggregate", "/v1/namespaces/{ns}/aggregate", "", 200},
		{"GET", "/v1/namespaces/an/aggregate?window=1h&group_by=country", "/v1/namespaces/{ns}/aggregate", "", 200},
		{"POST", "/v1/ratelimit/an/login", "/v1/ratelimit/{ns}/{key}", `{"limit":1,"window":"1m"}`, 200},
		{"POST", "/v1/ratelimit/an/login", "/v1/ratelimit/{ns}/{key}", `{"limit":1,"window":"1m"}`, 200}, // refused
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s %s %s", c.method, c.path, c.body)
		status, raw := a.rawDo(c.method, c.path, c.body)
		if status != c.status {
			t.Errorf("%s: status %d, want %d: %s", name, status, c.status, raw)
			continue
		}
		item := doc.Paths.Find(c.pattern)
		if item == nil || item.GetOperation(c.method) == nil {
			t.Errorf("%s: the document has no operation %s %s", name, c.method, c.pattern)
			continue
		}
		resp := item.GetOperation(c.method).Responses.Status(c.status)
		if resp == nil || resp.Value.Content.Get("application/json") == nil {
			t.Errorf("%s: the document gives no JSON answer for status %d", name, c.status)
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Errorf("%s: answer is not JSON: %s", name, raw)
			continue
		}
		schema := resp.Value.Content.Get("application/json").Schema.Value
		if err := doc.ValidateSchemaJSON(schema, v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s: answer %s does not match the documented schema: %v", name, raw, err)
		}
	}
}

// rawDo sends a request and returns the status and the raw answer.
func (a *testAPI) rawDo(method, path, body string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}
