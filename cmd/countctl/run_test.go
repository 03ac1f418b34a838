package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// route is a scripted answer of the fake server.
type route struct {
	status int
	body   string
}

// gotRequest is a request the fake server received.
type gotRequest struct {
	method, uri string
	body        string
}

type fakeNode struct {
	srv *httptest.Server
	mu  sync.Mutex // guards reqs
	// reqs are the requests received, in order.
	reqs []gotRequest
}

// newFakeNode serves routes keyed by "METHOD /escaped/path"; anything else is
// a 404 in the spec's error format.
func newFakeNode(t *testing.T, routes map[string]route) *fakeNode {
	t.Helper()
	f := &fakeNode{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, gotRequest{r.Method, r.URL.RequestURI(), string(b)})
		f.mu.Unlock()
		rt, ok := routes[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			rt = route{404, `{"error":{"code":"not_found","message":"no route ` + r.URL.Path + `"}}`}
		}
		if rt.status == 0 {
			rt.status = 200
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rt.status)
		io.WriteString(w, rt.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeNode) requests() []gotRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gotRequest(nil), f.reqs...)
}

// runCLI runs countctl against f with args and returns status and outputs.
func runCLI(t *testing.T, f *fakeNode, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	full := append([]string{"--addr", f.srv.URL}, args...)
	code := run(full, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCommands(t *testing.T) {
	routes := map[string]route{
		"POST /v1/counters/likes/post%2F1/incr": {body: `{"ns":"likes","key":"post/1","value":42}`},
		"POST /v1/counters/likes/p/decr":        {body: `{"ns":"likes","key":"p","value":-3}`},
		"GET /v1/counters/likes/p":              {body: `{"ns":"likes","key":"p","value":7,"updated_at":"2024-05-06T07:08:09Z"}`},
		"PUT /v1/counters/likes/p":              {body: `{"ns":"likes","key":"p","value":100}`},
		"DELETE /v1/counters/likes/p":           {status: 204},
		"GET /v1/counters/likes":                {body: `{"items":[{"key":"a","value":1},{"key":"bb","value":22}],"next_cursor":""}`},
		"GET /v1/namespaces/likes/top":          {body: `{"items":[{"key":"hot","value":99}],"exact":false}`},
		"GET /v1/counters/likes/p/series":       {body: `{"step":"1m","points":[{"t":"2024-05-06T07:08:00Z","delta":3}],"total":3}`},
		"POST /v1/cluster/forget":               {body: `{"node":"n7","index":2,"ids":["626987743699368300"],"generation":4}`},
		"GET /v1/cluster": {body: `{"node":{"name":"n1","region":"eu","http_addr":"a:1","gossip_addr":"a:2"},
			"members":[{"name":"n2","region":"us","state":"alive","http_addr":"b:1"}],"replication":[{"peer":"n2","region":"us","lag_ms":4}]}`},
		"GET /v1/namespaces":                 {body: `{"namespaces":[{"name":"likes","type":"exact"},{"name":"views","type":"eventual"}]}`},
		"GET /v1/namespaces/likes":           {body: `{"type":"exact","durability":"sync","windows":["1m"],"min":0,"max":null}`},
		"POST /v1/ratelimit/api/u1":          {body: `{"allowed":true,"limit":10,"remaining":9,"reset_ms":500}`},
		"POST /v1/ratelimit/api/u2":          {status: 429, body: `{"allowed":false,"limit":10,"remaining":0,"reset_ms":500}`},
		"GET /v1/namespaces/likes/aggregate": {body: `{"count":2,"sum":23,"avg":11.5,"min":1,"max":22}`},
		"GET /healthz":                       {body: "ok"},
		"GET /readyz":                        {status: 503, body: `{"error":{"code":"unavailable","message":"recovering"}}`},
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string // exact stdout, unless wantOutHas
		wantOutHas []string
		wantErrHas string
		wantReq    *gotRequest // the last request, when checked
	}{
		{
			name: "incr with escaping, flags after args", args: []string{"incr", "likes", "post/1", "5", "--id", "r1", "--label", "c=fr"},
			wantOut: "42\n",
			wantReq: &gotRequest{"POST", "/v1/counters/likes/post%2F1/incr", `{"by":5,"id":"r1","labels":{"c":"fr"}}`},
		},
		{
			name: "decr negative by is an argument", args: []string{"decr", "likes", "p", "-2"},
			wantOut: "-3\n",
			wantReq: &gotRequest{"POST", "/v1/counters/likes/p/decr", `{"by":-2}`},
		},
		{
			name: "get with consistency", args: []string{"get", "likes", "p", "--consistency=quorum"},
			wantOut: "7\n",
			wantReq: &gotRequest{"GET", "/v1/counters/likes/p?consistency=quorum", ""},
		},
		{
			name: "get --json prints the server's JSON", args: []string{"--json", "get", "likes", "p"},
			wantOut: `{"ns":"likes","key":"p","value":7,"updated_at":"2024-05-06T07:08:09Z"}` + "\n",
		},
		{
			name: "reset", args: []string{"reset", "likes", "p", "100"}, wantOut: "100\n",
			wantReq: &gotRequest{"PUT", "/v1/counters/likes/p", `{"value":100}`},
		},
		{
			name: "delete", args: []string{"delete", "likes", "p"}, wantOut: "deleted likes/p\n",
			wantReq: &gotRequest{"DELETE", "/v1/counters/likes/p", ""},
		},
		{
			name: "delete --json with an empty answer", args: []string{"delete", "likes", "p", "--json"}, wantOut: "{}\n",
		},
		{
			name: "list with prefix", args: []string{"list", "likes", "b", "--limit", "5"},
			wantOut: "KEY  VALUE\na    1\nbb   22\n",
			wantReq: &gotRequest{"GET", "/v1/counters/likes?limit=5&prefix=b", ""},
		},
		{
			name: "top", args: []string{"top", "likes", "3", "--window", "1h"},
			wantOut: "#  KEY  VALUE\n1  hot  99\n(approximate ranking)\n",
			wantReq: &gotRequest{"GET", "/v1/namespaces/likes/top?k=3&window=1h", ""},
		},
		{
			name: "series", args: []string{"series", "likes", "p", "--step", "1m"},
			wantOut: "TIME (step 1m)        DELTA\n2024-05-06T07:08:00Z  3\ntotal                 3\n",
		},
		{
			name: "cluster", args: []string{"cluster"},
			wantOutHas: []string{"node n1  region eu", "n2      us      alive  b:1", "4ms"},
		},
		{
			name: "cluster forget", args: []string{"cluster", "forget", "--gone", "n7"},
			wantOut: "forgot n7 (entry 2 of the retired list, 1 slot id(s)); every node folds its slots once it has caught up (retired generation 4)\n",
			wantReq: &gotRequest{"POST", "/v1/cluster/forget", `{"node":"n7","gone":true}`},
		},
		{
			name: "cluster forget needs a node", args: []string{"cluster", "forget"}, wantCode: 2,
		},
		{
			name: "ns list", args: []string{"ns", "list"}, wantOut: "likes\texact\nviews\teventual\n",
		},
		{
			name: "ns get", args: []string{"ns", "get", "likes"},
			wantOutHas: []string{"type                exact", "windows             1m", "min                 0", "max                 none"},
		},
		{
			name: "ratelimit allowed", args: []string{"ratelimit", "api", "u1", "10", "1s"},
			wantOut: "allowed: 9 of 10 remaining, window resets in 500ms\n",
			wantReq: &gotRequest{"POST", "/v1/ratelimit/api/u1", `{"limit":10,"window":"1s"}`},
		},
		{
			name: "ratelimit refused exits 1", args: []string{"ratelimit", "api", "u2", "10", "1s", "--cost", "2"},
			wantCode: 1, wantOut: "refused: 0 of 10 remaining, window resets in 500ms\n",
			wantReq: &gotRequest{"POST", "/v1/ratelimit/api/u2", `{"limit":10,"window":"1s","cost":2}`},
		},
		{
			name: "aggregate", args: []string{"aggregate", "likes"},
			wantOut: "GROUP  COUNT  SUM  AVG   MIN  MAX\n(all)  2      23   11.5  1    22\n",
		},
		{
			name: "health not ready exits 1", args: []string{"health"}, wantCode: 1,
			wantOut: "alive, not ready\n", wantErrHas: "recovering (503 unavailable)",
		},
		{
			name: "refused request prints the message", args: []string{"get", "nope", "k"}, wantCode: 1,
			wantOut: "", wantErrHas: "no route /v1/counters/nope/k (404 not_found)",
		},
		{name: "no command", args: nil, wantCode: 2, wantOut: "", wantErrHas: "usage: countctl"},
		{name: "unknown command", args: []string{"frob"}, wantCode: 2, wantOut: "", wantErrHas: `unknown command "frob"`},
		{name: "missing argument", args: []string{"get", "likes"}, wantCode: 2, wantOut: "", wantErrHas: "get takes NS KEY"},
		{name: "bad number", args: []string{"incr", "likes", "k", "lots"}, wantCode: 2, wantOut: "", wantErrHas: `BY "lots" is not an integer`},
		{name: "unknown flag", args: []string{"get", "likes", "k", "--bogus"}, wantCode: 2, wantOut: "", wantErrHas: "unknown flag --bogus"},
		{name: "flag of another command", args: []string{"get", "likes", "k", "--window", "1h"}, wantCode: 2, wantOut: "", wantErrHas: "--window does not apply to get"},
		{name: "bad consistency", args: []string{"get", "likes", "k", "--consistency", "most"}, wantCode: 2, wantOut: "", wantErrHas: "want local, quorum or all"},
		{name: "bad ns key", args: []string{"ns", "set", "likes", "colour=red"}, wantCode: 2, wantOut: "", wantErrHas: `unknown key "colour"`},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantOutHas: []string{"usage: countctl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNode(t, routes)
			code, out, errOut := runCLI(t, f, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit status = %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			if tt.wantOutHas != nil {
				for _, s := range tt.wantOutHas {
					if !strings.Contains(out, s) {
						t.Errorf("stdout %q does not contain %q", out, s)
					}
				}
			} else if out != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
			if tt.wantErrHas != "" && !strings.Contains(errOut, tt.wantErrHas) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.wantErrHas)
			}
			if tt.wantErrHas == "" && tt.wantCode == 0 && errOut != "" {
				t.Errorf("stderr = %q, want nothing", errOut)
			}
			if tt.wantReq != nil {
				reqs := f.requests()
				if len(reqs) == 0 {
					t.Fatal("no request reached the server")
				}
				got := reqs[len(reqs)-1]
				if got.method != tt.wantReq.method || got.uri != tt.wantReq.uri {
					t.Errorf("request = %s %s, want %s %s", got.method, got.uri, tt.wantReq.method, tt.wantReq.uri)
				}
				if !sameJSON(got.body, tt.wantReq.body) {
					t.Errorf("body = %q, want %q", got.body, tt.wantReq.body)
				}
			}
			if tt.wantCode == 2 && len(f.requests()) != 0 {
				t.Errorf("bad usage sent %d requests, want none", len(f.requests()))
			}
		})
	}
}

