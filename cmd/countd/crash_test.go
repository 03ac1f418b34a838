package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/countmesh/countmesh/internal/wait"
)

// When the test binary is started with COUNTD_TEST_AS_DAEMON=1 it runs as
// countd itself, so the crash test needs no separate build step.
func TestMain(m *testing.M) {
	if os.Getenv("COUNTD_TEST_AS_DAEMON") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr, nil))
	}
	os.Exit(m.Run())
}

// daemon is a countd process started by a test.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	// respAddr is where its RESP listener listens ("" when off).
	respAddr string
	exit     chan error
}

// startDaemon starts countd on dataDir with a free port and waits for /readyz.
func startDaemon(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, dataDir, extra...)
	waitReady(t, d)
	return d
}

// startMeshDaemon is startDaemon for a member of a mesh whose gossip port
// (and the peer port after it) was found free before the start: args
// gives the daemon's arguments for a port. A port another process took in
// between (an earlier daemon's ephemeral port, say) is replaced with a new
// one, twice at most; *port is the one the daemon got.
func startMeshDaemon(t *testing.T, dataDir string, port *int, args func(port int) []string) *daemon {
	t.Helper()
	for try := 0; ; try++ {
		d, err := tryLaunchDaemon(t, dataDir, args(*port)...)
		if err == nil {
			waitReady(t, d)
			return d
		}
		if !errors.Is(err, errPortTaken) || try == 2 {
			t.Fatal(err)
		}
		t.Logf("gossip port %d was taken before the daemon started; trying another: %v", *port, err)
		*port = freeGossipPort(t)
	}
}

