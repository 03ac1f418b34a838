//go:build linux

package campaign

// The mesh under test: real countd processes, each in a network namespace
// of its own with a veth into one bridge of the root namespace (which holds
// .1, so this process reaches every node), its data directory on a tmpfs of
// its own (so the disk can be filled), and an iptables chain in its
// namespace for partitions. Everything is named with the prefix
// "cmc<pid>"/"cmchaos-<pid>-" so that a later run can sweep what a killed
// run left behind, and never touches anything else.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/countmesh/countmesh/internal/pki"
)

const (
	httpPort   = 7070
	gossipPort = 7946
	// Pebble preallocates each WAL at about 1.1 x its 64 MiB memtable, and
	// a restart holds the old WAL and a new one: 128 MiB filled up on a
	// plain restart. 384 MiB leaves room; the disk-full fault fills the rest.
	tmpfsSize = "384m"
	chain     = "CHAOS"
)

// state of a member's process.
type state int

const (
	running state = iota
	down          // killed (or not started), to be restarted
	paused        // SIGSTOP
	gone          // left the mesh for good
)

// member is one countd node of the mesh. Its fields after idx are guarded
// by mesh.mu.
type member struct {
	name, region string
	idx          int
	ip           string
	netns        string
	mount        string // the tmpfs mount point
	dataDir      string // mount/data
	fillFile     string // mount/fill: the disk-full fault
	faultFile    string // the fsync-error fault (outside the tmpfs)
	logPath      string

	cmd    *exec.Cmd
	exited chan struct{}
	state  state
	env    []string // extra environment of the next start (clock offset)
	wiped  bool     // its data directory was removed at least once
}

func (m *member) url(path string) string {
	return fmt.Sprintf("http://%s:%d%s", m.ip, httpPort, path)
}

func (m *member) gossip() string { return fmt.Sprintf("%s:%d", m.ip, gossipPort) }

// mesh owns the namespaces, bridge, mounts and processes of one campaign.
type mesh struct {
	pid     int
	prefix  string // "cmc<pid>": link names
	nsPfx   string // "cmchaos-<pid>-": namespace and directory names
	bridge  string
	subnet  string // "10.231.X"
	work    string
	bin     string
	secure  bool
	secrets string
	token   string
	logf    func(string, ...any)
	client  *http.Client

	closeOnce sync.Once

	mu struct {
		sync.Mutex
		members []*member // every member ever started, gone ones too
		next    int       // index of the next member
	}
}

// run runs a command with a deadline and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// inNS runs a shell script in a node's network namespace.
func inNS(netns, script string) error {
	_, err := run("ip", "netns", "exec", netns, "sh", "-c", script)
	return err
}

// pickSubnet returns a 10.231.X /24 that no route of this host touches,
// X derived from the pid.
func pickSubnet(pid int) (string, error) {
	routes, err := run("ip", "route", "show", "table", "all")
	if err != nil {
		return "", err
	}
	for i := 0; i < 200; i++ {
		s := fmt.Sprintf("10.231.%d", 20+(pid+i)%200)
		if !strings.Contains(routes, s+".") {
			return s, nil
		}
	}
	return "", errors.New("chaos: no free 10.231.X.0/24 subnet")
}