// sameJSON compares two JSON bodies ("" matching only "").
func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestNamespaceSetSendsAPatch(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"type=exact", "min=0", "max=none", "windows=1m,1h", "retention=1m:48h,1h:90d"},
			`{"type":"exact","windows":["1m","1h"],"retention":{"1m":"48h","1h":"90d"},"min":0,"max":null}`},
		{[]string{"durability=async", "ttl=24h", "idempotency-window=1h"},
			`{"durability":"async","ttl":"24h","idempotency_window":"1h"}`},
		{[]string{"windows=none", "retention="}, `{"windows":[],"retention":{}}`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFakeNode(t, map[string]route{
				"PUT /v1/namespaces/likes": {body: `{"name":"likes","type":"exact","durability":"sync","windows":["1m","1h"],"min":0,"max":null}`},
			})
			code, out, errOut := runCLI(t, f, append([]string{"ns", "set", "likes"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit status %d, stderr %q", code, errOut)
			}
			reqs := f.requests()
			if len(reqs) != 1 || reqs[0].method != "PUT" {
				t.Fatalf("requests = %+v, want one PUT", reqs)
			}
			if !sameJSON(reqs[0].body, tt.want) {
				t.Errorf("PUT body = %s, want %s", reqs[0].body, tt.want)
			}
			if !strings.Contains(out, "type                exact") || !strings.Contains(out, "windows             1m,1h") {
				t.Errorf("stdout %q does not show the new config", out)
			}
		})
	}
}

