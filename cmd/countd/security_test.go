package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/gossiptest"
	"github.com/countmesh/countmesh/internal/pki"
	"github.com/countmesh/countmesh/internal/wait"
)

// The security checks of the hostile-networks work, against real countd
// processes on loopback: protected mode, a secured mesh that keeps
// strangers out, API tokens, slow and numerous clients, and every attack
// found by an outsider, each refused with the process up, ready, and every
// counter reading what it read before.

func TestProtectedModeRefusesExposedListeners(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--http-addr", "0.0.0.0:0", "--gossip-addr", "off"}, []string{"--api-tokens-file", "--insecure"}},
		{[]string{"--http-addr", "127.0.0.1:0", "--gossip-addr", "0.0.0.0:0"}, []string{"--tls-ca", "--gossip-key-file", "--insecure"}},
		{[]string{"--http-addr", "127.0.0.1:0", "--gossip-addr", "off", "--admin-addr", ":6060"}, []string{"--admin-addr", "--insecure"}},
		{[]string{"--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--tls-ca", "x"}, []string{"--tls-ca, --tls-cert and --tls-key go together"}},
	}
	for _, tc := range cases {
		var stderr strings.Builder
		code := run(append([]string{"--data-dir", dir}, tc.args...), &stderr, nil)
		if code == 0 {
			t.Fatalf("countd %v started", tc.args)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("countd %v: the message does not name %s:\n%s", tc.args, w, stderr.String())
			}
		}
		if strings.Contains(stderr.String(), "goroutine ") {
			t.Errorf("countd %v printed a stack trace:\n%s", tc.args, stderr.String())
		}
	}
	// With --insecure the same node starts (and warns).
	d := startDaemon(t, t.TempDir(), "--http-addr", "0.0.0.0:0", "--insecure")
	if code := getJSON(t, "http://"+d.addr+"/readyz", nil); code != 200 {
		t.Fatalf("an --insecure node on 0.0.0.0 answers readyz %d", code)
	}
}

// meshSecrets are the files of a secured test mesh.
type meshSecrets struct {
	dir, otherCA             string
	keyFile, otherKeyFile    string
	tokensFile               string
	admin, reader, pagesOnly string
}

func makeSecrets(t *testing.T, nodes ...string) meshSecrets {
	t.Helper()
	s := meshSecrets{dir: t.TempDir(), otherCA: t.TempDir()}
	if err := pki.CreateCA(s.dir); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateCA(s.otherCA); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := pki.CreateNode(s.dir, n, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
		if err := pki.CreateNode(s.otherCA, n, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s.keyFile = write("gossip.key", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))+"\n")
	s.otherKeyFile = write("other.key", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))+"\n")
	s.admin, s.reader, s.pagesOnly = "admin-token-0123456789abcdef", "reader-token-0123456789abcdef", "pages-token-0123456789abcdef"
	s.tokensFile = write("tokens", fmt.Sprintf("# test tokens\n%s admin\n%s read\n%s write pages*\n", s.admin, s.reader, s.pagesOnly))
	return s
}

func (s meshSecrets) flags(name, caDir, keyFile string) []string {
	return []string{
		"--tls-ca", filepath.Join(caDir, "ca.crt"), "--tls-cert", filepath.Join(caDir, name+".crt"), "--tls-key", filepath.Join(caDir, name+".key"),
		"--gossip-key-file", keyFile, "--api-tokens-file", s.tokensFile,
	}
}

// call makes an HTTP request with an optional bearer token and returns the
// status and the decoded JSON body.
func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func members(t *testing.T, addr, token string) []string {
	t.Helper()
	code, body := call(t, "GET", "http://"+addr+"/v1/cluster", token, "")
	if code != 200 {
		t.Fatalf("cluster of %s: %d %v", addr, code, body)
	}
	var out []string
	ms, _ := body["members"].([]any)
	for _, m := range ms {
		mm, _ := m.(map[string]any)
		if mm["state"] == "alive" {
			out = append(out, mm["name"].(string))
		}
	}
	return out
}

