//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countmesh/countmesh/internal/wait"
)

// mesh is the compose project under test.
var mesh *cluster

func TestMain(m *testing.M) {
	project := os.Getenv("COUNTMESH_E2E_PROJECT")
	if project == "" {
		fmt.Fprintln(os.Stderr, "e2e: COUNTMESH_E2E_PROJECT is not set; the tests skip (run them with `make e2e`)")
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cl, err := discover(ctx, project)
	if err == nil {
		err = cl.waitHealthy(ctx)
	}
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: compose project %s: %v\n", project, err)
		os.Exit(1)
	}
	mesh = cl
	code := m.Run()
	if code != 0 {
		// Say whether a container died (and how) under the tests.
		out, err := docker(context.Background(), "ps", "-a", "--filter", "label=com.docker.compose.project="+project,
			"--format", "{{.Names}}\t{{.Status}}")
		fmt.Fprintf(os.Stderr, "e2e: containers after the tests:\n%s%v\n", out, errOrEmpty(err))
	}
	os.Exit(code)
}

func errOrEmpty(err error) any {
	if err == nil {
		return ""
	}
	return err
}

// needMesh returns the cluster, or skips the test when no compose project
// was given.
func needMesh(t *testing.T) *cluster {
	t.Helper()
	if mesh == nil {
		t.Skip("COUNTMESH_E2E_PROJECT is not set: these tests drive a docker-compose mesh; run `make e2e`")
	}
	return mesh
}

// node is one countd container.
type node struct {
	name, region string
	container    string            // container name
	ip           string            // address on its own region's network (advertised)
	base         string            // http://ip:7070
	netIPs       map[string]string // network name -> static address on it
}

// cluster is the six containers of one compose project.
type cluster struct {
	project  string
	nodes    []*node           // in compose's order: eu-1, eu-2, us-1, us-2, ap-1, ap-2
	regionNw map[string]string // region -> the network its nodes advertise on

	broken atomic.Bool // a test found the mesh unhealthy

	mu  sync.Mutex
	cut []endpoint // endpoints disconnected by partition and not yet reconnected
}

type endpoint struct{ network, container, ip string }

func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (c *cluster) names() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.name)
	}
	return out
}

// docker runs the docker CLI, bounded in time.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// discover finds the project's containers and their addresses.
func discover(ctx context.Context, project string) (*cluster, error) {
	out, err := docker(ctx, "ps", "-a", "-q", "--filter", "label=com.docker.compose.project="+project)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, fmt.Errorf("no containers; is it up (docker-compose -p %s up -d)?", project)
	}
	out, err = docker(ctx, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var infos []struct {
		Name   string
		Config struct {
			Env    []string
			Labels map[string]string
		}
		NetworkSettings struct {
			Networks map[string]struct {
				IPAMConfig *struct{ IPv4Address string }
				IPAddress  string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		return nil, fmt.Errorf("docker inspect: %w", err)
	}
	cl := &cluster{project: project, regionNw: map[string]string{}}
	for _, in := range infos {
		if in.Config.Labels["com.docker.compose.service"] == "init" {
			continue // the one-shot step that made the secrets
		}
		env := map[string]string{}
		for _, kv := range in.Config.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		n := &node{
			name:      env["COUNTMESH_NODE_NAME"],
			region:    env["COUNTMESH_REGION"],
			container: strings.TrimPrefix(in.Name, "/"),
			netIPs:    map[string]string{},
		}
		adv, _, err := net.SplitHostPort(env["COUNTMESH_ADVERTISE_ADDR"])
		if n.name == "" || n.region == "" || err != nil {
			return nil, fmt.Errorf("container %s: want COUNTMESH_NODE_NAME, COUNTMESH_REGION and COUNTMESH_ADVERTISE_ADDR (ip:port) in its environment", n.container)
		}
		n.ip = adv
		n.base = "http://" + net.JoinHostPort(adv, "7070")
		for nw, s := range in.NetworkSettings.Networks {
			if s.IPAMConfig == nil || s.IPAMConfig.IPv4Address == "" {
				return nil, fmt.Errorf("container %s has no static address on network %s; the partition test reconnects it with the same address", n.container, nw)
			}
			n.netIPs[nw] = s.IPAMConfig.IPv4Address
			if s.IPAMConfig.IPv4Address == adv {
				cl.regionNw[n.region] = nw
			}
		}
		cl.nodes = append(cl.nodes, n)
	}
	order := []string{"eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2"}
	slices.SortFunc(cl.nodes, func(a, b *node) int {
		ia, ib := slices.Index(order, a.name), slices.Index(order, b.name)
		if ia != ib {
			return ia - ib
		}
		return strings.Compare(a.name, b.name)
	})
	for _, n := range cl.nodes {
		if _, ok := cl.regionNw[n.region]; !ok {
			return nil, fmt.Errorf("node %s advertises %s, which is on none of its networks", n.name, n.ip)
		}
	}
	return cl, nil
}

// httpc talks to the nodes. Dialing a stopped container's address fails
// within the dial timeout; a request that was sent has up to 10 s.
// The compose mesh runs secured: every request carries the admin token
// that make e2e reads from the init container (COUNTMESH_TOKEN).
var httpc = &http.Client{
	Timeout: 10 * time.Second,
	Transport: bearer{token: os.Getenv("COUNTMESH_TOKEN"), next: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}},
}

// bearer adds the API token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.next.RoundTrip(r)
}

