package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

// fastCase is one request of TestFastPathMatchesChi.
type fastCase struct {
	name, method, path, ct, body, token string
	// fast says whether the fast path takes the request (serveFast).
	fast bool
}

// fastTestClock is the clock of both nodes of TestFastPathMatchesChi, so
// that their answers (updated_at) are the same.
var fastTestClock = time.Date(2026, 11, 30, 12, 34, 56, 789123456, time.UTC)

// newCompareServer returns a server over a fresh node on an in-memory file
// system whose clock stands still at fastTestClock, and its registry.
func newCompareServer(t *testing.T, noFast bool, tokens bool) (*Server, *prometheus.Registry) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Name = "test-node"
	cfg.Store.Dir = "data"
	cfg.Store.FS = vfs.NewMem()
	cfg.Logger = zaptest.NewLogger(t)
	cfg.Now = func() time.Time { return fastTestClock }
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	rl := ratelimit.DefaultConfig()
	rl.Membership, rl.Now = ratelimit.Single(cfg.Name), cfg.Now
	limiter, err := ratelimit.New(rl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { limiter.Close() })
	apiCfg := Config{Node: n, Registerer: reg, Gatherer: reg, Logger: cfg.Logger, RateLimit: limiter}
	if tokens {
		apiCfg.Tokens, _ = writeTokens(t, testTokensFile)
	}
	s, err := New(apiCfg)
	if err != nil {
		t.Fatalf("new api: %v", err)
	}
	s.noFast = noFast
	return s, reg
}

