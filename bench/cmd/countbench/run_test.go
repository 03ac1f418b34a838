package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// fakeNode is a stand-in countd that checks what countbench sends.
type fakeNode struct {
	t   *testing.T
	srv *httptest.Server
	mu  sync.Mutex // guards the fields below
	// increments counts applied increments; keys the distinct keys seen;
	// contentTypes the batch Content-Types; incrs the incr requests.
	increments   int64
	keys         map[string]bool
	contentTypes map[string]int
	incrs        int
	reads        int
}

var keyRE = regexp.MustCompile(`^k[0-9]{8}$`)

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	f := &fakeNode{t: t, keys: map[string]bool{}, contentTypes: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

type batchBody struct {
	Ops []struct {
		NS  string `json:"ns" msgpack:"ns"`
		Key string `json:"key" msgpack:"key"`
		By  int64  `json:"by" msgpack:"by"`
	} `json:"ops" msgpack:"ops"`
}

func (f *fakeNode) fail(w http.ResponseWriter, format string, args ...any) {
	f.t.Errorf(format, args...)
	w.WriteHeader(400)
	fmt.Fprintf(w, `{"error":{"code":"invalid_argument","message":"test server refused"}}`)
}

func (f *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // countbench cut the request at the end of the run, mid-body
	}
	w.Header().Set("Content-Type", "application/json")
	path := r.URL.Path
	switch {
	case r.Method == "POST" && path == "/v1/batch/get":
		var b struct {
			Keys []struct{ NS, Key string } `json:"keys"`
		}
		if err := json.Unmarshal(body, &b); err != nil || len(b.Keys) == 0 || b.Keys[0].NS != "bench" {
			f.fail(w, "batch/get body %q: %v", body, err)
			return
		}
		f.mu.Lock()
		f.contentTypes[r.Header.Get("Content-Type")]++
		f.mu.Unlock()
		fmt.Fprintf(w, `{"values":[%s0]}`, strings.Repeat("0,", len(b.Keys)-1))
	case r.Method == "POST" && path == "/v1/batch":
		var b batchBody
		ct := r.Header.Get("Content-Type")
		var err error
		if ct == "application/msgpack" {
			err = msgpack.Unmarshal(body, &b)
		} else {
			err = json.Unmarshal(body, &b)
		}
		if err != nil {
			f.fail(w, "batch body (%s) does not decode: %v", ct, err)
			return
		}
		f.mu.Lock()
		f.contentTypes[ct]++
		for _, op := range b.Ops {
			if op.NS != "bench" || !keyRE.MatchString(op.Key) || op.By != 1 {
				f.mu.Unlock()
				f.fail(w, "bad op %+v", op)
				return
			}
			f.increments += op.By
			f.keys[op.Key] = true
		}
		f.mu.Unlock()
		fmt.Fprintf(w, `{"applied":%d,"duplicates":0}`, len(b.Ops))
	case r.Method == "POST" && strings.HasPrefix(path, "/v1/counters/bench/") && strings.HasSuffix(path, "/incr"):
		key := strings.TrimSuffix(strings.TrimPrefix(path, "/v1/counters/bench/"), "/incr")
		if !keyRE.MatchString(key) || string(body) != `{"by":1}` {
			f.fail(w, "bad incr %s %q", key, body)
			return
		}
		f.mu.Lock()
		f.incrs++
		n := f.incrs
		f.mu.Unlock()
		if n%10 == 0 {
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"code":"overloaded","message":"shed"}}`)
			return
		}
		io.WriteString(w, `{"ns":"bench","key":"k","value":1}`)
	case r.Method == "GET" && strings.HasPrefix(path, "/v1/counters/bench/"):
		if r.URL.Query().Get("consistency") != "quorum" {
			f.fail(w, "read without the consistency asked for: %s", r.URL.RequestURI())
			return
		}
		f.mu.Lock()
		f.reads++
		f.mu.Unlock()
		io.WriteString(w, `{"ns":"bench","key":"k","value":1}`)
	default:
		f.fail(w, "unexpected request %s %s", r.Method, r.URL.RequestURI())
	}
}

// summary is the part of the summary line the tests read.
type summary struct {
	Mode         string           `json:"mode"`
	DurationS    float64          `json:"duration_s"`
	Ops          int64            `json:"ops"`
	OpsPerS      float64          `json:"ops_per_s"`
	Requests     int64            `json:"requests"`
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
	LatencyMS    map[string]float64
	Config       map[string]any `json:"config"`
}

func (s *summary) UnmarshalJSON(b []byte) error {
	type plain summary
	var p struct {
		plain
		Lat map[string]float64 `json:"latency_ms"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = summary(p.plain)
	s.LatencyMS = p.Lat
	return nil
}

// bench runs countbench against f and returns its status, its parsed last
// stdout line and its stderr.
func runBench(t *testing.T, f *fakeNode, args ...string) (int, summary, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"--addr", f.srv.URL}, args...), &stdout, &stderr)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var s summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("last stdout line %q is not the JSON summary: %v (stderr %s)", lines[len(lines)-1], err, stderr.String())
	}
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := s.LatencyMS[k]; !ok {
			t.Errorf("latency_ms has no %s", k)
		}
	}
	return code, s, stderr.String()
}

