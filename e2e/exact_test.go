//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countmesh/countmesh/internal/wait"
)

// post sends a JSON body to n and returns the status and the decoded answer
// (status 0 when there was no answer within 15 s: every refusal of the
// server comes well within that, a partition's included).
func post(ctx context.Context, n *node, path, body string) (int, map[string]any) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.base+path, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func put(ctx context.Context, t *testing.T, n *node, path, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, n.base+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s on %s: %d %s", path, n.name, resp.StatusCode, raw)
	}
}

// TestRetriesCountOnce: 10,000 increments with ids,
// each sent 2 to 4 times to random nodes of random regions (as if answers
// were lost), while one node is SIGKILLed and started again; afterwards
// every node reads exactly the sum of the distinct ids.
func TestRetriesCountOnce(t *testing.T) {
	cl := needMesh(t)
	cl.requireHealthy(t)
	ids := envInt(t, "COUNTMESH_E2E_IDS", 10_000)
	victim := cl.node(envString("COUNTMESH_E2E_IDS_KILL_NODE", "us-1"))
	if victim == nil {
		t.Fatalf("no node us-1 in %v", cl.names())
	}
	ns := "ids-" + runID
	key := "post"
	ctx := context.Background()
	var want, sends, dups, failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				i := next.Add(1) - 1
				if i >= int64(ids) {
					return
				}
				by := rng.Int64N(5) + 1
				want.Add(by)
				body := fmt.Sprintf(`{"by":%d,"id":"%s-%05d"}`, by, runID, i)
				times := 2 + rng.IntN(3)
				acked := false
				deadline := time.Now().Add(60 * time.Second)
				for s := 0; s < times || !acked; s++ {
					if time.Now().After(deadline) {
						t.Errorf("id %d never acknowledged", i)
						return
					}
					n := cl.nodes[rng.IntN(len(cl.nodes))]
					sends.Add(1)
					status, ans := post(ctx, n, "/v1/counters/"+ns+"/"+key+"/incr", body)
					switch status {
					case http.StatusOK:
						acked = true
						if d, _ := ans["duplicate"].(bool); d {
							dups.Add(1)
						}
					default:
						failed.Add(1)
						time.Sleep(5 * time.Millisecond)
					}
				}
			}
		}()
	}
	// A quarter of the way in: SIGKILL, a pause, docker start.
	wait.Until(t, 5*time.Minute, "a quarter of the ids sent", func() bool { return next.Load() >= int64(ids)/4 })
	t.Cleanup(func() { docker(context.Background(), "start", victim.container) })
	mustDocker(t, "kill", "-s", "KILL", victim.container)
	time.Sleep(2 * time.Second)
	mustDocker(t, "start", victim.container)
	wait.For(t, 60*time.Second, victim.name+" ready after the restart", func() (bool, string) {
		return ready(ctx, victim), "not ready"
	})
	wg.Wait()
	took := time.Since(start)
	if t.Failed() {
		return
	}
	total := want.Load()
	conv := wait.For(t, 60*time.Second, "every node reading the sum of the distinct ids", func() (bool, string) {
		var got []string
		ok := true
		for _, n := range cl.nodes {
			v, err := value(ctx, n, ns, key)
			if err != nil {
				return false, err.Error()
			}
			got = append(got, fmt.Sprintf("%s=%d", n.name, v))
			ok = ok && v == total
		}
		return ok, fmt.Sprintf("want %d, got %v", total, got)
	})
	t.Logf("%d ids (sum %d) in %v: %d sends, %d answered as duplicates, %d failed (killed node, retried elsewhere); every node read exactly %d %v after the last write",
		ids, total, took.Round(time.Millisecond), sends.Load(), dups.Load(), failed.Load(), total, conv.Round(time.Millisecond))
	writeResult(t, "retries", map[string]any{
		"ids": ids, "sum": total, "sends": sends.Load(), "duplicates": dups.Load(), "failed_sends": failed.Load(),
		"victim": victim.name, "run_s": took.Seconds(), "exact_on_every_node_after_ms": millis(conv),
	})
}