// fastCases are requests to the routes of the fast path, good and bad, and
// the requests next to them that the fast path must leave to chi.
func fastCases() []fastCase {
	longKey := strings.Repeat("k", node.MaxKeyBytes+1)
	padded := `{"by":3` + strings.Repeat(" ", 600) + `}` // past smallBodyBytes
	labels := `{"by":2,"labels":{"plan":"` + strings.Repeat("p", 200) + `","country":"` + strings.Repeat("c", 200) + `"}}`
	cs := []fastCase{
		{name: "incr no body", method: "POST", path: "/v1/counters/pages/home/incr", fast: true},
		{name: "incr by", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":5}`, fast: true},
		{name: "incr negative", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":-3}`, fast: true},
		{name: "incr spaced", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: " {\r\n\t\"by\" :\t7 } \n", fast: true},
		{name: "incr empty object", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{}`, fast: true},
		{name: "incr white space only", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: " \n", fast: true},
		{name: "incr no content type", method: "POST", path: "/v1/counters/pages/home/incr", body: `{"by":4}`, fast: true},
		{name: "incr minus zero", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":-0}`, fast: true},
		{name: "incr 15 digits", method: "POST", path: "/v1/counters/pages/big/incr", ct: "application/json", body: `{"by":123456789012345}`, fast: true},
		{name: "incr 16 digits", method: "POST", path: "/v1/counters/pages/big/incr", ct: "application/json", body: `{"by":1234567890123456}`, fast: true},
		{name: "incr by 2^53", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":9007199254740992}`, fast: true},
		{name: "incr by huge", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":99999999999999999999999}`, fast: true},
		{name: "incr by fraction", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":1.5}`, fast: true},
		{name: "incr by exponent", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":1e3}`, fast: true},
		{name: "incr by string", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":"2"}`, fast: true},
		{name: "incr by null", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":null}`, fast: true},
		{name: "incr by leading zero", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":01}`, fast: true},
		{name: "incr by capitals", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"BY":6}`, fast: true},
		{name: "incr unknown field", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"bye":1}`, fast: true},
		{name: "incr two values", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":1} {"by":1}`, fast: true},
		{name: "incr by twice", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":1,"by":2}`, fast: true},
		{name: "incr truncated", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":`, fast: true},
		{name: "incr array", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `[1]`, fast: true},
		{name: "incr not utf-8", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: "\xff\xfe", fast: true},
		{name: "incr id", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":2,"id":"req-1"}`, fast: true},
		{name: "incr id again", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":2,"id":"req-1"}`, fast: true},
		{name: "incr labels", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: labels, fast: true},
		{name: "incr bad label", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"labels":{"a":"x\u0001"}}`, fast: true},
		{name: "incr bad at", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"at":"yesterday"}`, fast: true},
		{name: "incr bad consistency", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"consistency":"most"}`, fast: true},
		{name: "incr long body", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: padded, fast: true},
		{name: "incr body too large", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":1}` + strings.Repeat(" ", MaxBodyBytes), fast: true},
		{name: "incr form with JSON", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/x-www-form-urlencoded", body: `{"by":2}`, fast: true},
		{name: "incr form", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/x-www-form-urlencoded", body: `by=2`, fast: true},
		{name: "incr charset", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json; charset=utf-8", body: `{"by":2}`, fast: true},
		{name: "incr bad content type", method: "POST", path: "/v1/counters/pages/home/incr", ct: "bad/;;", body: `{"by":2}`, fast: true},
		{name: "incr bad content type no body", method: "POST", path: "/v1/counters/pages/home/incr", ct: "bad/;;", fast: true},
		{name: "incr msgpack", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/msgpack", body: "\x81\xa2by\x01", fast: true},
		{name: "decr", method: "POST", path: "/v1/counters/pages/home/decr", ct: "application/json", body: `{"by":2}`, fast: true},
		{name: "decr no body", method: "POST", path: "/v1/counters/pages/home/decr", fast: true},
		{name: "incr bad namespace", method: "POST", path: "/v1/counters/Pages/home/incr", fast: true},
		{name: "incr namespace dot", method: "POST", path: "/v1/counters/./home/incr", fast: true},
		{name: "incr namespace too long", method: "POST", path: "/v1/counters/" + strings.Repeat("n", 65) + "/home/incr", fast: true},
		{name: "incr key too long", method: "POST", path: "/v1/counters/pages/" + longKey + "/incr", fast: true},
		{name: "incr key to escape", method: "POST", path: "/v1/counters/pages/a<b>&\"c\"/incr", fast: true},
		{name: "incr key unicode", method: "POST", path: "/v1/counters/pages/caf\u00e9/incr", fast: true},
		{name: "incr key named incr", method: "POST", path: "/v1/counters/pages/incr/incr", fast: true},
		{name: "incr escaped key", method: "POST", path: "/v1/counters/pages/a%2Fb/incr", fast: false},
		// Escapes that are the canonical ones leave URL.RawPath empty:
		// chi routes on the unescaped path, and so does the fast path.
		{name: "incr escaped control", method: "POST", path: "/v1/counters/pages/a%01b/incr", fast: true},
		{name: "incr escaped bad utf-8", method: "POST", path: "/v1/counters/pages/a%FFb/incr", fast: true},
		{name: "incr escaped space", method: "POST", path: "/v1/counters/pages/a%20b/incr", fast: true},
		{name: "get escaped space", method: "GET", path: "/v1/counters/pages/a%20b", fast: true},
		{name: "incr query", method: "POST", path: "/v1/counters/pages/home/incr?x=1", fast: false},
		{name: "incr bad query", method: "POST", path: "/v1/counters/pages/home/incr?x=%G1", fast: false},
		{name: "incr empty namespace", method: "POST", path: "/v1/counters//home/incr", fast: false},
		{name: "incr empty key", method: "POST", path: "/v1/counters/pages//incr", fast: false},
		{name: "incr trailing slash", method: "POST", path: "/v1/counters/pages/home/incr/", fast: false},
		{name: "incr by GET", method: "GET", path: "/v1/counters/pages/home/incr", fast: false},
		{name: "incr by PUT", method: "PUT", path: "/v1/counters/pages/home/incr", fast: false},
		{name: "other op", method: "POST", path: "/v1/counters/pages/home/add", fast: false},
		{name: "post counter", method: "POST", path: "/v1/counters/pages/home", fast: false},
		{name: "get", method: "GET", path: "/v1/counters/pages/home", fast: true},
		{name: "get big", method: "GET", path: "/v1/counters/pages/big", fast: true},
		{name: "get never written", method: "GET", path: "/v1/counters/pages/never", fast: true},
		{name: "get unknown namespace", method: "GET", path: "/v1/counters/nosuch/k", fast: true},
		{name: "get bad namespace", method: "GET", path: "/v1/counters/-x/k", fast: true},
		{name: "get key too long", method: "GET", path: "/v1/counters/pages/" + longKey, fast: true},
		{name: "get key to escape", method: "GET", path: "/v1/counters/pages/a<b>&\"c\"", fast: true},
		{name: "get key unicode", method: "GET", path: "/v1/counters/pages/caf\u00e9", fast: true},
		{name: "get key named series", method: "GET", path: "/v1/counters/pages/series", fast: true},
		{name: "get escaped key", method: "GET", path: "/v1/counters/pages/a%2Fb", fast: false},
		{name: "get consistency", method: "GET", path: "/v1/counters/pages/home?consistency=local", fast: false},
		{name: "get bad at", method: "GET", path: "/v1/counters/pages/home?at=yesterday", fast: false},
		{name: "get bad query", method: "GET", path: "/v1/counters/pages/home?x=%G1", fast: false},
		{name: "get series", method: "GET", path: "/v1/counters/pages/home/series", fast: false},
		{name: "get other", method: "GET", path: "/v1/counters/pages/home/other", fast: false},
		{name: "head", method: "HEAD", path: "/v1/counters/pages/home", fast: false},
		{name: "list", method: "GET", path: "/v1/counters/pages", fast: false},
		{name: "healthz", method: "GET", path: "/healthz", fast: false},
		// An approximate namespace answers estimates.
		{name: "put approximate", method: "PUT", path: "/v1/namespaces/approx", ct: "application/json", body: `{"type":"approximate"}`, fast: false},
		{name: "incr approximate", method: "POST", path: "/v1/counters/approx/k/incr", ct: "application/json", body: `{"by":3}`, fast: true},
		{name: "get approximate", method: "GET", path: "/v1/counters/approx/k", fast: true},
		// Overflow and bounds are the node's errors.
		{name: "reset near max", method: "PUT", path: "/v1/counters/pages/max", ct: "application/json", body: `{"value":9223372036854775000}`, fast: false},
		{name: "incr overflow", method: "POST", path: "/v1/counters/pages/max/incr", ct: "application/json", body: `{"by":1000}`, fast: true},
		{name: "get max", method: "GET", path: "/v1/counters/pages/max", fast: true},
		{name: "put bounded", method: "PUT", path: "/v1/namespaces/exact", ct: "application/json", body: `{"type":"exact","min":0}`, fast: false},
		{name: "decr below min", method: "POST", path: "/v1/counters/exact/k/decr", fast: true},
	}
	rl := func(name, path, ct, body string, fast bool) fastCase {
		return fastCase{name: "ratelimit " + name, method: "POST", path: path, ct: ct, body: body, fast: fast}
	}
	for _, body := range rateLimitBodies {
		cs = append(cs, rl(fmt.Sprintf("body %q", body), "/v1/ratelimit/api/user-1", "application/json", body, true))
	}
	cs = append(cs,
		// Refused: the third request of a limit of 2.
		rl("allowed 1", "/v1/ratelimit/api/two", "application/json", `{"limit":2,"window":"1m"}`, true),
		rl("allowed 2", "/v1/ratelimit/api/two", "application/json", `{"limit":2,"window":"1m"}`, true),
		rl("refused", "/v1/ratelimit/api/two", "application/json", `{"limit":2,"window":"1m"}`, true),
		rl("refused by cost", "/v1/ratelimit/api/cost", "application/json", `{"limit":5,"window":"1s","cost":5}`, true),
		rl("refused by cost again", "/v1/ratelimit/api/cost", "application/json", `{"cost":5,"limit":5,"window":"1s"}`, true),
		rl("no content type", "/v1/ratelimit/api/user-2", "", `{"limit":10,"window":"1h"}`, true),
		rl("charset", "/v1/ratelimit/api/user-2", "application/json; charset=utf-8", `{"limit":10,"window":"1h"}`, true),
		rl("msgpack", "/v1/ratelimit/api/user-2", "application/msgpack", "\x82\xa5limit\x0a\xa6window\xa21h", true),
		rl("form", "/v1/ratelimit/api/user-2", "application/x-www-form-urlencoded", `limit=10`, true),
		rl("no body", "/v1/ratelimit/api/user-2", "", "", true),
		rl("long body", "/v1/ratelimit/api/user-3", "application/json", `{"limit":10,"window":"1h"`+strings.Repeat(" ", 600)+`}`, true),
		rl("body too large", "/v1/ratelimit/api/user-3", "application/json", `{"limit":10,"window":"1h"}`+strings.Repeat(" ", MaxBodyBytes), true),
		rl("bad namespace", "/v1/ratelimit/API/user-1", "application/json", `{"limit":10,"window":"1h"}`, true),
		rl("key too long", "/v1/ratelimit/api/"+longKey, "application/json", `{"limit":10,"window":"1h"}`, true),
		rl("key to escape", "/v1/ratelimit/api/a<b>&\"c\"", "application/json", `{"limit":10,"window":"1h"}`, true),
		rl("escaped key", "/v1/ratelimit/api/a%2Fb", "application/json", `{"limit":10,"window":"1h"}`, false),
		rl("query", "/v1/ratelimit/api/user-1?x=1", "application/json", `{"limit":10,"window":"1h"}`, false),
		rl("empty key", "/v1/ratelimit/api/", "application/json", `{"limit":10,"window":"1h"}`, false),
		rl("extra segment", "/v1/ratelimit/api/user-1/more", "application/json", `{"limit":10,"window":"1h"}`, false),
		fastCase{name: "ratelimit by GET", method: "GET", path: "/v1/ratelimit/api/user-1", fast: false},
	)
	return cs
}

// rateLimitBodies are bodies of POST /v1/ratelimit for the decoder tests:
// the ones parseRateLimitFast takes (first) and others.
var rateLimitBodies = []string{
	`{"limit":100,"window":"1m"}`, `{"window":"1m","limit":100}`, `{"limit":100,"window":"1m","cost":3}`,
	`{"cost":3,"window":"1m","limit":100}`, " {\r\n\t\"limit\" : 7 ,\"window\":\"10s\" } \n", `{}`,
	`{"limit":0,"window":"1m"}`, `{"limit":-1,"window":"1m"}`, `{"limit":100}`, `{"window":"1m"}`,
	`{"limit":100,"window":"1m","cost":101}`, `{"limit":100,"window":"1m","cost":0}`,
	`{"limit":100,"window":""}`, `{"limit":100,"window":"367d"}`, `{"limit":100,"window":"-1s"}`,
	`{"limit":100,"window":"1x"}`, `{"limit":100,"window":"0s"}`, `{"limit":1,"window":"1ms"}`,
	`{"limit":123456789012345,"window":"1d"}`,
	// Left to encoding/json:
	`{"limit":9007199254740991,"window":"1m"}`, `{"limit":9007199254740992,"window":"1m"}`,
	`{"limit":1e3,"window":"1m"}`, `{"limit":1.5,"window":"1m"}`, `{"limit":"5","window":"1m"}`,
	`{"limit":null,"window":"1m"}`, `{"limit":5,"window":null}`, `{"limit":5,"window":60}`,
	`{"LIMIT":5,"window":"1m"}`, `{"Limit":5,"Window":"1m"}`, `{"limit":5,"limit":6,"window":"1m"}`,
	`{"limit":5,"window":"1m","window":"1h"}`, `{"limit":5,"window":"1m","burst":5}`,
	`{"limit":5,"window":"\u0031m"}`, `{"limit":5,"window":"1m\u0000"}`, `{"li\u006dit":5,"window":"1m"}`,
	`{"limit":5,"window":"1m",}`, `{"limit":5,"window":"1m"} {}`, `{"limit":5,"window":"1m"`, `[1]`, `{"limit":5 "window":"1m"}`,
	`{"limit":05,"window":"1m"}`, `{"limit":-0,"window":"1m"}`, "{\"limit\":5,\"window\":\"1\xffm\"}", ` `, `null`,
}

// authCases are requests of the fast path's routes against a server with
// tokens (testTokensFile).
func authCases() []fastCase {
	return []fastCase{
		{name: "no token", method: "POST", path: "/v1/counters/pages/home/incr", fast: true},
		{name: "no token get", method: "GET", path: "/v1/counters/pages/home", fast: true},
		{name: "unknown token", method: "POST", path: "/v1/counters/pages/home/incr", token: "Bearer " + tokUnknown, fast: true},
		{name: "not bearer", method: "POST", path: "/v1/counters/pages/home/incr", token: "Basic " + tokPages, fast: true},
		{name: "empty bearer", method: "GET", path: "/v1/counters/pages/home", token: "Bearer ", fast: true},
		{name: "lower-case bearer", method: "POST", path: "/v1/counters/pages/home/incr", token: "bearer " + tokPages, fast: true},
		{name: "read token writes", method: "POST", path: "/v1/counters/pages/home/incr", token: "Bearer " + tokRead, fast: true},
		{name: "read token decrements", method: "POST", path: "/v1/counters/pages/home/decr", token: "Bearer " + tokRead, fast: true},
		{name: "read token reads", method: "GET", path: "/v1/counters/pages/home", token: "Bearer " + tokRead, fast: true},
		{name: "writer in its namespace", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":3}`, token: "Bearer " + tokPages, fast: true},
		{name: "writer in a pattern namespace", method: "POST", path: "/v1/counters/clicks-eu/home/incr", token: "Bearer " + tokPages, fast: true},
		{name: "writer in another namespace", method: "POST", path: "/v1/counters/views/home/incr", token: "Bearer " + tokPages, fast: true},
		{name: "writer reads its namespace", method: "GET", path: "/v1/counters/pages/home", token: "Bearer " + tokPages, fast: true},
		{name: "writer reads another namespace", method: "GET", path: "/v1/counters/views/home", token: "Bearer " + tokPages, fast: true},
		{name: "bad namespace with a token", method: "POST", path: "/v1/counters/Pages/home/incr", token: "Bearer " + tokPages, fast: true},
		{name: "bad namespace without a token", method: "POST", path: "/v1/counters/Pages/home/incr", fast: true},
		{name: "bad key with a token", method: "POST", path: "/v1/counters/pages/" + strings.Repeat("k", node.MaxKeyBytes+1) + "/incr", token: "Bearer " + tokPages, fast: true},
		{name: "bad body with a token", method: "POST", path: "/v1/counters/pages/home/incr", ct: "application/json", body: `{"by":"x"}`, token: "Bearer " + tokPages, fast: true},
		{name: "admin", method: "POST", path: "/v1/counters/views/home/incr", token: "Bearer " + tokAdmin, fast: true},
		{name: "admin reads", method: "GET", path: "/v1/counters/views/home", token: "Bearer " + tokAdmin, fast: true},
		{name: "rate limit without a token", method: "POST", path: "/v1/ratelimit/pages/u1", ct: "application/json", body: `{"limit":5,"window":"1m"}`, fast: true},
		{name: "rate limit with a read token", method: "POST", path: "/v1/ratelimit/pages/u1", ct: "application/json", body: `{"limit":5,"window":"1m"}`, token: "Bearer " + tokRead, fast: true},
		{name: "rate limit in its namespace", method: "POST", path: "/v1/ratelimit/pages/u1", ct: "application/json", body: `{"limit":5,"window":"1m"}`, token: "Bearer " + tokPages, fast: true},
		{name: "rate limit in another namespace", method: "POST", path: "/v1/ratelimit/views/u1", ct: "application/json", body: `{"limit":5,"window":"1m"}`, token: "Bearer " + tokPages, fast: true},
		{name: "escaped with a token", method: "POST", path: "/v1/counters/pages/a%2Fb/incr", token: "Bearer " + tokPages, fast: false},
		{name: "escaped namespace with a token", method: "POST", path: "/v1/counters/p%61ges/home/incr", token: "Bearer " + tokPages, fast: false},
		{name: "query with a token", method: "GET", path: "/v1/counters/pages/home?consistency=local", token: "Bearer " + tokRead, fast: false},
		{name: "healthz open", method: "GET", path: "/healthz", fast: false},
	}
}

// answer is what a client sees of an answer, but its Date.
type answer struct {
	status int
	header http.Header
	body   string
}

// send sends c to the server at base as it is written.
func send(t *testing.T, base string, c fastCase) answer {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	if c.body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	if c.ct != "" {
		req.Header.Set("Content-Type", c.ct)
	}
	if c.token != "" {
		req.Header.Set("Authorization", c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", c.name, err)
	}
	resp.Header.Del("Date")
	return answer{resp.StatusCode, resp.Header, string(body)}
}

// latencyCounts returns the number of observations of each series of the
// HTTP latency histogram, by label set.
func latencyCounts(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "countmesh_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(labels, ",")] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

// TestFastPathMatchesChi sends the same requests to a server with the fast
// path and to one without it (chi, encoding/json), each over its own node
// with a clock that stands still, and checks that every answer is the same:
// status, headers but Date, and body, byte for byte; and that both record
// the same latency series. It also checks which requests the fast path
// takes, so that the comparison covers it.
func TestFastPathMatchesChi(t *testing.T) {
	for _, tokens := range []bool{false, true} {
		t.Run(fmt.Sprintf("tokens=%v", tokens), func(t *testing.T) {
			cases := fastCases()
			if tokens {
				cases = authCases()
			}
			fast, fastReg := newCompareServer(t, false, tokens)
			slow, slowReg := newCompareServer(t, true, tokens)
			fastSrv, slowSrv := httptest.NewServer(fast), httptest.NewServer(slow)
			t.Cleanup(fastSrv.Close)
			t.Cleanup(slowSrv.Close)
			for _, c := range cases {
				want := send(t, slowSrv.URL, c)
				got := send(t, fastSrv.URL, c)
				if got.status != want.status || got.body != want.body {
					t.Errorf("%s: %s %s answers %d %q, chi's path %d %q", c.name, c.method, c.path, got.status, got.body, want.status, want.body)
				}
				if !equalHeaders(got.header, want.header) {
					t.Errorf("%s: headers %v, chi's path %v", c.name, got.header, want.header)
				}
			}
			if got, want := latencyCounts(t, fastReg), latencyCounts(t, slowReg); !mapsEqual(got, want) {
				t.Errorf("latency series with the fast path:\n%v\nwithout:\n%v", got, want)
			}

			// Which requests the fast path takes, on a third server.
			probe, _ := newCompareServer(t, false, tokens)
			for _, c := range cases {
				if len(c.body) > 1<<20 {
					continue
				}
				// The request as it comes off the wire: http.Client escapes
				// the path as URL.RequestURI does.
				u, err := url.Parse(c.path)
				if err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest(c.method, u.RequestURI(), strings.NewReader(c.body))
				if c.ct != "" {
					r.Header.Set("Content-Type", c.ct)
				}
				if c.token != "" {
					r.Header.Set("Authorization", c.token)
				}
				if took := probe.serveFast(httptest.NewRecorder(), r); took != c.fast {
					t.Errorf("%s: %s %s: fast path took it: %v, want %v", c.name, c.method, c.path, took, c.fast)
				}
			}
		})
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// incrBodies are bodies of incr for the decoder tests: the ones
// parseIncrFast takes (first) and others.
var incrBodies = []string{
	``, ` `, "\t\r\n", `{}`, ` { } `, `{"by":1}`, `{"by":-1}`, `{"by":0}`, `{"by":-0}`, `{"by":42}`,
	`{ "by" : 42 }`, "{\n\t\"by\":\r\n-7\n}\n", `{"by":999999999999999}`, `{"by":-999999999999999}`,
	// Not taken: encoding/json decides.
	`{"by":1234567890123456}`, `{"by":9007199254740991}`, `{"by":9007199254740992}`, `{"by":-9007199254740992}`,
	`{"by":99999999999999999999}`, `{"by":1.0}`, `{"by":1e2}`, `{"by":1E2}`, `{"by":01}`, `{"by":-}`,
	`{"by":+1}`, `{"by":"1"}`, `{"by":null}`, `{"by":true}`, `{"by":[1]}`, `{"By":1}`, `{"BY":1}`,
	`{"b\u0079":1}`, `{"by":1,}`, `{"by":1,"by":2}`, `{"by":1,"id":"x"}`, `{"id":"x","by":1}`,
	`{"by":1}x`, `{"by":1}{}`, `{"by" 1}`, `{"by":1`, `{by:1}`, `{"by":1}` + "\v", "\v{}", "\u00a0{}",
	`[]`, `null`, `1`, `"by"`, "\xff", `{"by":1}` + "\x00",
}

// TestParseIncrFast checks that parseIncrFast takes the common bodies, and
// that whatever it takes decodes as through encoding/json
// (decodeIncrGeneral).
func TestParseIncrFast(t *testing.T) {
	mustTake := map[string]bool{}
	for _, b := range incrBodies[:14] {
		mustTake[b] = true
	}
	for _, ct := range []string{"", "application/json", "text/plain", "application/json; charset=utf-8"} {
		for _, body := range incrBodies {
			got, ok := parseIncrFast(ct, []byte(body))
			wantOK := mustTake[body] && (ct == "" || ct == "application/json")
			if ok != wantOK {
				t.Errorf("parseIncrFast(%q, %q) ok = %v, want %v", ct, body, ok, wantOK)
			}
			if !ok {
				continue
			}
			want, err := decodeIncrGeneral(ct, []byte(body))
			if err != nil {
				t.Errorf("parseIncrFast(%q, %q) took a body encoding/json refuses: %v", ct, body, err)
				continue
			}
			if got.by != want.by || !equalWriteOptions(got.opts, want.opts) {
				t.Errorf("parseIncrFast(%q, %q) = %+v, encoding/json %+v", ct, body, got, want)
			}
		}
	}
}

func equalWriteOptions(a, b node.WriteOptions) bool {
	return a.ID == b.ID && a.Consistency == b.Consistency && a.At.Equal(b.At) && len(a.Labels) == 0 && len(b.Labels) == 0
}

// FuzzParseIncrFast checks that every body parseIncrFast takes decodes the
// same through encoding/json.
func FuzzParseIncrFast(f *testing.F) {
	for _, b := range incrBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got, ok := parseIncrFast("application/json", []byte(body))
		if !ok {
			return
		}
		want, err := decodeIncrGeneral("application/json", []byte(body))
		if err != nil {
			t.Fatalf("parseIncrFast took %q, which encoding/json refuses: %v", body, err)
		}
		if got.by != want.by || !equalWriteOptions(got.opts, want.opts) {
			t.Fatalf("parseIncrFast(%q) = %+v, encoding/json %+v", body, got, want)
		}
	})
}

// FuzzParseRateLimitFast checks that every body parseRateLimitFast takes
// decodes the same through encoding/json, request and refusal alike.
func FuzzParseRateLimitFast(f *testing.F) {
	for _, b := range rateLimitBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		b, ok := parseRateLimitFast("application/json", []byte(body))
		if !ok {
			return
		}
		got, gotErr := rateLimitRequest("api", "k", b)
		want, wantErr := decodeRateLimit("api", "k", "application/json", []byte(body))
		if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("body %q: fast %+v %v, encoding/json %+v %v", body, got, gotErr, want, wantErr)
		}
	})
}

// encodeJSON is what writeJSON writes for v.
func encodeJSON(t *testing.T, v any) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestFastEncoders compares the fast encoders with encoding/json, and
// checks that they leave to it what they cannot write the same.
func TestFastEncoders(t *testing.T) {
	keys := []string{"k", "home", "a.b-c_d", "x y", "~!@#$%^*()_+{}|:?", strings.Repeat("k", node.MaxKeyBytes)}
	values := []int64{0, 1, -1, 42, 1 << 53, -1 << 63, 1<<63 - 1}
	for _, key := range keys {
		for _, v := range values {
			for _, dup := range []bool{false, true} {
				w := httptest.NewRecorder()
				status, ok := writeValueFast(w, "pages", key, v, dup)
				if !ok || status != 200 || w.Code != 200 {
					t.Fatalf("writeValueFast(%q, %d, %v): %d %v", key, v, dup, status, ok)
				}
				want := encodeJSON(t, valueAnswer{NS: "pages", Key: key, Value: v, Duplicate: dup})
				if got := w.Body.String(); got != want {
					t.Errorf("writeValueFast wrote %q, encoding/json %q", got, want)
				}
				if ct := w.Header().Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
		}
	}
	times := []time.Time{
		{},
		time.Date(2026, 11, 30, 12, 34, 56, 0, time.UTC),
		time.Date(2026, 11, 30, 12, 34, 56, 789000000, time.UTC),
		time.Date(2026, 11, 30, 12, 34, 56, 1, time.UTC),
		time.Date(2026, 11, 30, 12, 34, 56, 120000000, time.FixedZone("CET", 3600)),
		time.UnixMilli(1764500000123),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for _, key := range keys {
		for _, v := range values {
			for _, at := range times {
				for _, est := range []bool{false, true} {
					c := node.Counter{Value: v, UpdatedAt: at, Estimate: est, ErrorBound: v / 3}
					w := httptest.NewRecorder()
					if _, ok := writeCounterFast(w, "pages", key, c); !ok {
						t.Fatalf("writeCounterFast(%q, %+v) did not write", key, c)
					}
					ans := counterAnswer{NS: "pages", Key: key, Value: v, Estimate: est}
					if !at.IsZero() {
						u := at.UTC()
						ans.UpdatedAt = &u
					}
					if est {
						b := c.ErrorBound
						ans.ErrorBound = &b
					}
					if got, want := w.Body.String(), encodeJSON(t, ans); got != want {
						t.Errorf("writeCounterFast wrote %q, encoding/json %q", got, want)
					}
				}
			}
		}
	}
	// What they leave to encoding/json.
	for _, key := range []string{`a"b`, `a\b`, "a<b", "a>b", "a&b", "caf\u00e9", "a\u2028b", "a\x7fb"} {
		if _, ok := writeValueFast(httptest.NewRecorder(), "pages", key, 1, false); ok {
			t.Errorf("writeValueFast wrote key %q, which encoding/json escapes", key)
		}
		if _, ok := writeCounterFast(httptest.NewRecorder(), "pages", key, node.Counter{}); ok {
			t.Errorf("writeCounterFast wrote key %q, which encoding/json escapes", key)
		}
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []node.Counter{
		{Resolution: "1m", AsOf: now}, {AsOf: now}, {Window: "1h", BucketStart: now}, {BucketStart: now},
		{UpdatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, {UpdatedAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, ok := writeCounterFast(httptest.NewRecorder(), "pages", "k", c); ok {
			t.Errorf("writeCounterFast wrote %+v, which it cannot write as encoding/json does", c)
		}
	}
}

// failingBody returns data, then err.
type failingBody struct {
	data []byte
	err  error
}

func (b *failingBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (*failingBody) Close() error { return nil }

// TestDecodeIncrRequestMatchesDecodeBody checks that reading an
// increment's body into a pooled buffer gives the body, or the error,
// that readBody gives, for bodies shorter and longer than the buffer and
// bodies whose reading fails.
func TestDecodeIncrRequestMatchesDecodeBody(t *testing.T) {
	long := `{"by":2` + strings.Repeat(" ", 2*smallBodyBytes) + `}`
	cut := fmt.Errorf("connection reset by peer")
	for _, c := range []struct {
		name string
		body func() io.ReadCloser
	}{
		{"empty", func() io.ReadCloser { return http.NoBody }},
		{"small", func() io.ReadCloser { return io.NopCloser(strings.NewReader(`{"by":3}`)) }},
		{"exactly the buffer", func() io.ReadCloser {
			return io.NopCloser(strings.NewReader(`{"by":4` + strings.Repeat(" ", smallBodyBytes-len(`{"by":4}`)) + `}`))
		}},
		{"long", func() io.ReadCloser { return io.NopCloser(strings.NewReader(long)) }},
		{"too large", func() io.ReadCloser {
			return io.NopCloser(io.MultiReader(strings.NewReader(`{"by":1}`), strings.NewReader(strings.Repeat(" ", MaxBodyBytes))))
		}},
		{"fails early", func() io.ReadCloser { return &failingBody{[]byte(`{"by"`), cut} }},
		{"fails late", func() io.ReadCloser { return &failingBody{[]byte(long), cut} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/counters/pages/home/incr", nil)
			r.Header.Set("Content-Type", "application/json")
			r.Body = c.body()
			got, gotErr := decodeIncrRequest(httptest.NewRecorder(), r)
			r.Body = c.body()
			want, wantErr := decodeBody(httptest.NewRecorder(), r, decodeIncrGeneral)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || got.by != want.by {
				t.Fatalf("decodeIncrRequest = %+v, %v; decodeBody %+v, %v", got, gotErr, want, wantErr)
			}
			if gotErr != nil {
				gs, gc := classify(gotErr)
				ws, wc := classify(wantErr)
				if gs != ws || gc != wc {
					t.Fatalf("error classified %d %s, decodeBody's %d %s", gs, gc, ws, wc)
				}
			}
		})
	}
}
