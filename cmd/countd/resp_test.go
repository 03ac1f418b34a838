package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRespAddrFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "127.0.0.1:6380"},
		{[]string{"--http-addr", "10.1.2.3:7070"}, nil, "10.1.2.3:6380"},
		{[]string{"--http-addr", "[::1]:7070"}, nil, "[::1]:6380"},
		{[]string{"--http-addr", "127.0.0.1:0"}, nil, "127.0.0.1:0"},
		{[]string{"--resp-addr", "off"}, nil, ""},
		{nil, map[string]string{"COUNTMESH_RESP_ADDR": "127.0.0.2:7000"}, "127.0.0.2:7000"},
		{[]string{"--resp-addr", "127.0.0.3:1"}, map[string]string{"COUNTMESH_RESP_ADDR": "off"}, "127.0.0.3:1"},
	} {
		o, err := parseFlags(tc.args, io.Discard, func(k string) string { return tc.env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if got := o.respListenAddr(); got != tc.want {
			t.Errorf("%v %v: RESP address %q, want %q", tc.args, tc.env, got, tc.want)
		}
	}
	// Protected mode: a RESP listener on the network needs tokens, and
	// the message names the flags.
	var stderr strings.Builder
	code := run([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--gossip-addr", "off", "--resp-addr", "0.0.0.0:0"}, &stderr, nil)
	if code == 0 || !strings.Contains(stderr.String(), "--resp-addr 0.0.0.0:0 is not a loopback address and no --api-tokens-file") || !strings.Contains(stderr.String(), "--insecure") {
		t.Errorf("an exposed RESP listener without tokens: exit %d\n%s", code, stderr.String())
	}
}

// redisTool returns the path of a redis-tools program, or skips the test
// saying how to install it.
func redisTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed, so the test against the real Redis tools cannot run: install them with scripts/install-redis-tools.sh (apt-get install redis-tools)", name)
	}
	return p
}

// redisCLI runs redis-cli against addr with args and returns its output.
func redisCLI(t *testing.T, addr string, stdin string, args ...string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(redisTool(t, "redis-cli"), append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestRedisToolsAgainstCountd runs the real redis-cli and redis-benchmark
// against a countd process: commands, errors, a --pipe mass insertion, a
// benchmark whose every INCR must be counted, and tokens.
func TestRedisToolsAgainstCountd(t *testing.T) {
	bench := redisTool(t, "redis-benchmark")
	redisTool(t, "redis-cli")
	d := startDaemon(t, t.TempDir())
	if d.respAddr == "" {
		t.Fatal("countd logged no RESP address")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"INCRBY", "pages:cli", "5"}, "5"},
		{[]string{"DECR", "pages:cli"}, "4"},
		{[]string{"GET", "pages:cli"}, "4"},
		{[]string{"GET", "pages:never"}, "0"},
		{[]string{"SET", "pages:cli", "hello"}, "ERR value is not an integer or out of range"},
		{[]string{"INCR", "nonamespace"}, "ERR key 'nonamespace' has no namespace"},
		{[]string{"NOSUCH", "x"}, "ERR unknown command 'NOSUCH', with args beginning with: 'x'"},
		{[]string{"MGET", "pages:cli", "pages:never"}, "4\n0"},
	} {
		if got := redisCLI(t, d.respAddr, "", tc.args...); !strings.HasPrefix(got, tc.want) {
			t.Errorf("redis-cli %v = %q, want %q", tc.args, got, tc.want)
		}
	}
	// Mass insertion as the Redis documentation shows it.
	var pipe strings.Builder
	for range 1000 {
		pipe.WriteString("*2\r\n$4\r\nINCR\r\n$10\r\npages:pipe\r\n")
	}
	if got := redisCLI(t, d.respAddr, pipe.String(), "--pipe"); !strings.Contains(got, "errors: 0, replies: 1000") {
		t.Errorf("redis-cli --pipe: %q", got)
	}
	if v := readCounter(t, d.addr, "pages", "pipe"); v != 1000 {
		t.Errorf("after --pipe of 1000 INCR: %d", v)
	}
	// redis-benchmark: pipelined and not; without -r every INCR goes to
	// counter:__rand_int__, so the counter must hold them all.
	host, port, _ := net.SplitHostPort(d.respAddr)
	for _, args := range [][]string{{"-c", "4", "-P", "16"}, {"-c", "8"}} {
		cmd := exec.Command(bench, append([]string{"-h", host, "-p", port, "-t", "incr", "-n", "2000", "-q"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "INCR: ") {
			t.Fatalf("redis-benchmark %v: %v\n%s", args, err, out)
		}
		t.Logf("redis-benchmark %v: %s", args, strings.TrimSpace(string(out)))
	}
	if v := readCounter(t, d.addr, "counter", "__rand_int__"); v != 4000 {
		t.Errorf("after redis-benchmark's 2 x 2000 INCR: %d", v)
	}

	// With tokens: NOAUTH without one, -a token works.
	const token = "resp-tools-token-0123456789abcdef"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(token+" write\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDaemon(t, t.TempDir(), "--api-tokens-file", tokens)
	if got := redisCLI(t, s.respAddr, "", "INCR", "pages:a"); !strings.HasPrefix(got, "NOAUTH Authentication required.") {
		t.Errorf("INCR without a token: %q", got)
	}
	if got := redisCLI(t, s.respAddr, "", "--no-auth-warning", "-a", token, "INCR", "pages:a"); got != "1" {
		t.Errorf("INCR with -a token: %q", got)
	}
	if got := redisCLI(t, s.respAddr, "", "--no-auth-warning", "--user", "default", "--pass", token, "INCR", "pages:a"); got != "2" {
		t.Errorf("INCR with --user default --pass token: %q", got)
	}
}
