package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/node"
)

func TestBatchGet(t *testing.T) {
	a := newTestAPI(t, nil)
	if s, b := a.json("POST", "/v1/batch", `{"ops":[{"ns":"pages","key":"a","by":3},{"ns":"clicks","key":"b","by":-2}]}`); s != 200 {
		t.Fatalf("batch: %d %v", s, b)
	}
	s, b := a.json("POST", "/v1/batch/get", `{"keys":[{"ns":"clicks","key":"b"},{"ns":"pages","key":"never"},{"ns":"pages","key":"a"}],"consistency":"local"}`)
	if s != 200 || fmt.Sprint(b["values"]) != "[-2 0 3]" {
		t.Fatalf("batch/get: %d %v", s, b)
	}
	body, err := msgpack.Marshal(map[string]any{"keys": []map[string]string{{"ns": "pages", "key": "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if s, b := a.do("POST", "/v1/batch/get", "application/msgpack", body); s != 200 || fmt.Sprint(b["values"]) != "[3]" {
		t.Fatalf("msgpack batch/get: %d %v", s, b)
	}
	if s, b := a.json("POST", "/v1/batch/get", `{}`); s != 200 || fmt.Sprint(b["values"]) != "[]" {
		t.Fatalf("batch/get of no keys: %d %v", s, b)
	}

	readsBefore := metricValue(t, a, "countmesh_reads_total")
	many := `{"keys":[` + strings.Repeat(`{"ns":"pages","key":"a"},`, node.MaxGetMany) + `{"ns":"pages","key":"a"}]}`
	for _, tc := range []struct {
		name, ct, body string
		status         int
		code, message  string
	}{
		{"bad namespace", "", `{"keys":[{"ns":"pages","key":"a"},{"ns":"Bad","key":"a"}]}`, 400, "invalid_argument", "key 1: namespace"},
		{"empty key", "", `{"keys":[{"ns":"pages","key":""}]}`, 400, "invalid_argument", "key 0: key must be"},
		{"bad consistency", "", `{"keys":[{"ns":"pages","key":"a"}],"consistency":"most"}`, 400, "invalid_argument", "consistency"},
		{"unknown field", "", `{"keys":[],"ids":[]}`, 400, "invalid_argument", "unknown field"},
		{"unknown msgpack field", "application/msgpack", "\x81\xa3ids\x90", 400, "invalid_argument", "ids"},
		{"trailing msgpack", "application/msgpack", "\x80\x80", 400, "invalid_argument", "data after"},
		{"not JSON", "text/plain", "keys", 415, "unsupported_media_type", ""},
		{"too many", "", many, 413, "too_large", "at most 10000 keys, got 10001"},
	} {
		s, b := a.do("POST", "/v1/batch/get", tc.ct, []byte(tc.body))
		if s != tc.status || errCode(b) != tc.code || !strings.Contains(errMessage(b), tc.message) {
			t.Errorf("%s: %d %v; want %d %s with %q", tc.name, s, b, tc.status, tc.code, tc.message)
		}
	}
	if got := metricValue(t, a, "countmesh_reads_total"); got != readsBefore {
		t.Errorf("refused reads read %v counters", got-readsBefore)
	}
}

func TestBatchGetChecksEveryKey(t *testing.T) {
	a, _, _, _ := newAuthAPI(t, nil)
	w := a.as(tokPages)
	if s, b := w.json("POST", "/v1/batch/get", `{"keys":[{"ns":"pages","key":"a"},{"ns":"views","key":"a"}]}`); s != 403 || errCode(b) != "permission_denied" || !strings.Contains(errMessage(b), "key 1") {
		t.Fatalf("batch/get with a foreign key: %d %v", s, b)
	}
	if s, b := w.json("POST", "/v1/batch/get", `{"keys":[{"ns":"pages","key":"a"},{"ns":"clicks-x","key":"a"}]}`); s != 200 || fmt.Sprint(b["values"]) != "[0 0]" {
		t.Fatalf("batch/get in its namespaces: %d %v", s, b)
	}
	if s, b := a.as(tokRead).json("POST", "/v1/batch/get", `{"keys":[{"ns":"views","key":"a"}]}`); s != 200 {
		t.Fatalf("batch/get with a read token: %d %v", s, b)
	}
	if s, b := a.json("POST", "/v1/batch/get", `{"keys":[]}`); s != 401 {
		t.Fatalf("batch/get without a token: %d %v", s, b)
	}
}

// metricValue reads an unlabelled metric from GET /metrics.
func metricValue(t *testing.T, a *testAPI, name string) float64 {
	t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}