// TestBoundedLikes: an exact namespace with min 0,
// a counter at 100, 1,000 concurrent decrements of 1 spread over all six
// nodes, 400 of them while region ap is cut off: exactly 100 succeed, the
// rest get 409 (or 503 while cut off), and no read on any node ever shows a
// value below 0.
func TestBoundedLikes(t *testing.T) {
	cl := needMesh(t)
	cl.requireHealthy(t)
	ctx := context.Background()
	ns := "likes-" + runID
	key := "post"
	put(ctx, t, cl.nodes[0], "/v1/namespaces/"+ns, `{"type":"exact","min":0}`)
	// Every node knows the config before the counter moves.
	wait.For(t, 30*time.Second, "the namespace config on every node", func() (bool, string) {
		for _, n := range cl.nodes {
			var cfg struct{ Type string }
			if err := getJSON(ctx, n, "/v1/namespaces/"+ns, &cfg); err != nil || cfg.Type != "exact" {
				return false, fmt.Sprintf("%s: %v %q", n.name, err, cfg.Type)
			}
		}
		return true, ""
	})
	for i := range 100 {
		n := cl.nodes[i%2] // rights on eu-1 and eu-2
		if status, ans := post(ctx, n, "/v1/counters/"+ns+"/"+key+"/incr", ""); status != http.StatusOK {
			t.Fatalf("increment %d on %s: %d %v", i, n.name, status, ans)
		}
	}
	wait.For(t, 30*time.Second, "every node reading 100", func() (bool, string) {
		for _, n := range cl.nodes {
			if v, err := value(ctx, n, ns, key); err != nil || v != 100 {
				return false, fmt.Sprintf("%s reads %d (%v)", n.name, v, err)
			}
		}
		return true, ""
	})

	var ok, conflict, unavailable, other atomic.Int64
	var minSeen atomic.Int64
	minSeen.Store(100)
	stopReads := make(chan struct{})
	var readers sync.WaitGroup
	for _, n := range cl.nodes {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stopReads:
					return
				default:
				}
				if v, err := value(ctx, n, ns, key); err == nil {
					for {
						m := minSeen.Load()
						if v >= m || minSeen.CompareAndSwap(m, v) {
							break
						}
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	decrement := func(count int, seed uint64) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for w := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				for next.Add(1) <= int64(count) {
					n := cl.nodes[rng.IntN(len(cl.nodes))]
					status, _ := post(ctx, n, "/v1/counters/"+ns+"/"+key+"/decr", "")
					switch status {
					case http.StatusOK:
						ok.Add(1)
					case http.StatusConflict:
						conflict.Add(1)
					case http.StatusServiceUnavailable:
						unavailable.Add(1)
					default:
						other.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	decrement(60, 1)
	t.Logf("60 decrements, all nodes connected: %d succeeded", ok.Load())
	cl.partition(t, "ap")
	decrement(400, 2)
	t.Logf("400 more with region ap cut off: %d succeeded in all, %d got 503", ok.Load(), unavailable.Load())
	cl.heal(t)
	if err := cl.waitHealthy(ctx); err != nil {
		t.Fatalf("the mesh did not heal: %v", err)
	}
	decrement(540, 3)
	close(stopReads)
	readers.Wait()
	t.Logf("1,000 decrements: %d succeeded, %d got 409, %d got 503, %d other; lowest value read on any node: %d",
		ok.Load(), conflict.Load(), unavailable.Load(), other.Load(), minSeen.Load())
	if ok.Load() != 100 || other.Load() != 0 {
		t.Fatalf("%d decrements succeeded (want exactly 100), %d ended otherwise than 200/409/503", ok.Load(), other.Load())
	}
	if minSeen.Load() < 0 {
		t.Fatalf("a node read %d", minSeen.Load())
	}
	wait.For(t, 30*time.Second, "every node reading 0", func() (bool, string) {
		for _, n := range cl.nodes {
			if v, err := value(ctx, n, ns, key); err != nil || v != 0 {
				return false, fmt.Sprintf("%s reads %d (%v)", n.name, v, err)
			}
		}
		return true, ""
	})
	writeResult(t, "bounded", map[string]any{
		"succeeded": ok.Load(), "conflict": conflict.Load(), "unavailable": unavailable.Load(), "lowest_read": minSeen.Load(),
	})
}

// TestRateLimitAcrossTheMesh (on six containers in three regions): clients hammer every node with one key's limit of 1,000
// per window; at most 1,001 are admitted.
func TestRateLimitAcrossTheMesh(t *testing.T) {
	cl := needMesh(t)
	cl.requireHealthy(t)
	ctx := context.Background()
	key := url.PathEscape("user-" + runID)
	window := time.Hour // one window for the whole run, unless it straddles an hour
	var allowed, refused, failed atomic.Int64
	var wg sync.WaitGroup
	sharesBefore := shareDecisions(ctx, t, cl)
	start := time.Now()
	stop := start.Add(5 * time.Second)
	for w := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := cl.nodes[w%len(cl.nodes)]
			for time.Now().Before(stop) {
				status, ans := post(ctx, n, "/v1/ratelimit/api/"+key, `{"limit":1000,"window":"1h"}`)
				switch {
				case status == http.StatusOK && ans["allowed"] == true:
					allowed.Add(1)
				case status == http.StatusOK:
					refused.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	end := time.Now()
	t.Logf("5 s on 6 nodes: %d admitted, %d refused, %d failed", allowed.Load(), refused.Load(), failed.Load())
	if start.Truncate(window) != end.Truncate(window) {
		t.Skipf("the run straddled a window boundary (%s); the sliding window then admits up to twice the limit", end.Truncate(window))
	}
	// A node that cannot reach the limit's owner in time (a lease call
	// over 250 ms: the 24 clients and six nodes saturate this machine's two
	// cores; in the run that found this, memberlist's probes were timing
	// out in the same second) decides on its share, limit / members,
	// against what it admitted itself (docs/ratelimit.md, "The
	// over-admission bound"). The limit is exact only when no node did.
	var fell []string
	bound := int64(1001)
	for name, after := range shareDecisions(ctx, t, cl) {
		if after > sharesBefore[name] {
			fell = append(fell, fmt.Sprintf("%s (%d)", name, after-sharesBefore[name]))
			bound += 1000 / int64(len(cl.nodes))
		}
	}
	if len(fell) > 0 {
		t.Logf("decided on their share of the limit, as the owner was not reached: %v; bound %d", fell, bound)
	}
	if a := allowed.Load(); a > bound || a < 990 {
		t.Fatalf("%d admitted, want 990..%d of a limit of 1,000", a, bound)
	}
	writeResult(t, "ratelimit", map[string]any{"admitted": allowed.Load(), "refused": refused.Load(), "failed": failed.Load()})
}

// shareDecisions reads each node's count of rate-limit decisions taken on
// its share of a limit (countmesh_ratelimit_decisions_total{source="share"}).
func shareDecisions(ctx context.Context, t *testing.T, cl *cluster) map[string]int64 {
	t.Helper()
	const series = `countmesh_ratelimit_decisions_total{source="share"} `
	out := make(map[string]int64, len(cl.nodes))
	for _, n := range cl.nodes {
		text, err := getText(ctx, n, "/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", n.name, err)
		}
		i := strings.Index(text, series)
		if i < 0 {
			t.Fatalf("metrics of %s lack %s", n.name, strings.TrimSpace(series))
		}
		line, _, _ := strings.Cut(text[i+len(series):], "\n")
		v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
		if err != nil {
			t.Fatalf("metrics of %s: %s%q: %v", n.name, series, line, err)
		}
		out[n.name] = int64(v)
	}
	return out
}
