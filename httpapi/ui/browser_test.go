//go:build uitest

package ui_test

// The dashboard in a real headless Chromium (Debian's chromium, driven by
// chromedp) against a mesh of three countd processes with API tokens:
//
//	make ui-test
//
// It needs chromium on PATH (scripts/install-chromium.sh installs it) and
// builds countd itself. UI_SCREENSHOT=docs/dashboard.png keeps the
// screenshot there; otherwise it goes to a temporary directory.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/countmesh/countmesh/internal/wait"
)

// The tokens of the mesh: the page gets the read token only.
const (
	adminToken = "ui-test-admin-token-0123456789abcdef"
	readToken  = "ui-test-read-token-0123456789abcdef"
)

// countd is one countd process of the test mesh.
type countd struct {
	name, region string
	ip           string
	gossipPort   int
	httpAddr     string
	cmd          *exec.Cmd
	output       syncBuffer
	exited       chan struct{}
}

// syncBuffer is a bytes.Buffer that a process writes while the test may
// read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil // enough to tell what went wrong
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildCountd builds ./cmd/countd into a temporary directory.
func buildCountd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "countd")
	gotool := os.Getenv("GO")
	if gotool == "" {
		gotool = "go"
	}
	out, err := exec.Command(gotool, "build", "-o", bin, "github.com/countmesh/countmesh/cmd/countd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build countd: %v\n%s", err, out)
	}
	return bin
}

// freePorts returns ports that are free on ip right now: gossip, such that
// gossip (TCP and UDP: memberlist) and gossip+1 (TCP: the peer listener)
// are, and another for HTTP. It holds each until it has them all, so that
// the HTTP port is none of the others.
func freePorts(t *testing.T, ip string) (gossip, httpPort int) {
	t.Helper()
	port := func(a net.Addr) int {
		_, p, _ := net.SplitHostPort(a.String())
		n, _ := strconv.Atoi(p)
		return n
	}
	for range 100 {
		var held []io.Closer
		hold := func(c io.Closer, err error) bool {
			if err == nil {
				held = append(held, c)
			}
			return err == nil
		}
		l, err := net.Listen("tcp", ip+":0")
		if !hold(l, err) {
			t.Fatalf("listen on %s: %v", ip, err)
		}
		gossip = port(l.Addr())
		ok := gossip < 65535 &&
			hold(net.ListenPacket("udp", fmt.Sprintf("%s:%d", ip, gossip))) &&
			hold(net.Listen("tcp", fmt.Sprintf("%s:%d", ip, gossip+1)))
		h, err := net.Listen("tcp", ip+":0")
		if hold(h, err) {
			httpPort = port(h.Addr())
		}
		for _, c := range held {
			c.Close()
		}
		if ok && err == nil {
			return gossip, httpPort
		}
	}
	t.Fatalf("no free ports on %s", ip)
	return 0, 0
}

// start runs the node (its output kept for the report of a failure).
func (n *countd) start(t *testing.T, bin, tokensFile, join string) {
	t.Helper()
	args := []string{
		"--node-name", n.name, "--region", n.region, "--data-dir", t.TempDir(),
		"--http-addr", n.httpAddr, "--gossip-addr", fmt.Sprintf("%s:%d", n.ip, n.gossipPort),
		"--api-tokens-file", tokensFile, "--log-level", "info",
	}
	if join != "" {
		args = append(args, "--join", join)
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stderr = &n.output
	n.cmd.Stdout = &n.output
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", n.name, err)
	}
	n.exited = make(chan struct{})
	go func() {
		_ = n.cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", n.name, n.output.String())
		}
	})
}