// waitReady waits until d's /readyz answers 200.
func waitReady(t *testing.T, d *daemon) {
	t.Helper()
	wait.Until(t, 20*time.Second, fmt.Sprintf("countd at %s ready", d.addr), func() bool {
		resp, err := http.Get("http://" + d.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// launchDaemon starts countd on dataDir with a free port and returns once
// it serves HTTP (ready or not).
func launchDaemon(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	d, err := tryLaunchDaemon(t, dataDir, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// errPortTaken is in the error of a daemon that could not listen on the
// port it was given (another process took it since it was found free).
var errPortTaken = errors.New("a port it was given is taken")

// tryLaunchDaemon is launchDaemon returning, rather than failing on, a
// daemon that exits or hangs before it serves; the error holds its last
// log lines, and wraps errPortTaken when it could not listen.
func tryLaunchDaemon(t *testing.T, dataDir string, extra ...string) (*daemon, error) {
	t.Helper()
	args := append([]string{"--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--gossip-addr", "off", "--node-name", "crash-test", "--log-level", "info"}, extra...)
	// COUNTD_TEST_LOG_DIR keeps each daemon's log there, named by its
	// node name (the last --node-name wins), for a failure's diagnosis.
	var logFile *os.File
	if dir := os.Getenv("COUNTD_TEST_LOG_DIR"); dir != "" {
		name := "countd"
		for i, a := range args[:len(args)-1] {
			if a == "--node-name" {
				name = args[i+1]
			}
		}
		f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		logFile = f
		if os.Getenv("COUNTD_TEST_LOG_DEBUG") != "" {
			args = append(args, "--log-level", "debug")
		}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "COUNTD_TEST_AS_DAEMON=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start countd: %v", err)
	}
	d := &daemon{cmd: cmd, exit: make(chan error, 1)}
	addrCh := make(chan string, 1)
	scanned := make(chan struct{}) // closed once stderr is read to its end
	var tail struct {
		sync.Mutex
		lines []string // the last 20 log lines
	}
	go func() {
		if logFile != nil {
			defer logFile.Close()
		}
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if logFile != nil {
				logFile.Write(append(sc.Bytes(), '\n'))
			}
			tail.Lock()
			tail.lines = append(tail.lines, sc.Text())
			if len(tail.lines) > 20 {
				tail.lines = tail.lines[1:]
			}
			tail.Unlock()
			var line struct {
				Msg      string `json:"msg"`
				HTTPAddr string `json:"http_addr"`
				RespAddr string `json:"resp_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if line.RespAddr != "" {
				d.respAddr = line.RespAddr // read after addrCh's receive
			}
			if line.Msg == "countd serving" {
				addrCh <- line.HTTPAddr
			}
		}
		io.Copy(io.Discard, stderr)
		close(scanned)
	}()
	// Wait closes stderr once the process exits, so it waits for the
	// reader: called at once, it lost a daemon's last lines now and then,
	// and a failed start reported none.
	go func() {
		<-scanned
		d.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.exit
		d.exit <- nil
	})
	select {
	case d.addr = <-addrCh:
		// A node listening on every interface is still called on loopback.
		if host, port, err := net.SplitHostPort(d.addr); err == nil && (host == "0.0.0.0" || host == "::") {
			d.addr = net.JoinHostPort("127.0.0.1", port)
		}
	case err := <-d.exit:
		d.exit <- err // for the cleanup, which waits for it
		tail.Lock()
		defer tail.Unlock()
		logged := strings.Join(tail.lines, "\n")
		if strings.Contains(logged, "address already in use") {
			err = errors.Join(err, errPortTaken)
		}
		return nil, fmt.Errorf("countd exited before serving: %w; its last log lines:\n%s", err, logged)
	case <-time.After(20 * time.Second):
		return nil, errors.New("countd did not start serving within 20 s")
	}
	return d, nil
}

func readCounter(t *testing.T, addr, ns, key string) int64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/v1/counters/%s/%s", addr, ns, key))
	if err != nil {
		t.Fatalf("read %s/%s: %v", ns, key, err)
	}
	defer resp.Body.Close()
	var body struct{ Value int64 }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("read %s/%s: status %d", ns, key, resp.StatusCode)
	}
	return body.Value
}

// TestCrashKeepsAcknowledgedIncrements kills countd with SIGKILL while
// several clients increment (sync durability), restarts it on the same data
// directory, and checks acked <= value <= attempted for every counter. It
// repeats 20 times over the same data, so that recovery of recovered state
// is exercised too.
func TestCrashKeepsAcknowledgedIncrements(t *testing.T) {
	const (
		rounds  = 20
		writers = 8
		keys    = 40
	)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t.Logf("seed for the kill times is this run's clock; rounds=%d writers=%d keys=%d", rounds, writers, keys)
	var mu sync.Mutex
	attempted := make([]int64, keys) // sum of by sent, whatever the answer
	acked := make([]int64, keys)     // sum of by answered 200
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	totalAcked := 0
	for round := range rounds {
		d := startDaemon(t, dir)
		// Check the previous rounds' counts survived, then count on.
		for k := range keys {
			v := readCounter(t, d.addr, "crash", fmt.Sprintf("k%d", k))
			mu.Lock()
			lo, hi := acked[k], attempted[k]
			mu.Unlock()
			if v < lo || v > hi {
				t.Fatalf("round %d: k%d = %d after restart, want %d <= value <= %d", round, k, v, lo, hi)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var roundAcked sync.WaitGroup
		roundAcked.Add(1)
		var once sync.Once
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				for n := 0; ctx.Err() == nil && n < 100_000; n++ {
					k := r.IntN(keys)
					by := int64(1 + r.IntN(3))
					mu.Lock()
					attempted[k] += by
					mu.Unlock()
					req, _ := http.NewRequestWithContext(ctx, "POST",
						fmt.Sprintf("http://%s/v1/counters/crash/k%d/incr", d.addr, k),
						strings.NewReader(fmt.Sprintf(`{"by":%d}`, by)))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						continue // outcome unknown: counted as attempted only
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						acked[k] += by
						totalAcked++
						mu.Unlock()
						once.Do(roundAcked.Done)
					}
				}
			}()
		}
		roundAcked.Wait() // kill only once writes are flowing
		time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		<-d.exit
		d.exit <- nil
		cancel()
		wg.Wait()
	}
	d := startDaemon(t, dir)
	for k := range keys {
		v := readCounter(t, d.addr, "crash", fmt.Sprintf("k%d", k))
		if v < acked[k] || v > attempted[k] {
			t.Fatalf("final: k%d = %d, want %d <= value <= %d", k, v, acked[k], attempted[k])
		}
	}
	if totalAcked < rounds*10 {
		t.Fatalf("only %d increments acknowledged over %d rounds: the test did not exercise the write path", totalAcked, rounds)
	}
	t.Logf("%d increments acknowledged across %d SIGKILLs; none lost", totalAcked, rounds)
}