func TestBatchGetMode(t *testing.T) {
	f := newFakeNode(t)
	code, s, stderr := runBench(t, f, "--mode", "batchget", "--batch-size", "50", "--pool", "2", "--duration", "200ms", "--warmup", "0s")
	if code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, stderr)
	}
	if s.Mode != "batchget" || s.Requests == 0 || s.Errors != 0 || s.Ops != 50*s.Requests {
		t.Errorf("summary = %+v; want batchget requests of 50 keys, no errors", s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.contentTypes["application/json"] == 0 {
		t.Errorf("Content-Types sent: %v", f.contentTypes)
	}
}

func TestBatchMode(t *testing.T) {
	for _, format := range []string{"msgpack", "json"} {
		t.Run(format, func(t *testing.T) {
			f := newFakeNode(t)
			code, s, stderr := runBench(t, f, "--mode", "batch", "--format", format, "--batch-size", "100",
				"--pool", "4", "--concurrency", "2", "--duration", "300ms", "--warmup", "0s", "--progress", "100ms")
			if code != 0 {
				t.Fatalf("exit status %d, stderr %s", code, stderr)
			}
			if s.Mode != "batch" || s.DurationS != 0.3 || s.Requests == 0 || s.Errors != 0 || s.Ops != 100*s.Requests {
				t.Errorf("summary = %+v; want batch, 0.3s, requests of 100 ops, no errors", s)
			}
			if s.Config["format"] != format || s.Config["batch-size"] != 100.0 {
				t.Errorf("config = %v", s.Config)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			want := "application/" + format
			if len(f.contentTypes) != 1 || f.contentTypes[want] == 0 {
				t.Errorf("Content-Types sent: %v, want only %s", f.contentTypes, want)
			}
			// Cut in-flight batches may have been applied too.
			if f.increments < s.Ops {
				t.Errorf("server applied %d increments, summary claims %d", f.increments, s.Ops)
			}
			if !strings.Contains(stderr, "ops/s=") {
				t.Errorf("no progress line on stderr: %q", stderr)
			}
		})
	}
}

func TestIncrModeIsOpenLoopAndCountsErrors(t *testing.T) {
	f := newFakeNode(t)
	code, s, stderr := runBench(t, f, "--mode", "incr", "--rate", "500", "--duration", "400ms", "--warmup", "0s",
		"--dist", "zipf", "--progress", "0")
	if code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, stderr)
	}
	// The schedule is fixed: 500/s for 0.4s is 200 requests, every tenth of
	// which the fake server sheds.
	if s.Requests != 200 || s.Errors != 20 || s.ErrorsByCode["429"] != 20 || s.Ops != 180 {
		t.Errorf("summary = %+v; want 200 requests, 20 errors 429, 180 ops", s)
	}
	if s.Config["open_loop"] != true || s.Config["rate"] != 500.0 || s.Config["dist"] != "zipf" {
		t.Errorf("config = %v", s.Config)
	}
	if stderr != "" {
		t.Errorf("stderr = %q with --progress 0, want nothing", stderr)
	}
}

func TestReadModeClosedLoop(t *testing.T) {
	f := newFakeNode(t)
	code, s, stderr := runBench(t, f, "--mode", "read", "--rate", "0", "--concurrency", "2", "--consistency", "quorum",
		"--duration", "200ms", "--warmup", "50ms", "--progress", "0")
	if code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, stderr)
	}
	if s.Mode != "read" || s.Requests == 0 || s.Errors != 0 || s.Ops != s.Requests || s.LatencyMS["p50"] <= 0 {
		t.Errorf("summary = %+v", s)
	}
	if s.Config["open_loop"] != false {
		t.Errorf("config = %v, want a closed loop", s.Config)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if int64(f.reads) < s.Requests {
		t.Errorf("server saw %d reads, summary claims %d", f.reads, s.Requests)
	}
}

func TestPrefillWritesEveryKeyOnce(t *testing.T) {
	f := newFakeNode(t)
	code, s, stderr := runBench(t, f, "--mode", "prefill", "--keys", "2500", "--batch-size", "1000", "--progress", "0")
	if code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, stderr)
	}
	if s.Mode != "prefill" || s.Ops != 2500 || s.Requests != 3 {
		t.Errorf("summary = %+v; want 2500 ops in 3 requests", s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.keys) != 2500 || f.increments != 2500 || !f.keys["k00000000"] || !f.keys["k00002499"] {
		t.Errorf("server saw %d distinct keys and %d increments, want k00000000..k00002499 once each",
			len(f.keys), f.increments)
	}
}

