package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/node"
)

// snapshot captures what a refused request must not change: the counters of
// namespace "c", and every namespace config.
func (a *testAPI) snapshot() string {
	a.t.Helper()
	var b strings.Builder
	for _, key := range []string{"a", "big", "x"} {
		fmt.Fprintf(&b, "%s=%d ", key, a.value("c", key))
	}
	_, list := a.json("GET", "/v1/counters/c?limit=1000", "")
	js, _ := json.Marshal(list)
	b.Write(js)
	_, nss := a.json("GET", "/v1/namespaces", "")
	js, _ = json.Marshal(nss)
	b.Write(js)
	return b.String()
}

func TestRefusedRequestsChangeNothing(t *testing.T) {
	a := newTestAPI(t, nil)
	a.json("POST", "/v1/counters/c/a/incr", `{"by":5}`)
	a.json("PUT", "/v1/counters/c/big", fmt.Sprintf(`{"value":%d}`, int64(math.MaxInt64-3)))
	a.json("PUT", "/v1/namespaces/typed", `{"type":"exact"}`)
	a.json("POST", "/v1/counters/typed/k/incr", "")

	bigBody := `{"ops":[` + strings.Repeat(`{"ns":"c","key":"a"},`, node.MaxBatchOps) + `{"ns":"c","key":"a"}]}`
	hugeBody := `{"by":1,"id":"` + strings.Repeat("x", 9<<20) + `"}`
	tests := []struct {
		name, method, path, ct, body string
		status                       int
		code                         string
	}{
		{"malformed JSON", "POST", "/v1/counters/c/a/incr", "application/json", `{"by":`, 400, "invalid_argument"},
		{"unknown field", "POST", "/v1/counters/c/a/incr", "application/json", `{"bye":1}`, 400, "invalid_argument"},
		{"trailing data", "POST", "/v1/counters/c/a/incr", "application/json", `{"by":1} {"by":1}`, 400, "invalid_argument"},
		{"bad namespace", "POST", "/v1/counters/Bad!/a/incr", "", "", 400, "invalid_argument"},
		{"namespace too long", "POST", "/v1/counters/" + strings.Repeat("n", 65) + "/a/incr", "", "", 400, "invalid_argument"},
		{"control character in key", "POST", "/v1/counters/c/a%01b/incr", "", "", 400, "invalid_argument"},
		{"key too long", "POST", "/v1/counters/c/" + strings.Repeat("k", 513) + "/incr", "", "", 400, "invalid_argument"},
		{"fractional by", "POST", "/v1/counters/c/a/incr", "application/json", `{"by":1.5}`, 400, "invalid_argument"},
		{"string by", "POST", "/v1/counters/c/a/incr", "application/json", `{"by":"2"}`, 400, "invalid_argument"},
		{"by of 2^53", "POST", "/v1/counters/c/a/incr", "application/json", `{"by":9007199254740992}`, 400, "invalid_argument"},
		{"bad time", "POST", "/v1/counters/c/a/incr", "application/json", `{"at":"yesterday"}`, 400, "invalid_argument"},
		{"bad consistency", "POST", "/v1/counters/c/a/incr", "application/json", `{"consistency":"strong"}`, 400, "invalid_argument"},
		{"too many labels", "POST", "/v1/counters/c/a/incr", "application/json", `{"labels":{"a":"1","b":"1","c":"1","d":"1","e":"1","f":"1","g":"1","h":"1","i":"1"}}`, 400, "invalid_argument"},
		{"reset without value", "PUT", "/v1/counters/c/a", "application/json", `{}`, 400, "invalid_argument"},
		{"bad read time", "GET", "/v1/counters/c/a?at=noon", "", "", 400, "invalid_argument"},
		{"bad list limit", "GET", "/v1/counters/c?limit=0", "", "", 400, "invalid_argument"},
		{"bad cursor", "GET", "/v1/counters/c?cursor=!!", "", "", 400, "invalid_argument"},
		{"batch with one bad op", "POST", "/v1/batch", "application/json", `{"ops":[{"ns":"c","key":"a"},{"ns":"c","key":""}]}`, 400, "invalid_argument"},
		{"batch with a bad namespace", "POST", "/v1/batch", "application/json", `{"ops":[{"ns":"c","key":"x"},{"ns":"C","key":"x"}]}`, 400, "invalid_argument"},
		{"malformed msgpack", "POST", "/v1/batch", "application/msgpack", "\x81\xa3ops\x91\x81\xa2ns", 400, "invalid_argument"},
		{"bad return", "POST", "/v1/batch?return=all", "application/json", `{"ops":[]}`, 400, "invalid_argument"},
		{"bad duration", "PUT", "/v1/namespaces/c", "application/json", `{"ttl":"soon"}`, 400, "invalid_argument"},
		{"bad type", "PUT", "/v1/namespaces/c", "application/json", `{"type":"precise"}`, 400, "invalid_argument"},
		{"bad window", "PUT", "/v1/namespaces/c", "application/json", `{"windows":["2m"]}`, 400, "invalid_argument"},
		{"retention of a window not kept", "PUT", "/v1/namespaces/c", "application/json", `{"retention":{"1h":"2d"}}`, 400, "invalid_argument"},
		{"min above max", "PUT", "/v1/namespaces/c", "application/json", `{"min":5,"max":1}`, 400, "invalid_argument"},
		{"unknown route", "GET", "/v1/nothing", "", "", 404, "not_found"},
		{"unknown namespace", "GET", "/v1/namespaces/missing", "", "", 404, "not_found"},
		{"wrong method on counter", "PATCH", "/v1/counters/c/a", "application/json", `{"value":1}`, 405, "method_not_allowed"},
		{"wrong method on batch", "GET", "/v1/batch", "", "", 405, "method_not_allowed"},
		{"type change with counters", "PUT", "/v1/namespaces/typed", "application/json", `{"type":"approximate"}`, 409, "conflict"},
		{"body over 8 MiB", "POST", "/v1/counters/c/a/incr", "application/json", hugeBody, 413, "too_large"},
		{"batch over 10,000 ops", "POST", "/v1/batch", "application/json", bigBody, 413, "too_large"},
		{"text body", "POST", "/v1/counters/c/a/incr", "text/plain", "by=1", 415, "unsupported_media_type"},
		{"XML batch", "POST", "/v1/batch", "application/xml", "<ops/>", 415, "unsupported_media_type"},
		{"form body", "POST", "/v1/counters/c/a/incr", "application/x-www-form-urlencoded", "by=1", 415, "unsupported_media_type"},
		{"overflow", "POST", "/v1/counters/c/big/incr", "application/json", `{"by":4}`, 422, "overflow"},
		{"underflow", "POST", "/v1/counters/c/x/decr", "application/json", `{"by":9007199254740991}`, 200, ""},
		{"batch overflow in its last op", "POST", "/v1/batch", "application/json", `{"ops":[{"ns":"c","key":"a"},{"ns":"c","key":"x","by":1},{"ns":"c","key":"big","by":4}]}`, 422, "overflow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.snapshot()
			status, body := a.do(tc.method, tc.path, tc.ct, []byte(tc.body))
			if status != tc.status || errCode(body) != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.code)
			}
			if status == 200 {
				return // a control case: it did change something
			}
			if msg := body["error"].(map[string]any)["message"].(string); msg == "" || strings.Contains(msg, "node: ") {
				t.Fatalf("error message %q: empty, or with an internal package prefix", msg)
			}
			if after := a.snapshot(); after != before {
				t.Fatalf("refused request changed state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestOverloadedChangesNothing(t *testing.T) {
	a := newTestAPI(t, func(c *node.Config) { c.MaxPending = 1 })
	before := a.snapshot()
	status, body := a.json("POST", "/v1/batch", `{"ops":[{"ns":"c","key":"a"},{"ns":"c","key":"x"}]}`)
	if status != 429 || errCode(body) != "overloaded" {
		t.Fatalf("got %d %v, want 429 overloaded", status, body)
	}
	if after := a.snapshot(); after != before {
		t.Fatalf("refused batch changed state:\nbefore %s\nafter  %s", before, after)
	}
}

func TestUnavailableChangesNothing(t *testing.T) {
	fs := vfs.NewMem()
	a := newTestAPI(t, func(c *node.Config) { c.Store.FS = fs })
	a.json("POST", "/v1/counters/c/a/incr", `{"by":3}`)
	if err := a.node.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/counters/c/a/incr", "/v1/counters/c/b/incr"} {
		status, body := a.json("POST", path, `{"by":1}`)
		if status != 503 || errCode(body) != "unavailable" {
			t.Fatalf("write to a closed node: %d %v, want 503 unavailable", status, body)
		}
	}
	if s, _ := a.json("GET", "/readyz", ""); s != 503 {
		t.Fatalf("readyz of a closed node: %d", s)
	}
	cfg := node.DefaultConfig()
	cfg.Name = "test-node"
	cfg.Store.Dir = "data"
	cfg.Store.FS = fs
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for key, want := range map[string]int64{"a": 3, "b": 0} {
		c, err := n.Get(context.Background(), "c", key, node.ReadOptions{})
		if err != nil || c.Value != want {
			t.Fatalf("after reopening, c/%s = %d (%v), want %d", key, c.Value, err, want)
		}
	}
}
