package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHelpListsTheEnvironment: --help names every flag's variable.
func TestHelpListsTheEnvironment(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"--help"}, &out, nil); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{"COUNTMESH_DATA_DIR", "COUNTMESH_HTTP_ADDR", "COUNTMESH_API_TOKENS_FILE", "-log-format", "docs/api.md"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "COUNTMESH_VERSION") {
		t.Error("--help offers COUNTMESH_VERSION, which countd does not read")
	}
}

// runSecond runs a second countd process with args and returns its exit
// code and what it printed.
func runSecond(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "COUNTD_TEST_AS_DAEMON=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String()
}

// TestStartupErrorsAreOnePlainLine: a data directory held by another
// countd and a port in use each stop countd with exit 1 and one plain line
// that says what to do, with no log record and no stack trace.
func TestStartupErrorsAreOnePlainLine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first := startDaemon(t, dir)

	code, locked := runSecond(t, "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--gossip-addr", "off")
	want := "countd: the data directory " + dir + " is in use by another process (pid " + strconv.Itoa(first.cmd.Process.Pid)
	if code != 1 || !strings.HasPrefix(locked, want) || !strings.Contains(locked, "--data-dir") {
		t.Errorf("a locked data directory: exit %d, printed:\n%s\nwant exit 1 and a line starting %q", code, locked, want)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, out := runSecond(t, "--data-dir", filepath.Join(t.TempDir(), "d2"), "--http-addr", ln.Addr().String(), "--gossip-addr", "off")
	if code != 1 || !strings.HasPrefix(out, "countd: ") || !strings.Contains(out, "already listens on that address") {
		t.Errorf("a port in use: exit %d, printed:\n%s", code, out)
	}

	for _, out := range []string{locked, out} {
		if strings.Count(strings.TrimSpace(out), "\n") != 0 || strings.Contains(out, "stacktrace") || strings.Contains(out, "goroutine") {
			t.Errorf("not one plain line:\n%s", out)
		}
	}
}