func value(t *testing.T, addr, token, ns, key string) int64 {
	t.Helper()
	code, body := call(t, "GET", "http://"+addr+"/v1/counters/"+ns+"/"+key, token, "")
	if code != 200 {
		t.Fatalf("read %s/%s on %s: %d %v", ns, key, addr, code, body)
	}
	return int64(body["value"].(float64))
}

// TestSecuredMeshOfProcesses: three processes with mutual TLS, a gossip
// key and tokens converge as before; a fourth with a certificate of
// another CA, and a fifth with another gossip key, never appear in
// /v1/cluster and none of their writes arrive; tokens are enforced.
func TestSecuredMeshOfProcesses(t *testing.T) {
	s := makeSecrets(t, "n1", "n2", "n3", "x", "y")
	type proc struct {
		name, region string
		gossip       int
		d            *daemon
	}
	procs := []*proc{{name: "n1", region: "r1"}, {name: "n2", region: "r2"}, {name: "n3", region: "r2"}}
	start := func(name, region string, gossip int, extra []string) *daemon {
		args := append([]string{"--node-name", name, "--region", region, "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", gossip)}, extra...)
		if name != "n1" {
			args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", procs[0].gossip))
		}
		if name == "x" || name == "y" {
			// A stranger never becomes ready: no member will sync with it.
			return launchDaemon(t, t.TempDir(), args...)
		}
		return startDaemon(t, t.TempDir(), args...)
	}
	for _, p := range procs {
		p.gossip = freeGossipPort(t)
		p.d = start(p.name, p.region, p.gossip, s.flags(p.name, s.dir, s.keyFile))
	}
	wait.For(t, 15*time.Second, "membership", func() (bool, string) {
		for _, p := range procs {
			if m := members(t, p.d.addr, s.reader); len(m) != 3 {
				return false, fmt.Sprintf("%s sees %v", p.name, m)
			}
		}
		return true, ""
	})
	// Convergence, as before: a write on n1 read on n3 within 1 s.
	for i := range 5 {
		if code, body := call(t, "POST", "http://"+procs[0].d.addr+"/v1/counters/pages/home/incr", s.admin, `{"by":2}`); code != 200 {
			t.Fatalf("incr: %d %v", code, body)
		}
		want := int64(2 * (i + 1))
		took := wait.For(t, 5*time.Second, "convergence", func() (bool, string) {
			v := value(t, procs[2].d.addr, s.reader, "pages", "home")
			return v == want, fmt.Sprintf("n3 reads %d, want %d", v, want)
		})
		if took > time.Second {
			t.Errorf("write %d reached n3 after %v (want within 1 s)", i, took)
		}
		t.Logf("write %d converged on n3 after %v", i, took)
	}
	// Every node has the last write before the strangers come: below, a
	// node reading anything but 10 means a stranger's write arrived.
	wait.For(t, 5*time.Second, "every node reads 10", func() (bool, string) {
		for _, p := range procs {
			if v := value(t, p.d.addr, s.reader, "pages", "home"); v != 10 {
				return false, fmt.Sprintf("%s reads %d", p.name, v)
			}
		}
		return true, ""
	})

	// The strangers: x has the gossip key but a certificate of another CA;
	// y has a certificate of the mesh's CA but another gossip key.
	xd := start("x", "r1", freeGossipPort(t), s.flags("x", s.otherCA, s.keyFile))
	yd := start("y", "r1", freeGossipPort(t), s.flags("y", s.dir, s.otherKeyFile))
	for _, d := range []*daemon{xd, yd} {
		// Not ready, so it may refuse; if it accepts, the write must stay
		// with it.
		call(t, "POST", "http://"+d.addr+"/v1/counters/pages/home/incr", s.admin, `{"by":1000}`)
		if code := getJSON(t, "http://"+d.addr+"/readyz", nil); code == 200 {
			t.Errorf("a stranger at %s became ready: it synced with a member", d.addr)
		}
	}
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			for _, m := range members(t, p.d.addr, s.reader) {
				if m == "x" || m == "y" {
					t.Fatalf("%s lists %s among its members", p.name, m)
				}
			}
			if v := value(t, p.d.addr, s.reader, "pages", "home"); v != 10 {
				t.Fatalf("%s reads %d: a stranger's write arrived (want 10)", p.name, v)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Tokens: scopes and namespace patterns decide what each token may do.
	a := "http://" + procs[1].d.addr
	for _, c := range []struct {
		method, path, token, body string
		status                    int
		code                      string
	}{
		{"GET", "/v1/counters/pages/home", "", "", 401, "unauthenticated"},
		{"GET", "/v1/counters/pages/home", "not-a-token-0123456789", "", 401, "unauthenticated"},
		{"POST", "/v1/counters/pages/home/incr", s.reader, "", 403, "permission_denied"},
		{"POST", "/v1/counters/likes/p1/incr", s.pagesOnly, "", 403, "permission_denied"},
		{"PUT", "/v1/namespaces/pages", s.pagesOnly, `{"durability":"sync"}`, 403, "permission_denied"},
		{"POST", "/v1/batch", s.pagesOnly, `{"ops":[{"ns":"pages","key":"a"},{"ns":"likes","key":"b"}]}`, 403, "permission_denied"},
		{"POST", "/v1/counters/pages-eu/home/incr", s.pagesOnly, "", 200, ""},
		{"GET", "/healthz", "", "", 200, ""},
		{"GET", "/readyz", "", "", 200, ""},
		{"GET", "/metrics", "", "", 401, "unauthenticated"},
		{"GET", "/debug/pprof/", s.admin, "", 404, "not_found"},
		{"POST", "/internal/v1/state", s.admin, "", 404, "not_found"},
	} {
		code, body := call(t, c.method, a+c.path, c.token, c.body)
		if code != c.status || (c.code != "" && errCode(body) != c.code) {
			t.Errorf("%s %s with token %q: %d %v, want %d %s", c.method, c.path, c.token, code, body, c.status, c.code)
		}
	}
	if v := value(t, procs[1].d.addr, s.reader, "likes", "b"); v != 0 {
		t.Errorf("the refused batch applied its allowed op: likes/b reads %d", v)
	}
	if v := value(t, procs[1].d.addr, s.reader, "pages", "a"); v != 0 {
		t.Errorf("the refused batch applied part of itself: pages/a reads %d", v)
	}

	// countctl with --token against the secured node.
	ctl := buildCountctl(t)
	out, err := exec.Command(ctl, "--addr", a, "--token", s.admin, "incr", "pages", "ctl", "5").CombinedOutput()
	if err != nil {
		t.Fatalf("countctl --token incr: %v\n%s", err, out)
	}
	out, err = exec.Command(ctl, "--addr", a, "get", "pages", "ctl").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "token") {
		t.Fatalf("countctl without a token: %v\n%s (want exit 1 naming the token)", err, out)
	}
}