// call sends an API request with token and decodes the JSON answer into out.
func call(t *testing.T, method, url, token, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestDashboardInChromium opens the dashboard of n1 with a read token in
// headless Chromium and checks that it loads without a console error or
// an exception, shows the three members, and shows an increment made on
// n3 within a second; it keeps a screenshot.
func TestDashboardInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not on PATH: run scripts/install-chromium.sh (as root) first")
	}
	bin := buildCountd(t)
	tokensFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokensFile, []byte(adminToken+" admin\n"+readToken+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := []*countd{
		{name: "n1", region: "eu-west", ip: "127.0.0.1"},
		{name: "n2", region: "eu-west", ip: "127.0.0.2"},
		{name: "n3", region: "us-east", ip: "127.0.0.3"},
	}
	for i, n := range nodes {
		gossip, httpPort := freePorts(t, n.ip)
		n.gossipPort, n.httpAddr = gossip, fmt.Sprintf("%s:%d", n.ip, httpPort)
		join := ""
		if i > 0 {
			join = fmt.Sprintf("%s:%d", nodes[0].ip, nodes[0].gossipPort)
		}
		n.start(t, bin, tokensFile, join)
	}
	url := func(n *countd, path string) string { return "http://" + n.httpAddr + path }
	// Ready nodes; the configs below reaching every node show the mesh
	// formed, and the page is asked to show its three members.
	wait.For(t, 30*time.Second, "three ready nodes", func() (bool, string) {
		for _, n := range nodes {
			if code := call(t, "GET", url(n, "/readyz"), "", "", nil); code != 200 {
				return false, fmt.Sprintf("%s answers readyz %d", n.name, code)
			}
		}
		return true, ""
	})

	// A namespace with windows, written on every node; "home" is the
	// counter the page shows, the others get background traffic.
	if code := call(t, "PUT", url(nodes[0], "/v1/namespaces/pages"), adminToken, `{"windows":["1s","1m","1h"],"retention":{"1s":"1h"}}`, nil); code != 200 {
		t.Fatalf("PUT /v1/namespaces/pages: %d", code)
	}
	if code := call(t, "PUT", url(nodes[1], "/v1/namespaces/signups"), adminToken, `{"type":"exact","min":0,"max":1000000}`, nil); code != 200 {
		t.Fatalf("PUT /v1/namespaces/signups: %d", code)
	}
	// Writes wait for the configs to reach every node: a node that
	// has not heard of the windows yet keeps no buckets for its writes.
	wait.For(t, 30*time.Second, "the namespace configs on every node", func() (bool, string) {
		for _, n := range nodes {
			var pages, signups struct {
				Type    string
				Windows []string
			}
			call(t, "GET", url(n, "/v1/namespaces/pages"), readToken, "", &pages)
			call(t, "GET", url(n, "/v1/namespaces/signups"), readToken, "", &signups)
			if len(pages.Windows) != 3 || signups.Type != "exact" {
				return false, fmt.Sprintf("%s has pages %+v, signups %+v", n.name, pages, signups)
			}
		}
		return true, ""
	})
	incr := func(n *countd, ns, key string, by int) int64 {
		t.Helper()
		var ans struct{ Value int64 }
		if code := call(t, "POST", url(n, "/v1/counters/"+ns+"/"+key+"/incr"), adminToken, fmt.Sprintf(`{"by":%d}`, by), &ans); code != 200 {
			t.Fatalf("incr %s/%s on %s: %d", ns, key, n.name, code)
		}
		return ans.Value
	}
	for i, n := range nodes {
		incr(n, "pages", "home", 10*(i+1))
		incr(n, "signups", "today", i+1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var traffic sync.WaitGroup
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		keys := []string{"blog/intro", "pricing", "docs/api", "docs/quickstart", "about", "changelog", "careers"}
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Skewed towards the first keys, so that the ranking is stable.
			k := keys[min(rng.IntN(len(keys)), rng.IntN(len(keys)))]
			n := nodes[1+rng.IntN(2)]
			call(t, "POST", url(n, "/v1/counters/pages/"+strings.ReplaceAll(k, "/", "%2F")+"/incr"), adminToken, fmt.Sprintf(`{"by":%d}`, 1+rng.IntN(5)), nil)
		}
	}()
	t.Cleanup(func() { cancel(); traffic.Wait() })

	// The browser.
	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1360, 1000))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Every console message and every request, from before the page loads.
	var mu sync.Mutex
	var problems, requests []string
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
				mu.Unlock()
			}
		}
	}()
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			auth, _ := e.Request.Headers["Authorization"].(string)
			mu.Lock()
			requests = append(requests, e.Request.URL+" auth="+fmt.Sprint(auth != ""))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	js := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}

	// Without a token the page asks for one, and calls no API.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(url(nodes[0], "/ui/#ns=pages&key=home")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	); err != nil {
		t.Fatalf("the page does not ask for a token: %v", err)
	}
	if got := js(`String(document.getElementById('dash').hidden)`); got != "true" {
		t.Fatalf("the dashboard shows before a token was given (hidden=%s)", got)
	}
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#token"), readToken),
		chromedp.Click(chromedp.CSS("#login-form button")),
	); err != nil {
		t.Fatal(err)
	}

	// The three members, each alive, in their regions.
	wait.For(t, 10*time.Second, "the page shows the three members", func() (bool, string) {
		got := js(`[...document.querySelectorAll('#regions [data-member]')].map(m => m.closest('[data-region]').dataset.region + '/' + m.dataset.member + ':' + m.dataset.state).sort().join(' ')`)
		return got == "eu-west/n1:alive eu-west/n2:alive us-east/n3:alive", got
	})
	wait.For(t, 10*time.Second, "the replication lag of both peers", func() (bool, string) {
		got := js(`[...document.querySelectorAll('#lag [data-peer]')].map(r => r.dataset.peer).sort().join(' ')`)
		return got == "n2 n3", got
	})
	wait.For(t, 10*time.Second, "both namespaces with their configs", func() (bool, string) {
		got := js(`[...document.querySelectorAll('#ns-table tbody tr')].map(r => r.textContent).join(' | ')`)
		return strings.Contains(got, "pageseventualsync1s 1m 1h1s:1h") && strings.Contains(got, "signupsexact"), got
	})

	// home's live value, then increments on n3 (not the node the page
	// reads from): each must show within a second of its acknowledgment.
	value := func() string { return js(`document.getElementById('counter-value').dataset.value`) }
	wait.For(t, 10*time.Second, "home's value on the page", func() (bool, string) {
		v := value()
		return v == "60", v
	})
	// The writer answers its own view, which may lack the previous
	// increment made on the other writer: the page must show the sum.
	var slowest time.Duration
	total := 60
	for i := range 5 {
		writer := nodes[2-i%2] // n3, n2, n3, ...
		incr(writer, "pages", "home", i+1)
		total += i + 1
		want := fmt.Sprint(total)
		took := wait.For(t, time.Second, "the page shows home = "+want+" after an increment on "+writer.name, func() (bool, string) {
			v := value()
			return v == want, v
		})
		slowest = max(slowest, took)
	}
	t.Logf("the page showed increments made on other nodes within %v at most", slowest)

	// Top-K with sparklines, and a live rate from the background traffic.
	wait.For(t, 10*time.Second, "top-K with sparklines", func() (bool, string) {
		got := js(`String(document.querySelectorAll('#top-table tbody tr[data-key] svg.sparkline').length)`)
		return got == "8", got
	})
	wait.For(t, 10*time.Second, "home = 75 in top-K", func() (bool, string) {
		got := js(`(document.querySelector('#top-table tr[data-key="home"] td.num') || {}).textContent || 'no row'`)
		return got == "75", got
	})
	wait.For(t, 10*time.Second, "a live rate", func() (bool, string) {
		got := js(`document.getElementById('rate-up').textContent`)
		return got != "0" && got != "–", got
	})
	// The chart holds every increment of the last minute: those written
	// on the three nodes before the page opened (replicated buckets) and
	// the five made while it watched (live, or after a refresh).
	wait.For(t, 20*time.Second, "home's series chart totals 75", func() (bool, string) {
		got := js(`document.getElementById('counter-chart').dataset.total + ' over ' + document.querySelectorAll('#counter-chart rect.bar').length + ' bars'`)
		return strings.HasPrefix(got, "75 over "), got
	})

	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1360, 1000)); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if _, err := png.Decode(bytes.NewReader(shot)); err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	path := os.Getenv("UI_SCREENSHOT")
	if path == "" {
		path = filepath.Join(os.TempDir(), "countmesh-dashboard.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)

	// The token stays out of URLs and the page; every API call sent it.
	if got := js(`location.href + ' ' + document.body.innerText`); strings.Contains(got, readToken) {
		t.Errorf("the token shows in the URL or the page: %s", got)
	}
	mu.Lock()
	seen := slices.Clone(problems)
	mu.Unlock()

	// "Forget token" forgets it; a wrong token is refused with a message
	// (Chromium logs that 401 to the console, so the check of the
	// console above is of what came before).
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#signout"))); err != nil {
		t.Fatal(err)
	}
	if got := js(`document.getElementById('login').hidden + ' ' + sessionStorage.length`); got != "false 0" {
		t.Errorf("after Forget token: login hidden, sessionStorage entries = %s, want false 0", got)
	}
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#token"), "not-a-token-of-this-mesh-0123456789"),
		chromedp.Click(chromedp.CSS("#login-form button")),
	); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "a wrong token refused on the page", func() (bool, string) {
		got := js(`document.getElementById('login').hidden + ' ' + document.getElementById('login-error').textContent`)
		return strings.HasPrefix(got, "false The node refused the token"), got
	})

	mu.Lock()
	defer mu.Unlock()
	api := 0
	for _, r := range requests {
		if strings.Contains(r, readToken) {
			t.Errorf("a request URL holds the token: %s", r)
		}
		if strings.Contains(r, "/v1/") {
			api++
			if !strings.HasSuffix(r, "auth=true") {
				t.Errorf("an API call without the token: %s", r)
			}
		}
	}
	if api < 10 {
		t.Errorf("only %d API calls seen: %v", api, requests)
	}
	for _, p := range seen {
		t.Errorf("console: %s", p)
	}
}
