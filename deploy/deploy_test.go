package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/countmesh/countmesh/internal/pki"
	"github.com/countmesh/countmesh/internal/wait"
)

// prometheusOwn are series Prometheus makes itself for every target; an
// alert may use them although countd does not export them.
var prometheusOwn = []string{"up"}

var (
	buildOnce sync.Once
	countdBin string
	buildErr  error
)

// countd builds cmd/countd once for the package's tests.
func countd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "countmesh-deploy-test")
		if err != nil {
			buildErr = err
			return
		}
		countdBin = filepath.Join(dir, "countd")
		out, err := exec.Command("go", "build", "-o", countdBin, "../cmd/countd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ../cmd/countd: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return countdBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if countdBin != "" {
		os.RemoveAll(filepath.Dir(countdBin))
	}
	os.Exit(code)
}

// freePort returns a port free on 127.0.0.1 for TCP and UDP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startCountd starts a countd process with args (on a free loopback
// --http-addr, a free --resp-addr and a temporary --data-dir unless args
// give them) and stops it
// when the test ends. It returns the HTTP base URL once /readyz answers 200.
func startCountd(t *testing.T, args ...string) string {
	t.Helper()
	httpAddr := ""
	dataDir, respAddr := false, false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--http-addr="); ok {
			httpAddr = v
		}
		dataDir = dataDir || strings.HasPrefix(a, "--data-dir=")
		respAddr = respAddr || strings.HasPrefix(a, "--resp-addr=")
	}
	if !respAddr { // the default, the HTTP host's port 6380, may be taken
		args = append([]string{"--resp-addr=127.0.0.1:0"}, args...)
	}
	if httpAddr == "" {
		httpAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args = append([]string{"--http-addr=" + httpAddr, "--log-level=warn"}, args...)
	}
	if !dataDir {
		args = append([]string{"--data-dir=" + t.TempDir()}, args...)
	}
	cmd := exec.Command(countd(t), args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once cmd.Wait returned waitErr
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := "http://" + httpAddr
	wait.Until(t, 30*time.Second, "countd "+strings.Join(args, " ")+" to be ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("countd exited: %v\n%s", waitErr, logs.String())
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return base
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// exportedMetrics runs a mesh of two countd processes, sends them some
// traffic, and returns every series name their /metrics show (histogram
// series with their _bucket, _sum and _count suffixes).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	gossipA, peerA := freePort(t), freePort(t)
	a := startCountd(t, "--node-name=a", fmt.Sprintf("--gossip-addr=127.0.0.1:%d", gossipA), fmt.Sprintf("--peer-addr=127.0.0.1:%d", peerA))
	b := startCountd(t, "--node-name=b", fmt.Sprintf("--gossip-addr=127.0.0.1:%d", freePort(t)), fmt.Sprintf("--peer-addr=127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("--join=127.0.0.1:%d", gossipA))
	steps := []struct{ method, path, body string }{
		{"PUT", "/v1/namespaces/pages", `{"windows":["1m","1h"],"retention":{"1m":"1h"}}`},
		{"POST", "/v1/counters/pages/home/incr", `{"by":3,"id":"one","labels":{"country":"fr"}}`},
		{"POST", "/v1/counters/pages/home/incr", `{"by":3,"id":"one","labels":{"country":"fr"}}`},
		{"POST", "/v1/batch", `{"ops":[{"ns":"pages","key":"about"},{"ns":"pages","key":"home","by":2}]}`},
		{"GET", "/v1/counters/pages/home", ""},
		{"GET", "/v1/counters/pages/home/series", ""},
		{"GET", "/v1/namespaces/pages/top", ""},
		{"POST", "/v1/ratelimit/pages/login", `{"limit":5,"window":"1m"}`},
		{"GET", "/v1/counters/pages/nope/incr", ""}, // 405
	}
	for _, s := range steps {
		if code, body := call(t, s.method, a+s.path, s.body); code >= 500 {
			t.Fatalf("%s %s: %d %s", s.method, s.path, code, body)
		}
	}
	// Replication: b reads what a wrote, and a reports its lag to b.
	wait.Until(t, 30*time.Second, "b to read a's writes", func() bool {
		_, body := call(t, "GET", b+"/v1/counters/pages/home", "")
		return strings.Contains(body, `"value":5`)
	})
	wait.Until(t, 30*time.Second, "a to report replication lag towards b", func() bool {
		_, body := call(t, "GET", a+"/v1/cluster", "")
		return strings.Contains(body, `"peer":"b"`)
	})
	names := map[string]bool{}
	for _, base := range []string{a, b} {
		code, body := call(t, "GET", base+"/metrics", "")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, _, _ := strings.Cut(line, "{")
			name, _, _ = strings.Cut(name, " ")
			names[name] = true
		}
	}
	for _, want := range []string{"countmesh_increments_total", "countmesh_ready", "countmesh_replication_lag_seconds", "countmesh_http_request_duration_seconds_bucket", "go_goroutines"} {
		if !names[want] {
			t.Fatalf("the nodes do not export %s; they export %d series names", want, len(names))
		}
	}
	return names
}

var (
	stringLit    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	braces       = regexp.MustCompile(`\{[^{}]*\}`)
	brackets     = regexp.MustCompile(`\[[^\[\]]*\]`)
	grouping     = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	identifier   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelValues  = regexp.MustCompile(`^label_values\(([^,]+),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)
	promKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression selects: its
// identifiers once strings, label matchers, ranges and grouping clauses are
// taken out, except function names (followed by "(") and keywords. A
// Grafana label_values(metric, label) query selects its first argument.
func metricNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(strings.TrimSpace(expr)); m != nil {
		expr = m[1]
	}
	expr = stringLit.ReplaceAllString(expr, `""`)
	expr = braces.ReplaceAllString(expr, " ")
	expr = brackets.ReplaceAllString(expr, " ")
	expr = grouping.ReplaceAllString(expr, " ")
	var out []string
	for _, loc := range identifier.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if loc[0] > 0 {
			if c := expr[loc[0]-1]; c == '.' || (c >= '0' && c <= '9') || c == '$' {
				continue // an exponent (1e3) or a Grafana variable
			}
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function
		}
		if slices.Contains(promKeywords, strings.ToLower(name)) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`up{job="countd"} == 0`, []string{"up"}},
		{`sum by (instance) (rate(countmesh_shed_total[5m])) > 0`, []string{"countmesh_shed_total"}},
		{`histogram_quantile(0.99, sum by (le, route) (rate(countmesh_http_request_duration_seconds_bucket{instance=~"$instance",route!~".*/watch"}[$__rate_interval])))`,
			[]string{"countmesh_http_request_duration_seconds_bucket"}},
		{`a_total / on(instance) group_left b_total > 1e3 and c`, []string{"a_total", "b_total", "c"}},
		{`max by (instance) (countmesh_oplog_bytes) > 512 * 1024 * 1024`, []string{"countmesh_oplog_bytes"}},
		{`label_values(countmesh_ready, instance)`, []string{"countmesh_ready"}},
	}
	for _, c := range cases {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%s) = %v, want %v", c.expr, got, c.want)
		}
	}
}

// dashboardExprs returns every PromQL query of a Grafana dashboard: the
// panels' targets (nested rows included) and the template variables'.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, k)
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			if key == "expr" || (key == "query" && strings.HasPrefix(v, "label_values(")) {
				out = append(out, v)
			}
		}
	}
	walk(dash, "")
	return out
}

// alertRules is a Prometheus rule file.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestDashboardAndAlertsUseExportedMetrics checks every metric the Grafana
// dashboard and the alert rules use against what two live countd nodes
// export after some traffic.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs countd; -short leaves it out")
	}
	exported := exportedMetrics(t)
	check := func(where, expr string, allowed []string) int {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, name := range names {
			if !exported[name] && !slices.Contains(allowed, name) {
				t.Errorf("%s uses %s, which countd does not export (expr %q)", where, name, expr)
			}
		}
		return len(names)
	}

	exprs := dashboardExprs(t, "grafana/countmesh.json")
	if len(exprs) < 30 {
		t.Fatalf("the dashboard has only %d queries", len(exprs))
	}
	used := map[string]bool{}
	for _, e := range exprs {
		check("grafana/countmesh.json", e, nil)
		for _, n := range metricNames(e) {
			used[n] = true
		}
	}

	raw, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("prometheus/alerts.yaml: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			where := "prometheus/alerts.yaml " + r.Alert
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: an alert needs a name, a severity label and a summary", where)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", where, r.For, err)
				}
			}
			check(where, r.Expr, prometheusOwn)
		}
	}
	if n < 8 {
		t.Fatalf("only %d alerts", n)
	}
	// The families an operator most needs are on the dashboard.
	for _, want := range []string{"countmesh_ready", "countmesh_replication_lag_seconds", "countmesh_increments_total", "countmesh_http_request_duration_seconds_bucket", "countmesh_pending_changes"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// manifest is the part of a Kubernetes object the test reads.
type manifest struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   map[string]any `yaml:"metadata"`
	Spec       map[string]any `yaml:"spec"`
	raw        map[string]any
}

// readManifests parses every YAML document of path.
func readManifests(t *testing.T, path string) []manifest {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc == nil {
			continue
		}
		var m manifest
		b, _ := yaml.Marshal(doc)
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.APIVersion == "" || m.Kind == "" || m.Metadata["name"] == nil {
			t.Fatalf("%s: a document without apiVersion, kind or metadata.name: %v", path, doc)
		}
		m.raw = doc
		out = append(out, m)
	}
	return out
}

// at follows a path of map keys and list indexes through v.
func at(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

// countdFlags returns the flags countd declares, read from its --help.
func countdFlags(t *testing.T) []string {
	t.Helper()
	out, _ := exec.Command(countd(t), "--help").CombinedOutput()
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^\s+-(-?[a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags = append(flags, strings.TrimPrefix(m[1], "-"))
	}
	if !slices.Contains(flags, "node-name") || !slices.Contains(flags, "api-tokens-file") {
		t.Fatalf("countd --help lists no flags I recognise:\n%s", out)
	}
	return flags
}

// TestKubernetesManifests checks the manifests hold what running the mesh
// needs, and that the container's arguments are flags countd accepts: each
// names a flag of countd --help, and countd parses them all (run with
// --version, which exits once the flags are read).
func TestKubernetesManifests(t *testing.T) {
	objs := readManifests(t, "kubernetes/countd.yaml")
	byKind := map[string][]manifest{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	if len(byKind["StatefulSet"]) != 1 || len(byKind["PodDisruptionBudget"]) != 1 || len(byKind["Service"]) != 2 {
		t.Fatalf("want one StatefulSet, one PodDisruptionBudget and two Services, got %v", slices.Sorted(func(yield func(string) bool) {
			for k := range byKind {
				if !yield(k) {
					return
				}
			}
		}))
	}
	sts := byKind["StatefulSet"][0]
	podLabels, _ := at(sts.raw, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		m, ok := sel.(map[string]any)
		if !ok || len(m) == 0 {
			return false
		}
		for k, v := range m {
			if podLabels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(at(sts.raw, "spec", "selector", "matchLabels")) {
		t.Error("the StatefulSet's selector does not match its pod labels")
	}
	if !matches(at(byKind["PodDisruptionBudget"][0].raw, "spec", "selector", "matchLabels")) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	var headless manifest
	for _, s := range byKind["Service"] {
		if !matches(at(s.raw, "spec", "selector")) {
			t.Errorf("Service %v does not select the pods", s.Metadata["name"])
		}
		if at(s.raw, "spec", "clusterIP") == "None" {
			headless = s
		}
	}
	if headless.Kind == "" || at(sts.raw, "spec", "serviceName") != headless.Metadata["name"] {
		t.Fatalf("the StatefulSet's serviceName %v is not the headless Service", at(sts.raw, "spec", "serviceName"))
	}
	if at(headless.raw, "spec", "publishNotReadyAddresses") != true {
		t.Error("the headless Service must publish pods before they are ready, or no node can join another")
	}

	c := at(sts.raw, "spec", "template", "spec", "containers", 0)
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := at(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %v, want %s", probe, got, path)
		}
	}
	// Secrets: certificates, gossip key and tokens, each named in
	// docs/operations.md, where they are created.
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{} // volume name -> secret
	vols, _ := at(sts.raw, "spec", "template", "spec", "volumes").([]any)
	for _, v := range vols {
		if name, ok := at(v, "secret", "secretName").(string); ok {
			secrets[at(v, "name").(string)] = name
			if !bytes.Contains(ops, []byte("create secret generic "+name+" ")) {
				t.Errorf("docs/operations.md does not say how to create Secret %s", name)
			}
		}
	}
	if len(secrets) != 3 {
		t.Errorf("want the certificates, the gossip key and the tokens from Secrets, got %v", secrets)
	}
	mounts := map[string]string{} // mount path -> volume
	ms, _ := at(c, "volumeMounts").([]any)
	for _, m := range ms {
		mounts[at(m, "mountPath").(string)] = at(m, "name").(string)
	}

	rawArgs, _ := at(c, "args").([]any)
	known := countdFlags(t)
	env := map[string]string{"POD_NAME": "countd-0", "POD_IP": "10.0.0.7"}
	var args []string
	seen := map[string]bool{}
	for _, a := range rawArgs {
		s, _ := a.(string)
		name, value, ok := strings.Cut(strings.TrimPrefix(s, "--"), "=")
		if !strings.HasPrefix(s, "--") || !ok {
			t.Errorf("argument %q: write flags as --name=value", s)
			continue
		}
		if !slices.Contains(known, name) {
			t.Errorf("argument %q: countd has no flag --%s", s, name)
		}
		seen[name] = true
		value = regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(value, func(v string) string {
			return env[v[2:len(v)-1]]
		})
		// A file flag must point into a mounted Secret.
		if strings.HasSuffix(name, "-file") || strings.HasPrefix(name, "tls-") {
			dir := filepath.Dir(value)
			if vol, ok := mounts[dir]; !ok || secrets[vol] == "" {
				t.Errorf("--%s=%s is not in a directory mounted from a Secret", name, value)
			}
		}
		args = append(args, "--"+name+"="+value)
	}
	for _, want := range []string{"node-name", "data-dir", "http-addr", "gossip-addr", "advertise-addr", "join", "tls-ca", "tls-cert", "tls-key", "gossip-key-file", "api-tokens-file"} {
		if !seen[want] {
			t.Errorf("the container does not set --%s", want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, countd(t), append(args, "--version")...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "countd ") {
		t.Errorf("countd does not accept the manifest's arguments %v: %v\n%s", args, err, out)
	}

	startFromManifest(t, args, mounts, at(sts.raw, "metadata", "name"), at(sts.raw, "spec", "serviceName"), at(sts.raw, "spec", "replicas"))

	// The monitoring manifests parse and scrape the port the pods name.
	for _, o := range readManifests(t, "kubernetes/monitoring.yaml") {
		if o.Kind == "PodMonitor" && at(o.raw, "spec", "podMetricsEndpoints", 0, "port") != "http" {
			t.Error("the PodMonitor does not scrape the pods' http port")
		}
	}
}

// startFromManifest starts countd with the manifest's arguments as pod
// countd-0 would run them, with what only a cluster has replaced: the
// mounted Secrets by files made as docs/operations.md makes them, the
// volume by a temporary directory, the listeners by loopback ports, and the
// join list (checked to name the StatefulSet's pods) left out. The node
// must become ready and enforce the tokens: the flag values and the
// Secrets' files work, not only the flag names.
func startFromManifest(t *testing.T, args []string, mounts map[string]string, sts, service, replicas any) {
	t.Helper()
	secrets := t.TempDir()
	if err := pki.CreateCA(secrets); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateNode(secrets, "countd-0", []string{"countd-0." + fmt.Sprint(service)}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	const token = "deploy-test-admin-token-0123456789"
	files := map[string]string{"gossip.key": base64.StdEncoding.EncodeToString(key) + "\n", "tokens": token + " admin\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	gossipPort := freePort(t)
	local := map[string]string{
		"http-addr":      httpAddr,
		"gossip-addr":    fmt.Sprintf("127.0.0.1:%d", gossipPort),
		"peer-addr":      fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"advertise-addr": fmt.Sprintf("127.0.0.1:%d", gossipPort),
		"data-dir":       t.TempDir(),
		"resp-addr":      "127.0.0.1:0",
	}
	var run []string
	for _, a := range args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if name == "join" {
			var want []string
			n, _ := replicas.(int)
			for i := range n {
				want = append(want, fmt.Sprintf("%v-%d.%v:7946", sts, i, service))
			}
			if value != strings.Join(want, ",") {
				t.Errorf("--join=%s, want the StatefulSet's pods %s", value, strings.Join(want, ","))
			}
			continue
		}
		if v, ok := local[name]; ok {
			value = v
		} else if vol, ok := mounts[filepath.Dir(value)]; ok && vol != "data" {
			value = filepath.Join(secrets, filepath.Base(value))
		}
		run = append(run, "--"+name+"="+value)
	}
	base := startCountd(t, run...)
	if code, body := call(t, "GET", base+"/v1/cluster", ""); code != 401 {
		t.Errorf("the node started from the manifest answers /v1/cluster without a token: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", base+"/v1/cluster", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/v1/cluster with the token: %d", resp.StatusCode)
	}
}

// TestEveryFileIsChecked fails when a file is added under deploy/ that no
// test above reads.
func TestEveryFileIsChecked(t *testing.T) {
	checked := []string{"doc.go", "deploy_test.go", "grafana/countmesh.json", "kubernetes/countd.yaml", "kubernetes/monitoring.yaml", "prometheus/alerts.yaml"}
	var found []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = append(found, filepath.ToSlash(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(found)
	for _, f := range found {
		if !slices.Contains(checked, f) {
			t.Errorf("deploy/%s is not checked by any test", f)
		}
	}
}