// buildCountctl builds countctl into a temporary directory.
func buildCountctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "countctl")
	out, err := exec.Command("go", "build", "-o", bin, "../countctl").CombinedOutput()
	if err != nil {
		t.Fatalf("build countctl: %v\n%s", err, out)
	}
	return bin
}

// rssBytes reads a process's resident set size from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// peerFrame is one frame of the peer protocol as an attacker writes it.
func peerFrame(t *testing.T, typ byte, v any) []byte {
	t.Helper()
	b, err := gossiptest.Frame(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type attackHello struct {
	Proto, Kind  uint8
	Name, Region string
}

// sendRaw connects to addr, writes b and reports whether the server
// closed the connection within d (reading whatever it sent).
func sendRaw(t *testing.T, addr string, b []byte, d time.Duration) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(d))
	_, err = io.Copy(io.Discard, c)
	return err == nil // EOF: closed by the server
}

// TestAttacksOnARealNode replays, against real processes, every attack an
// outsider found with nothing but network access. Each is refused, the
// node stays up and ready, and the counters read what they read before.
func TestAttacksOnARealNode(t *testing.T) {
	g1, g2 := freeGossipPort(t), freeGossipPort(t)
	n1 := startDaemon(t, t.TempDir(), "--node-name", "n1", "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", g1))
	n2 := startDaemon(t, t.TempDir(), "--node-name", "n2", "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", g2), "--join", fmt.Sprintf("127.0.0.1:%d", g1))
	base := "http://" + n1.addr
	for _, k := range []string{"a", "b"} {
		if code, body := call(t, "POST", base+"/v1/counters/pages/"+k+"/incr", "", `{"by":5}`); code != 200 {
			t.Fatalf("incr: %d %v", code, body)
		}
	}
	wait.For(t, 10*time.Second, "n2 has the counters", func() (bool, string) {
		v := value(t, n2.addr, "", "pages", "b")
		return v == 5, fmt.Sprintf("n2 reads %d", v)
	})
	peer := fmt.Sprintf("127.0.0.1:%d", g1+1)
	rss0 := rssBytes(t, n1.cmd.Process.Pid)

	// The 15-byte body that made msgpack allocate 128 GiB: on the old peer
	// route (gone from the public listener) and on the public batch route.
	oom := []byte{0x81, 0xa6, 's', 't', 'a', 't', 'e', 's', 0xdd, 0x7f, 0xff, 0xff, 0xff}
	for _, path := range []string{"/internal/v1/state", "/v1/batch"} {
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(oom))
		req.Header.Set("Content-Type", "application/msgpack")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v (did the node die?)", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 400 {
			t.Errorf("POST %s with the 15-byte body: %d, want 404 or 400", path, resp.StatusCode)
		}
	}
	// Deep nesting under an unknown field: the msgpack decoder recursed
	// once per level while skipping it, and 8 MiB of it overflowed the
	// stack (a fatal error no recover catches). On the public batch route
	// and on the peer port.
	deep := append([]byte{0x81, 0xa2, 'z', 'z'}, bytes.Repeat([]byte{0x91}, 8<<20-64)...)
	req, _ := http.NewRequest("POST", base+"/v1/batch", bytes.NewReader(deep))
	req.Header.Set("Content-Type", "application/msgpack")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/batch with 8 MiB of nesting: %v (did the node die?)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("8 MiB of nesting in a batch: %d, want 400", resp.StatusCode)
	}
	deepFrame := append([]byte{2}, deep...)
	sendRaw(t, peer, append(append(peerFrame(t, 1, attackHello{1, 1, "n2", "local"}), binary.BigEndian.AppendUint32(nil, uint32(len(deepFrame)))...), deepFrame...), 10*time.Second)
	// The same on the peer port, under a member's name: a hello, then a
	// batch whose array claims 2^31 elements.
	batch := append([]byte{2}, 0x93, 0x01, 0xc2, 0x93, 0xdd, 0x7f, 0xff, 0xff, 0xff)
	frame := append(peerFrame(t, 1, attackHello{1, 1, "n2", "local"}), binary.BigEndian.AppendUint32(nil, uint32(len(batch)))...)
	frame = append(frame, batch...)
	if !sendRaw(t, peer, frame, 5*time.Second) {
		t.Error("the peer listener kept a connection open after a batch claiming 2^31 items")
	}
	// Hellos that declare an 808 MB name in a few bytes, on 300
	// connections: msgpack's pooled decoders grew by 1 MiB for each and
	// kept it (RSS is checked below).
	leaky := []byte{0, 0, 0, 8, 1, 0x94, 0x01, 0x01, 0xdb, 0x30, 0x30, 0x30}
	for range 300 {
		if c, err := net.Dial("tcp", peer); err == nil {
			c.Write(leaky)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}
	// A stranger's hello, any name and region, is refused before anything.
	if !sendRaw(t, peer, peerFrame(t, 1, attackHello{1, 1, "mallory", "anywhere"}), 5*time.Second) {
		t.Error("the peer listener kept a stranger's stream open")
	}
	// Frames that announce 64 MiB, on four connections, before any hello.
	var conns []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", peer)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(binary.BigEndian.AppendUint32(nil, 64<<20))
		c.Write(bytes.Repeat([]byte{0}, 1<<20))
		conns = append(conns, c)
	}
	// A forged state with a made-up node's slot, this node's own slot at
	// the maximum and unsorted slots, on a stream under a member's name
	// (without TLS a name is not proof; the node validates every state).
	type slot struct{ Node, P, N uint64 }
	type item struct {
		Key   string
		Seq   uint64
		Slots []slot
		Reset *struct{}
	}
	type group struct {
		NS     string
		Origin uint64
		Items  []item
	}
	type wbatch struct {
		Ranges  []struct{}
		Groups  []group
		Configs []struct{}
	}
	type bmsg struct {
		ID    uint64
		Relay bool
		Batch wbatch
	}
	forged := wbatch{Groups: []group{{NS: "pages", Origin: 12345, Items: []item{
		{Key: "a", Seq: 1, Slots: []slot{{Node: 12345, P: 1_000_000_000_000}}},
		{Key: "b", Seq: 2, Slots: []slot{{Node: 9, P: 1}, {Node: 3, P: 1}}},
	}}}}
	msg := append(peerFrame(t, 1, attackHello{1, 1, "n2", "local"}), peerFrame(t, 2, bmsg{ID: 1, Batch: forged})...)
	sendRaw(t, peer, msg, 3*time.Second)

	// More forged states on the stream, each on its own connection under
	// n2's name: n1's own slot at the maximum (every later write of the
	// counter would be 422), a reset at epoch MaxUint64 (the next real
	// reset would wrap to 0), an id record whose body overflows (it
	// panicked Apply), a namespace config with HLC MaxUint64 (it would win
	// last-writer-wins forever).
	type wreset struct {
		Epoch   uint64
		Node    uint64
		Value   int64
		Deleted bool
		Floor   []slot
	}
	type ritem struct {
		Key   string
		Seq   uint64
		Slots []slot
		Reset *wreset
	}
	type rgroup struct {
		NS     string
		Origin uint64
		Items  []ritem
	}
	type wconfig struct {
		NS      string
		HLC     uint64
		Origin  uint64
		Payload []byte
	}
	type rbatch struct {
		Ranges  []struct{}
		Groups  []rgroup
		Configs []wconfig
	}
	type rmsg struct {
		ID    uint64
		Relay bool
		Batch rbatch
	}
	n1ID, n2ID := uint64(crdt.NodeIDFromName("n1")), uint64(crdt.NodeIDFromName("n2"))
	const maxU = ^uint64(0)
	for _, b := range []rbatch{
		{Groups: []rgroup{{NS: "pages", Origin: n2ID, Items: []ritem{{Key: "a", Seq: 9, Slots: []slot{{Node: n2ID, P: 1}, {Node: n2ID, P: 2}}}}}}},
		{Groups: []rgroup{{NS: "pages", Origin: n2ID, Items: []ritem{{Key: "a", Seq: 9, Slots: []slot{{Node: n1ID, P: maxU}}}}}}},
		{Groups: []rgroup{{NS: "pages", Origin: n2ID, Items: []ritem{{Key: "a", Seq: 9, Slots: []slot{{Node: n2ID, P: 1}}, Reset: &wreset{Epoch: maxU, Node: n2ID}}}}}},
		{Groups: []rgroup{{NS: "pages", Origin: n2ID, Items: []ritem{{Key: "\x04id-1\x00a", Seq: 9, Slots: []slot{{Node: n2ID, P: maxU, N: maxU}}}}}}},
		{Configs: []wconfig{{NS: "pages", HLC: maxU, Origin: n2ID, Payload: []byte{0x80}}}},
	} {
		sendRaw(t, peer, append(peerFrame(t, 1, attackHello{1, 1, "n2", "local"}), peerFrame(t, 2, rmsg{ID: 1, Batch: b})...), 3*time.Second)
	}
	// Peer calls under n2's name: rights for an absurd amount, and a lease
	// report that would make a refused key admit again.
	type rpcReq struct {
		Method uint8
		Body   []byte
	}
	enc := func(v any) []byte {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		e.UseArrayEncodedStructs(true)
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for _, call := range []rpcReq{
		{Method: 3, Body: enc([]any{"pages", "a", true, int64(1 << 62), n2ID})},
		{Method: 4, Body: enc([]any{"n2", "api", "u", int64(time.Minute), int64(10), int64(0), nil, []any{[]any{int64(0), int64(-1000)}}})},
		{Method: 2, Body: []byte{0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff}},
	} {
		c, err := net.Dial("tcp", peer)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(append(peerFrame(t, 1, attackHello{1, 4, "n2", "local"}), peerFrame(t, 10, call)...))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var hdr [5]byte
		if _, err := io.ReadFull(c, hdr[:]); err == nil && hdr[4] == 11 {
			body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
			io.ReadFull(c, body)
			var resp struct {
				Err  string
				Body []byte
			}
			if msgpack.Unmarshal(body, &resp) != nil || resp.Err == "" {
				t.Errorf("peer call %d was answered without an error: %+v", call.Method, resp)
			}
		}
		c.Close()
	}

	// The node is up, ready, and reads what it read before.
	if code := getJSON(t, base+"/readyz", nil); code != 200 {
		t.Fatalf("readyz after the attacks: %d", code)
	}
	for _, k := range []string{"a", "b"} {
		if v := value(t, n1.addr, "", "pages", k); v != 5 {
			t.Errorf("pages/%s reads %d after the attacks, want 5", k, v)
		}
	}
	// Without the msgpack checks the 300 hellos alone grew it by 300 MiB
	// (and the nesting killed it); the race detector's own memory needs
	// the rest of the margin.
	if rss := rssBytes(t, n1.cmd.Process.Pid); rss-rss0 > 200<<20 {
		t.Errorf("RSS grew by %d MiB during the attacks", (rss-rss0)>>20)
	}
	// And it still replicates.
	if code, _ := call(t, "POST", base+"/v1/counters/pages/a/incr", "", ""); code != 200 {
		t.Fatal("incr after the attacks failed")
	}
	wait.For(t, 10*time.Second, "replication after the attacks", func() (bool, string) {
		v := value(t, n2.addr, "", "pages", "a")
		return v == 6, fmt.Sprintf("n2 reads %d", v)
	})
	// A real reset and a real config change still work: the forged epoch
	// and the forged clock did not win.
	if code, body := call(t, "PUT", base+"/v1/counters/pages/b", "", `{"value":1}`); code != 200 {
		t.Fatalf("reset after the attacks: %d %v", code, body)
	}
	if v := value(t, n1.addr, "", "pages", "b"); v != 1 {
		t.Fatalf("pages/b reads %d after a reset to 1", v)
	}
	if code, body := call(t, "PUT", base+"/v1/namespaces/pages", "", `{"durability":"async"}`); code != 200 {
		t.Fatalf("namespace config after the attacks: %d %v", code, body)
	}
	if code, body := call(t, "GET", base+"/v1/namespaces/pages", "", ""); code != 200 || !strings.Contains(fmt.Sprint(body), "async") {
		t.Fatalf("the namespace config did not take: %d %v", code, body)
	}
	// Label values with control characters, a bad escape: JSON errors.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/counters/pages/c/incr", `{"labels":{"country":"fr\u0000x"}}`},
		{"GET", "/v1/counters/pages?prefix=a%G1", ""},
	} {
		code, body := call(t, c.method, base+c.path, "", c.body)
		if code != 400 || errCode(body) != "invalid_argument" {
			t.Errorf("%s %s: %d %v, want a JSON 400 invalid_argument", c.method, c.path, code, body)
		}
	}
	for _, c := range conns {
		c.Close()
	}
}