func TestPrefillFlagRunsBeforeTheMode(t *testing.T) {
	f := newFakeNode(t)
	code, s, stderr := runBench(t, f, "--mode", "batch", "--prefill", "500", "--batch-size", "100", "--pool", "1",
		"--concurrency", "1", "--keys", "10", "--duration", "100ms", "--warmup", "0s", "--progress", "0")
	if code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, stderr)
	}
	if !strings.Contains(stderr, "prefill: 500 keys") {
		t.Errorf("stderr %q does not report the prefill", stderr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.keys["k00000499"] || f.increments < 500+s.Ops {
		t.Errorf("prefill keys missing: %d increments, %d keys", f.increments, len(f.keys))
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "write"},
		{"--batch-size", "10001"},
		{"--dist", "pareto"},
		{"--zipf-s", "1", "--dist", "zipf"},
		{"--format", "xml"},
		{"--duration", "0s"},
		{"--nope"},
		{"extra"},
		{"--plot-size", "800"},
		{"--plot-size", "800x40"},
		{"--plot-size", "800x400x2"},
		{"--mode", "prefill", "--plot", "x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
			t.Errorf("%v: exit status %d stdout %q, want 2 and nothing", args, code, stdout.String())
		}
	}
}

func TestNothingSucceedsExitsOne(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		io.WriteString(w, `{"error":{"code":"unavailable","message":"not ready"}}`)
	}))
	t.Cleanup(srv.Close)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--addr", srv.URL, "--mode", "read", "--rate", "100",
		"--duration", "100ms", "--warmup", "0s", "--progress", "0"}, &stdout, &stderr)
	var s summary
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("no summary: %v", err)
	}
	if code != 1 || s.ErrorsByCode["503"] != 10 {
		t.Errorf("status %d, errors %v; want 1 and ten 503s", code, s.ErrorsByCode)
	}
}

func TestPlotWritesTwoPNGs(t *testing.T) {
	f := newFakeNode(t)
	prefix := filepath.Join(t.TempDir(), "incr")
	code, s, stderr := runBench(t, f, "--mode", "incr", "--rate", "200", "--duration", "1500ms", "--warmup", "0s",
		"--progress", "0", "--plot", prefix, "--plot-size", "300x200")
	if code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, stderr)
	}
	if s.Config["plot"] != prefix {
		t.Errorf("config = %v, want plot %s", s.Config, prefix)
	}
	for _, p := range []string{prefix + "-latency.png", prefix + "-throughput.png"} {
		if !strings.Contains(stderr, "wrote "+p) {
			t.Errorf("stderr %q does not name %s", stderr, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil || cfg.Width != 300 || cfg.Height != 200 {
			t.Errorf("%s: %dx%d, %v; want a 300x200 PNG", p, cfg.Width, cfg.Height, err)
		}
	}
}

// A plot that cannot be written makes the run fail, after its summary.
func TestPlotIntoMissingDirExitsOne(t *testing.T) {
	f := newFakeNode(t)
	prefix := filepath.Join(t.TempDir(), "no-such-dir", "incr")
	code, _, stderr := runBench(t, f, "--mode", "incr", "--rate", "200", "--duration", "200ms", "--warmup", "0s",
		"--progress", "0", "--plot", prefix)
	if code != 1 || !strings.Contains(stderr, "--plot:") {
		t.Errorf("exit status %d, stderr %q; want 1 and the --plot error", code, stderr)
	}
}

// TestSimulateMode: --mode simulate runs in-process meshes without a
// server, prints a table and one JSON line per size with the fields the
// scale-out curves are drawn from, and refuses what it cannot run.
func TestSimulateMode(t *testing.T) {
	var stdout, stderr bytes.Buffer
	plots := filepath.Join(t.TempDir(), "sim")
	args := []string{"--mode=simulate", "--nodes", "2,3", "--regions", "2", "--rate", "200", "--duration", "1s", "--warmup", "200ms", "--probe-every", "100ms", "--plot", plots}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], "applied/node/s") {
		t.Fatalf("stdout %q: want a table of a header and 2 rows, then 2 JSON lines", stdout.String())
	}
	for i, want := range []int{2, 3} {
		var r map[string]any
		if err := json.Unmarshal([]byte(lines[3+i]), &r); err != nil {
			t.Fatalf("line %q: %v", lines[3+i], err)
		}
		for _, k := range []string{"nodes", "replicas", "applied_per_node_per_s", "bytes_per_node_per_s", "convergence_p50_ms", "convergence_p99_ms", "counters_per_node"} {
			if _, ok := r[k]; !ok {
				t.Errorf("line %q lacks %q", lines[3+i], k)
			}
		}
		if r["nodes"] != float64(want) || r["unconverged"] != float64(0) {
			t.Errorf("line %q: want %d nodes, 0 unconverged", lines[3+i], want)
		}
	}
	for _, name := range []string{"-applied.png", "-convergence.png"} {
		f, err := os.Open(plots + name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: not a PNG: %v", name, err)
		}
	}
	for _, args := range [][]string{
		{"--mode", "simulate", "--replicas", "-1", "--nodes", "3"},
		{"--mode", "simulate", "--nodes", "1"},
		{"--mode", "simulate", "--nodes", "ten"},
		{"-mode", "simulate", "--addr", "http://x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
			t.Errorf("%v: exit status %d stdout %q, want 2 and nothing", args, code, stdout.String())
		}
	}
}