func TestAddressFromEnvironment(t *testing.T) {
	f := newFakeNode(t, map[string]route{"GET /v1/counters/n/k": {body: `{"value":3}`}})
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "COUNTMESH_ADDR" {
			return f.srv.URL
		}
		return ""
	}
	code := runContext(context.Background(), []string{"get", "n", "k"}, &stdout, &stderr, getenv)
	if code != 0 || stdout.String() != "3\n" {
		t.Errorf("status %d stdout %q stderr %q; want 0 and 3", code, stdout.String(), stderr.String())
	}
	// --addr wins over the environment.
	other := newFakeNode(t, map[string]route{"GET /v1/counters/n/k": {body: `{"value":4}`}})
	stdout.Reset()
	code = runContext(context.Background(), []string{"--addr", other.srv.URL, "get", "n", "k"}, &stdout, &stderr, getenv)
	if code != 0 || stdout.String() != "4\n" {
		t.Errorf("with --addr: status %d stdout %q; want 0 and 4", code, stdout.String())
	}
}

func TestWatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RequestURI() != "/v1/namespaces/likes/watch?prefix=p" {
			w.WriteHeader(404)
			fmt.Fprintf(w, `{"error":{"code":"not_found","message":"unexpected %s"}}`, r.URL.RequestURI())
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "event: value\ndata: {\"ns\":\"likes\",\"key\":\"p%d\",\"value\":%d,\"ts\":\"2024-05-06T07:08:09Z\"}\n\n", i, i*10)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	var stdout, stderr bytes.Buffer
	code := run([]string{"--addr", srv.URL, "watch", "likes", "--prefix", "p", "-n", "2"}, &stdout, &stderr)
	want := "2024-05-06T07:08:09Z  likes/p1 = 10\n2024-05-06T07:08:09Z  likes/p2 = 20\n"
	if code != 0 || stdout.String() != want {
		t.Errorf("status %d stdout %q stderr %q; want 0 and %q", code, stdout.String(), stderr.String(), want)
	}
	stdout.Reset()
	code = run([]string{"--addr", srv.URL, "--json", "watch", "likes", "--prefix", "p", "--count", "1"}, &stdout, &stderr)
	if want := `{"ns":"likes","key":"p1","value":10,"ts":"2024-05-06T07:08:09Z"}` + "\n"; code != 0 || stdout.String() != want {
		t.Errorf("--json: status %d stdout %q; want 0 and %q", code, stdout.String(), want)
	}
	// Cancelling the context (Ctrl-C) ends the watch with status 0.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"--addr", srv.URL, "watch", "likes", "--prefix", "p"}, pw, io.Discard, func(string) string { return "" })
		pw.Close()
	}()
	line := make([]byte, 64)
	if _, err := pr.Read(line); err != nil {
		t.Fatalf("reading the first event: %v", err)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-done; code != 0 {
		t.Errorf("interrupted watch exited %d, want 0", code)
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	var stdout, stderr bytes.Buffer
	code := run([]string{"--addr", addr, "get", "n", "k"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "is countd running there?") {
		t.Errorf("status %d stderr %q; want 1 and a hint", code, stderr.String())
	}
}