func newMesh(bin string, secure bool, logf func(string, ...any)) (*mesh, error) {
	pid := os.Getpid()
	m := &mesh{
		pid:    pid,
		prefix: fmt.Sprintf("cmc%d", pid),
		nsPfx:  fmt.Sprintf("cmchaos-%d-", pid),
		bin:    bin,
		secure: secure,
		logf:   logf,
		client: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
		},
	}
	m.bridge = m.prefix + "b"
	var err error
	if m.subnet, err = pickSubnet(pid); err != nil {
		return nil, err
	}
	if m.work, err = os.MkdirTemp("", m.nsPfx); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			m.close()
		}
	}()
	for _, c := range [][]string{
		{"ip", "link", "add", m.bridge, "type", "bridge"},
		{"ip", "addr", "add", m.subnet + ".1/24", "dev", m.bridge},
		{"ip", "link", "set", m.bridge, "up"},
		// Docker sets the FORWARD policy to DROP and br_netfilter sends
		// bridged frames through it: let the mesh's own frames pass.
		{"iptables", "-w", "-I", "FORWARD", "-i", m.bridge, "-o", m.bridge, "-m", "comment", "--comment", m.nsPfx + "fwd", "-j", "ACCEPT"},
	} {
		if _, err := run(c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	if secure {
		if err := m.makeSecrets(); err != nil {
			return nil, err
		}
	}
	ok = true
	return m, nil
}

// makeSecrets does what `countctl certs init-mesh` does: a CA, a gossip
// key and a tokens file with one admin token (node certificates are made as
// nodes are added).
func (m *mesh) makeSecrets() error {
	m.secrets = filepath.Join(m.work, "secrets")
	if err := pki.CreateCA(m.secrets); err != nil {
		return err
	}
	key := make([]byte, 32)
	tok := make([]byte, 32)
	rand.Read(key)
	rand.Read(tok)
	m.token = base64.RawURLEncoding.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(m.secrets, "gossip.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.secrets, "tokens"), []byte(m.token+" admin\n"), 0o600)
}

// add creates a member (namespace, veth, tmpfs, certificate) in region and
// starts it, joining the members that are not gone.
func (m *mesh) add(region string) (*member, error) {
	m.mu.Lock()
	m.mu.next++
	idx := m.mu.next
	m.mu.Unlock()
	if idx > 200 {
		return nil, errors.New("chaos: more than 200 members")
	}
	n := &member{
		name:   fmt.Sprintf("n%d", idx),
		region: region,
		idx:    idx,
		ip:     fmt.Sprintf("%s.%d", m.subnet, 10+idx),
		netns:  fmt.Sprintf("%sn%d", m.nsPfx, idx),
		state:  down,
	}
	n.mount = filepath.Join(m.work, n.name)
	n.dataDir = filepath.Join(n.mount, "data")
	n.fillFile = filepath.Join(n.mount, "fill")
	n.faultFile = filepath.Join(m.work, n.name+".fsyncfail")
	n.logPath = filepath.Join(m.work, n.name+".log")
	host, peer := fmt.Sprintf("%sh%d", m.prefix, idx), fmt.Sprintf("%sp%d", m.prefix, idx)
	for _, c := range [][]string{
		{"ip", "netns", "add", n.netns},
		{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", host, "master", m.bridge},
		{"ip", "link", "set", host, "up"},
		{"ip", "link", "set", peer, "netns", n.netns},
		{"ip", "-n", n.netns, "link", "set", peer, "name", "eth0"},
		{"ip", "-n", n.netns, "addr", "add", n.ip + "/24", "dev", "eth0"},
		{"ip", "-n", n.netns, "link", "set", "eth0", "up"},
		{"ip", "-n", n.netns, "link", "set", "lo", "up"},
	} {
		if _, err := run(c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	if err := inNS(n.netns, fmt.Sprintf("iptables -w -N %[1]s && iptables -w -I INPUT -j %[1]s", chain)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.mount, 0o700); err != nil {
		return nil, err
	}
	if err := syscall.Mount("tmpfs", n.mount, "tmpfs", 0, "size="+tmpfsSize); err != nil {
		return nil, fmt.Errorf("mount a tmpfs on %s: %w", n.mount, err)
	}
	if m.secure {
		if err := pki.CreateNode(m.secrets, n.name, []string{n.ip}); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	m.mu.members = append(m.mu.members, n)
	m.mu.Unlock()
	return n, m.start(n)
}

// start starts a member's process, joining every other member not gone.
func (m *mesh) start(n *member) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.startLocked(n)
}

func (m *mesh) startLocked(n *member) error {
	if n.state != down {
		return fmt.Errorf("chaos: start %s: not down", n.name)
	}
	var join []string
	for _, o := range m.mu.members {
		if o != n && o.state != gone {
			join = append(join, o.gossip())
		}
	}
	args := []string{"netns", "exec", n.netns, m.bin,
		"--node-name", n.name, "--region", n.region, "--data-dir", n.dataDir,
		"--http-addr", fmt.Sprintf("%s:%d", n.ip, httpPort), "--gossip-addr", n.gossip(),
		"--log-level", cmp.Or(os.Getenv("CHAOS_LOG_LEVEL"), "info"),
		// A cache past the 1,048,576 entries, so that idle counters are
		// packed (node/keyspace/compact.go) and unpacked under the faults.
		"--cache-counters", "2000000"}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	if m.secure {
		args = append(args,
			"--tls-ca", filepath.Join(m.secrets, pki.CACertFile),
			"--tls-cert", filepath.Join(m.secrets, n.name+".crt"),
			"--tls-key", filepath.Join(m.secrets, n.name+".key"),
			"--gossip-key-file", filepath.Join(m.secrets, "gossip.key"),
			"--api-tokens-file", filepath.Join(m.secrets, "tokens"))
	} else {
		args = append(args, "--insecure")
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== chaos: start %s %v\n", time.Now().Format(time.RFC3339Nano), n.env)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), envFsyncFailFile+"="+n.faultFile)
	cmd.Env = append(cmd.Env, n.env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited, n.state = cmd, exited, running
	return nil
}

// Environment variables of the test-only hooks of cmd/countd.
const (
	envClockOffset   = "COUNTMESH_TEST_CLOCK_OFFSET"
	envFsyncFailFile = "COUNTMESH_TEST_FSYNC_FAIL_FILE"
)

// signal sends sig to a member's process (ip netns exec execs countd, so
// the pid is countd's).
func (m *mesh) signal(n *member, sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return fmt.Errorf("chaos: %s has no process", n.name)
	}
	if err := syscall.Kill(n.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("chaos: signal %v to %s (pid %d): %w", sig, n.name, n.cmd.Process.Pid, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.state = paused
	case syscall.SIGCONT:
		if n.state == paused {
			n.state = running
		}
	}
	return nil
}

// stop ends a member's process with sig (SIGKILL, or SIGTERM for a
// graceful leave) and waits for it to exit, SIGKILL after timeout.
func (m *mesh) stop(n *member, sig syscall.Signal, then state, timeout time.Duration) error {
	m.mu.Lock()
	cmd, exited := n.cmd, n.exited
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGCONT) // a paused process cannot shut down
	syscall.Kill(cmd.Process.Pid, sig)
	var err error
	select {
	case <-exited:
	case <-time.After(timeout):
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		err = fmt.Errorf("chaos: %s did not exit within %v of %v; killed", n.name, timeout, sig)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("chaos: %s (pid %d) survives SIGKILL", n.name, cmd.Process.Pid)
		}
	}
	m.mu.Lock()
	n.cmd, n.exited, n.state = nil, nil, then
	m.mu.Unlock()
	return err
}

// restart kills a member and starts it again with env.
func (m *mesh) restart(n *member, env []string) error {
	if err := m.stop(n, syscall.SIGKILL, down, 5*time.Second); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n.env = env
	return m.startLocked(n)
}

// members returns the members in the mesh (not gone), in order.
func (m *mesh) members() []*member {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*member
	for _, n := range m.mu.members {
		if n.state != gone {
			out = append(out, n)
		}
	}
	return out
}

// forgettable returns the names an operator could forget: members gone
// for good, and members wiped at least once (their earlier incarnations).
func (m *mesh) forgettable() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.mu.members {
		if n.state == gone || n.wiped {
			out = append(out, n.name)
		}
	}
	return out
}

// regions maps every member the run ever had, gone ones too, to its
// region.
func (m *mesh) regions() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.mu.members))
	for _, n := range m.mu.members {
		out[n.name] = n.region
	}
	return out
}

// runningMembers returns the members whose process runs unpaused.
func (m *mesh) runningMembers() []*member {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*member
	for _, n := range m.mu.members {
		if n.state == running {
			out = append(out, n)
		}
	}
	return out
}

// cut drops, in each receiver's namespace, every packet from the senders.
func (m *mesh) cut(receivers, senders []*member) error {
	for _, r := range receivers {
		var script []string
		for _, s := range senders {
			script = append(script, fmt.Sprintf("iptables -w -A %s -s %s -j DROP", chain, s.ip))
		}
		if err := inNS(r.netns, strings.Join(script, " && ")); err != nil {
			return err
		}
	}
	return nil
}

// healNet flushes every member's partition chain.
func (m *mesh) healNet() error {
	var errs []error
	m.mu.Lock()
	all := append([]*member(nil), m.mu.members...)
	m.mu.Unlock()
	for _, n := range all {
		if err := inNS(n.netns, "iptables -w -F "+chain); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// do sends one API request to a member, with the token.
func (m *mesh) do(ctx context.Context, n *member, method, path string, body []byte) (*http.Response, []byte, error) {
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, n.url(path), rd)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, n.url(path), nil)
	}
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if m.token != "" {
		req.Header.Set("Authorization", "Bearer "+m.token)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes(), err
}

// ready reports whether a member answers /readyz with 200.
func (m *mesh) ready(ctx context.Context, n *member) bool {
	resp, _, err := m.do(ctx, n, http.MethodGet, "/readyz", nil)
	return err == nil && resp.StatusCode == http.StatusOK
}

// waitReady waits until every running member is ready, up to timeout.
func (m *mesh) waitReady(ctx context.Context, timeout time.Duration) error {
	_, err := m.waitReadyNames(ctx, timeout)
	return err
}

// waitReadyNames is waitReady that also returns the members not ready.
func (m *mesh) waitReadyNames(ctx context.Context, timeout time.Duration) ([]*member, error) {
	deadline := time.Now().Add(timeout)
	for {
		var notReady []*member
		for _, n := range m.runningMembers() {
			if !m.ready(ctx, n) {
				notReady = append(notReady, n)
			}
		}
		if len(notReady) == 0 {
			return nil, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return notReady, fmt.Errorf("chaos: not ready after %v: %v", timeout, names(notReady))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// close kills every process this mesh started (by pid) and removes the
// namespaces, links, mounts, rules and directories. Idempotent.
func (m *mesh) close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		all := append([]*member(nil), m.mu.members...)
		m.mu.Unlock()
		for _, n := range all {
			if err := m.stop(n, syscall.SIGKILL, gone, 5*time.Second); err != nil {
				m.logf("chaos: cleanup: %v", err)
			}
		}
		sweep(m.pid, m.logf)
		if m.work != "" {
			os.RemoveAll(m.work)
		}
	})
}

var (
	nsRe   = regexp.MustCompile(`^cmchaos-(\d+)-n\d+$`)
	linkRe = regexp.MustCompile(`^cmc(\d+)[bhp]\d*$`)
	dirRe  = regexp.MustCompile(`/cmchaos-(\d+)-[^/]*`)
	fwdRe  = regexp.MustCompile(`cmchaos-(\d+)-fwd`)
)

// owned reports whether a leftover named for pid belongs to the sweep:
// only=0 sweeps leftovers of processes no longer alive, only=pid just that
// run's.
func owned(pidStr string, only int) bool {
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return false
	}
	if only != 0 {
		return pid == only
	}
	if pid == os.Getpid() {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// sweep removes the namespaces, links, forward rules, mounts and temporary
// directories named with the chaos prefixes: of run only (a pid), or with
// only=0 of every earlier run whose process is gone. The processes still
// in a swept namespace (countd of a killed run) are killed by pid first.
func sweep(only int, logf func(string, ...any)) {
	if out, err := run("ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if mm := nsRe.FindStringSubmatch(f[0]); mm != nil && owned(mm[1], only) {
				if pids, err := run("ip", "netns", "pids", f[0]); err == nil {
					for _, p := range strings.Fields(pids) {
						if pid, err := strconv.Atoi(p); err == nil {
							syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				}
				if _, err := run("ip", "netns", "delete", f[0]); err != nil {
					logf("chaos: sweep: %v", err)
				}
			}
		}
	}
	if out, err := run("ip", "-o", "link", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if mm := linkRe.FindStringSubmatch(name); mm != nil && owned(mm[1], only) {
				run("ip", "link", "delete", name)
			}
		}
	}
	if out, err := run("iptables", "-w", "-S", "FORWARD"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			if mm := fwdRe.FindStringSubmatch(line); mm != nil && owned(mm[1], only) && strings.HasPrefix(line, "-A ") {
				args := strings.Fields("-w -D" + strings.TrimPrefix(line, "-A"))
				for i, a := range args {
					args[i] = strings.Trim(a, `"`)
				}
				if _, err := run("iptables", args...); err != nil {
					logf("chaos: sweep: %v", err)
				}
			}
		}
	}
	if f, err := os.Open("/proc/mounts"); err == nil {
		var mounts []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) > 1 && strings.HasPrefix(fs[1], os.TempDir()) {
				if mm := dirRe.FindStringSubmatch(fs[1]); mm != nil && owned(mm[1], only) {
					mounts = append(mounts, fs[1])
				}
			}
		}
		f.Close()
		for _, mt := range mounts {
			if err := syscall.Unmount(mt, syscall.MNT_DETACH); err != nil {
				logf("chaos: sweep: unmount %s: %v", mt, err)
			}
		}
	}
	if ents, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range ents {
			if mm := dirRe.FindStringSubmatch("/" + e.Name()); mm != nil && owned(mm[1], only) {
				os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
}

// markWiped records that n's data directory was removed.
func (m *mesh) markWiped(n *member) {
	m.mu.Lock()
	n.wiped = true
	m.mu.Unlock()
}