// getText GETs path from n and returns a 200 answer's body.
func getText(ctx context.Context, n *node, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s%s: %d %s", n.name, path, resp.StatusCode, bytes.TrimSpace(body))
	}
	return string(body), nil
}

// getJSON GETs path from n and decodes a 200 answer into out.
func getJSON(ctx context.Context, n *node, path string, out any) error {
	body, err := getText(ctx, n, path)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal([]byte(body), out)
}

// value reads one counter from n (consistency local).
func value(ctx context.Context, n *node, ns, key string) (int64, error) {
	var c struct{ Value int64 }
	err := getJSON(ctx, n, "/v1/counters/"+ns+"/"+url.PathEscape(key), &c)
	return c.Value, err
}

// ready reports whether n's /readyz answers 200.
func ready(ctx context.Context, n *node) bool {
	return getJSON(ctx, n, "/readyz", nil) == nil
}

type clusterView struct {
	Members []struct{ Name, Region, State string }
}

// states returns each member's state as n sees it.
func states(ctx context.Context, n *node) (map[string]string, error) {
	var v clusterView
	if err := getJSON(ctx, n, "/v1/cluster", &v); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, mb := range v.Members {
		m[mb.Name] = mb.State
	}
	return m, nil
}

// healthy reports whether every node is ready and sees every node alive.
func (c *cluster) healthy(ctx context.Context) (bool, string) {
	for _, n := range c.nodes {
		if !ready(ctx, n) {
			return false, n.name + " not ready"
		}
		st, err := states(ctx, n)
		if err != nil {
			return false, err.Error()
		}
		for _, o := range c.nodes {
			if st[o.name] != "alive" {
				return false, fmt.Sprintf("%s sees %s as %q", n.name, o.name, st[o.name])
			}
		}
	}
	return true, ""
}

func (c *cluster) waitHealthy(ctx context.Context) error {
	_, err := wait.Poll(ctx, 90*time.Second, 100*time.Millisecond, func() (bool, string) { return c.healthy(ctx) })
	if err != nil {
		return fmt.Errorf("mesh not healthy: %w", err)
	}
	return nil
}

// requireHealthy fails the test unless the mesh is (or becomes) healthy:
// every test starts from a whole mesh.
func (c *cluster) requireHealthy(t *testing.T) {
	t.Helper()
	if c.broken.Load() {
		// An earlier test left the mesh broken; give it a short chance only.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := c.waitHealthy(ctx); err != nil {
			t.Fatalf("an earlier test left the mesh broken: %v", err)
		}
	}
	if err := c.waitHealthy(context.Background()); err != nil {
		c.broken.Store(true)
		t.Fatal(err)
	}
}

// partition cuts region off: its nodes leave the other regions' networks
// and the other nodes leave its network. heal undoes it; it runs as a
// cleanup too, so a failing test leaves the mesh whole.
func (c *cluster) partition(t *testing.T, region string) {
	t.Helper()
	own, ok := c.regionNw[region]
	if !ok {
		t.Fatalf("no region %q; regions: %v", region, c.regionNw)
	}
	t.Cleanup(func() { c.heal(t) })
	var eps []endpoint
	for _, n := range c.nodes {
		for nw, ip := range n.netIPs {
			if (n.region == region) != (nw == own) {
				eps = append(eps, endpoint{nw, n.container, ip})
			}
		}
	}
	slices.SortFunc(eps, func(a, b endpoint) int { return strings.Compare(a.container+a.network, b.container+b.network) })
	for _, ep := range eps {
		mustDocker(t, "network", "disconnect", ep.network, ep.container)
		c.mu.Lock()
		c.cut = append(c.cut, ep)
		c.mu.Unlock()
	}
}

// heal reconnects every endpoint partition disconnected, with its static
// address.
func (c *cluster) heal(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.cut) > 0 {
		ep := c.cut[0]
		if _, err := docker(context.Background(), "network", "connect", "--ip", ep.ip, ep.network, ep.container); err != nil {
			t.Errorf("reconnect: %v", err)
		}
		c.cut = c.cut[1:]
	}
}

// envInt, envFloat and envDuration read the suite's settings.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

func envFloat(t *testing.T, name string, def float64) float64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return f
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 60s", name, v)
	}
	return d
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