// TestSlowAndNumerousClients: a body trickled at one byte per second is
// cut off within the read timeout, and connections beyond the cap are
// refused while requests on the connections already open still succeed.
func TestSlowAndNumerousClients(t *testing.T) {
	const maxConns = 50
	d := startDaemon(t, t.TempDir(), "--http-read-timeout", "3s", "--http-max-conns", strconv.Itoa(maxConns))

	c, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/counters/slow/k/incr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, c)
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
trickle:
	for {
		select {
		case took := <-closed:
			if took > 6*time.Second {
				t.Errorf("the trickled request was cut off after %v; the read timeout is 3 s", took)
			}
			t.Logf("a body trickled at 1 byte/s was cut off after %v (read timeout 3 s)", took)
			break trickle
		case <-tick.C:
			c.Write([]byte{' '})
			if time.Since(start) > 15*time.Second {
				t.Fatal("a body trickled at 1 byte/s was still being read after 15 s")
			}
		}
	}
	if v := value(t, d.addr, "", "slow", "k"); v != 0 {
		t.Fatalf("the cut-off request was applied: %d", v)
	}

	// maxConns-1 keep-alive connections (one slot stays for the checks).
	var kept []*bufio.ReadWriter
	for range maxConns - 1 {
		c, err := net.Dial("tcp", d.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
		if status := healthOn(t, rw); status != 200 {
			t.Fatalf("healthz on a kept connection: %d", status)
		}
		kept = append(kept, rw)
	}
	// Hold the last slot with an idle connection, then 1,000 more. The
	// listener accepts connections in the order they were established, so
	// it takes this one before any of the flood: nothing to wait for.
	last, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	refused := 0
	for range 1000 {
		c, err := net.Dial("tcp", d.addr)
		if err != nil {
			refused++ // refused outright counts too
			continue
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF || isReset(err) {
			refused++
		}
		c.Close()
	}
	if refused != 1000 {
		t.Fatalf("%d of 1,000 connections beyond the cap were refused", refused)
	}
	for i, rw := range kept {
		if status := healthOn(t, rw); status != 200 {
			t.Fatalf("kept connection %d after the flood: %d", i, status)
		}
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "broken pipe"))
}

// healthOn sends GET /healthz on a kept connection and returns the status.
func healthOn(t *testing.T, rw *bufio.ReadWriter) int {
	t.Helper()
	fmt.Fprintf(rw, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := rw.Flush(); err != nil {
		t.Fatalf("write on a kept connection: %v", err)
	}
	resp, err := http.ReadResponse(rw.Reader, nil)
	if err != nil {
		t.Fatalf("read on a kept connection: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestReloadAndHTTPS: SIGHUP swaps the tokens file in a running node (the
// old token is refused, the new one works; a broken file keeps the tokens
// in force), and --api-tls-* serves the API over HTTPS that countctl
// reaches with --ca.
func TestReloadAndHTTPS(t *testing.T) {
	s := makeSecrets(t, "n1")
	d := launchDaemon(t, t.TempDir(), "--node-name", "n1", "--api-tokens-file", s.tokensFile,
		"--api-tls-cert", filepath.Join(s.dir, "n1.crt"), "--api-tls-key", filepath.Join(s.dir, "n1.key"))
	tlsCfg, err := clientTLS(filepath.Join(s.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 5 * time.Second}
	get := func(token string) int {
		req, _ := http.NewRequest("GET", "https://"+d.addr+"/v1/counters/pages/home", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("https request: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wait.For(t, 20*time.Second, "ready over HTTPS", func() (bool, string) {
		resp, err := hc.Get("https://" + d.addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, fmt.Sprint(resp.StatusCode)
	})
	if code := get(s.reader); code != 200 {
		t.Fatalf("reader token over HTTPS: %d", code)
	}
	// Plain HTTP on the HTTPS port gets no API.
	if resp, err := http.Get("http://" + d.addr + "/v1/counters/pages/home"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was served on the HTTPS listener")
		}
	}
	ctl := buildCountctl(t)
	out, err := exec.Command(ctl, "--addr", "https://"+d.addr, "--ca", filepath.Join(s.dir, "ca.crt"), "--token", s.admin, "incr", "pages", "home", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("countctl over HTTPS with --ca: %v\n%s", err, out)
	}

	// Rotate the tokens: a new reader token replaces the old one.
	newReader := "new-reader-token-0123456789"
	os.WriteFile(s.tokensFile+".new", []byte(fmt.Sprintf("%s admin\n%s read\n", s.admin, newReader)), 0o600)
	if err := os.Rename(s.tokensFile+".new", s.tokensFile); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	wait.For(t, 5*time.Second, "the new tokens after SIGHUP", func() (bool, string) {
		old, cur := get(s.reader), get(newReader)
		return old == 401 && cur == 200, fmt.Sprintf("old token %d, new token %d", old, cur)
	})
	// A broken file: the tokens in force stay.
	os.WriteFile(s.tokensFile, []byte("short read\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond) // nothing to poll for: the point is that nothing changes
	if code := get(newReader); code != 200 {
		t.Fatalf("after a SIGHUP with a broken tokens file the token in force answers %d", code)
	}
	select {
	case err := <-d.exit:
		t.Fatalf("countd exited after SIGHUP: %v", err)
	default:
	}
}

func clientTLS(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool}, nil
}
