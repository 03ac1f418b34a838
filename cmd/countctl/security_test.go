package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/countmesh/countmesh/internal/pki"
)

// runEnv runs countctl with the given environment and returns status and outputs.
func runEnv(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runContext(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

func TestCertsCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errOut := runEnv(t, nil, "certs", "create-ca", dir)
	if code != 0 || !strings.Contains(out, filepath.Join(dir, "ca.crt")) {
		t.Fatalf("create-ca: status %d stdout %q stderr %q", code, out, errOut)
	}
	code, out, errOut = runEnv(t, nil, "certs", "create-node", dir, "n1", "127.0.0.1", "n1.internal")
	if code != 0 || !strings.Contains(out, "--tls-cert "+filepath.Join(dir, "n1.crt")) {
		t.Fatalf("create-node: status %d stdout %q stderr %q", code, out, errOut)
	}
	p, err := pki.LoadPeerTLS(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"))
	if err != nil {
		t.Fatalf("countd could not load what countctl wrote: %v", err)
	}
	if p.Name() != "n1" {
		t.Errorf("certificate names %q, want n1", p.Name())
	}

	code, out, _ = runEnv(t, nil, "--json", "certs", "create-node", dir, "n2", "10.0.0.2")
	var got map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got["name"] != "n2" || got["not_after"] == "" {
		t.Errorf("create-node --json: status %d stdout %q", code, out)
	}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"CA exists", []string{"certs", "create-ca", dir}, 1, filepath.Join(dir, "ca.crt") + ": pki: file already exists"},
		{"node exists", []string{"certs", "create-node", dir, "n1", "127.0.0.1"}, 1, "n1.crt: pki: file already exists"},
		{"bad node name", []string{"certs", "create-node", dir, "a/b", "127.0.0.1"}, 2, "path separator"},
		{"bad host", []string{"certs", "create-node", dir, "n3", "10.0.0.1:7946"}, 2, "bad host"},
		{"no host", []string{"certs", "create-node", dir, "n3"}, 2, "create-node takes DIR NAME HOST..."},
		{"no CA", []string{"certs", "create-node", t.TempDir(), "n3", "127.0.0.1"}, 1, "ca.crt: no such file"},
		{"no subcommand", []string{"certs"}, 2, "certs takes create-ca DIR"},
		{"unknown subcommand", []string{"certs", "renew"}, 2, `unknown certs command "renew"`},
		{"create-ca without DIR", []string{"certs", "create-ca"}, 2, "certs create-ca takes DIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runEnv(t, nil, tt.args...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("status %d stderr %q; want %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestKeygen(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		code, out, errOut := runEnv(t, nil, "keygen")
		if code != 0 || errOut != "" || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Fatalf("status %d stdout %q stderr %q; want 0 and one line", code, out, errOut)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(out, "\n"))
		if err != nil || len(key) != 32 {
			t.Errorf("key %q decodes to %d bytes (%v), want 32", out, len(key), err)
		}
		seen[out] = true
	}
	if len(seen) != 2 {
		t.Error("two keygen calls printed the same key")
	}
	if code, _, _ := runEnv(t, nil, "keygen", "extra"); code != 2 {
		t.Errorf("keygen with an argument: status %d, want 2", code)
	}
}

func TestToken(t *testing.T) {
	shape := regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`)
	seen := map[string]bool{}
	for range 2 {
		code, out, errOut := runEnv(t, nil, "token")
		if code != 0 || errOut != "" || !shape.MatchString(out) {
			t.Fatalf("status %d stdout %q stderr %q; want 43 base64url characters", code, out, errOut)
		}
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(out)); err != nil || len(b) != 32 {
			t.Errorf("token decodes to %d bytes (%v), want 32", len(b), err)
		}
		seen[out] = true
	}
	if len(seen) != 2 {
		t.Error("two token calls printed the same token")
	}
	code, out, _ := runEnv(t, nil, "--json", "token")
	var got map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got["token"]) != 43 {
		t.Errorf("token --json: status %d stdout %q", code, out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runEnv(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "countctl ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: status %d stdout %q", code, out)
	}
	// A local command needs no reachable node, even with a bad address.
	if code, _, errOut := runEnv(t, map[string]string{"COUNTMESH_ADDR": "ftp://nowhere"}, "version"); code != 0 {
		t.Errorf("version with a bad address: status %d stderr %q", code, errOut)
	}
}

// tokenNode answers 200 to requests bearing "Bearer good" and 401 otherwise,
// as countd does, and records the Authorization headers it saw.
func tokenNode(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex // guards seen
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthenticated","message":"missing or unknown bearer token"}}`)
			return
		}
		io.WriteString(w, `{"ns":"n","key":"k","value":9}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestTokenFlag(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantOut  string
		wantErr  []string
		wantAuth string
	}{
		{name: "--token", args: []string{"--token", "good"}, wantOut: "9\n", wantAuth: "Bearer good"},
		{name: "environment", env: map[string]string{"COUNTMESH_TOKEN": "good"}, wantOut: "9\n", wantAuth: "Bearer good"},
		{name: "flag wins over environment", env: map[string]string{"COUNTMESH_TOKEN": "bad"}, args: []string{"--token=good"}, wantOut: "9\n", wantAuth: "Bearer good"},
		{
			name: "no token", wantCode: 1, wantAuth: "",
			wantErr: []string{"missing or unknown bearer token (401 unauthenticated)", "set --token or COUNTMESH_TOKEN"},
		},
		{
			name: "unknown token", args: []string{"--token", "bad"}, wantCode: 1, wantAuth: "Bearer bad",
			wantErr: []string{"missing or unknown bearer token (401 unauthenticated)"},
		},
		{name: "token with a space", args: []string{"--token", "Bearer good"}, wantCode: 2, wantErr: []string{"without \"Bearer\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, requests := tokenNode(t)
			args := append([]string{"--addr", srv.URL}, tt.args...)
			code, out, errOut := runEnv(t, tt.env, append(args, "get", "n", "k")...)
			if code != tt.wantCode || out != tt.wantOut {
				t.Errorf("status %d stdout %q stderr %q; want %d and %q", code, out, errOut, tt.wantCode, tt.wantOut)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr %q does not contain %q", errOut, s)
				}
			}
			seen := requests()
			if tt.wantCode == 2 {
				if len(seen) != 0 {
					t.Errorf("bad usage sent %d requests", len(seen))
				}
				return
			}
			if len(seen) != 1 || seen[0] != tt.wantAuth {
				t.Errorf("Authorization headers %q, want [%q]", seen, tt.wantAuth)
			}
		})
	}
}

// httpsNode serves GET requests over HTTPS with a certificate from a new
// pki CA (as countd --api-tls-cert does) and returns its https URL and the
// CA file.
func httpsNode(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateNode(dir, "api", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	sc, err := pki.LoadServerCert(filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ns":"n","key":"k","value":11}`)
	}))
	srv.Listener.Close()
	srv.Listener = tls.NewListener(ln, sc.TLSConfig())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.Start()
	t.Cleanup(srv.Close)
	return "https://" + ln.Addr().String(), filepath.Join(dir, "ca.crt")
}

func TestCAFlag(t *testing.T) {
	url, ca := httpsNode(t)
	notPEM := filepath.Join(t.TempDir(), "x.crt")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "with --ca", args: []string{"--addr", url, "--ca", ca}, wantOut: "11\n"},
		{name: "without --ca", args: []string{"--addr", url}, wantCode: 1, wantErr: "pass --ca FILE"},
		{name: "--ca with http", args: []string{"--addr", "http://127.0.0.1:1", "--ca", ca}, wantCode: 2, wantErr: "--ca applies to https:// addresses"},
		{name: "--ca not PEM", args: []string{"--addr", url, "--ca", notPEM}, wantCode: 1, wantErr: "holds no PEM certificate"},
		{name: "--ca missing", args: []string{"--addr", url, "--ca", notPEM + ".missing"}, wantCode: 1, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runEnv(t, nil, append(tt.args, "get", "n", "k")...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("status %d stdout %q stderr %q; want %d, %q and %q", code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func TestUsageNamesTheNewCommands(t *testing.T) {
	code, _, errOut := runEnv(t, nil)
	for _, s := range []string{"certs create-ca DIR", "certs create-node DIR NAME HOST...", "keygen", "token", "version", "--token", "--ca FILE"} {
		if !strings.Contains(errOut, s) {
			t.Errorf("usage does not name %q", s)
		}
	}
	if code != 2 {
		t.Errorf("status %d, want 2", code)
	}
}

// certs init-mesh makes a whole mesh's secrets once and keeps them: a
// second run (a restarted compose project) changes no file and prints the
// same admin token.
func TestCertsInitMesh(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	code, out, errOut := runEnv(t, nil, "certs", "init-mesh", dir, "a=127.0.0.1", "b=127.0.0.2,b.internal")
	if code != 0 {
		t.Fatalf("init-mesh: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	token := lines[len(lines)-1]
	if len(token) != 43 {
		t.Fatalf("the last line %q is not a 43-character token", token)
	}
	read := func() map[string]string {
		files := map[string]string{}
		for _, f := range []string{"ca.crt", "ca.key", "a.crt", "a.key", "b.crt", "b.key", "gossip.key", "tokens"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatalf("init-mesh did not write %s: %v", f, err)
			}
			files[f] = string(b)
		}
		return files
	}
	before := read()
	if _, err := pki.LoadPeerTLS(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")); err != nil {
		t.Fatalf("b's certificate does not load: %v", err)
	}
	if !strings.Contains(before["tokens"], token+" admin") {
		t.Fatalf("the tokens file does not hold the printed token as admin:\n%s", before["tokens"])
	}
	code, out, errOut = runEnv(t, nil, "certs", "init-mesh", dir, "a=127.0.0.1", "b=127.0.0.2,b.internal")
	if code != 0 {
		t.Fatalf("second init-mesh: exit %d: %s", code, errOut)
	}
	if got := strings.TrimSpace(out); got != token {
		t.Fatalf("second init-mesh printed %q, want only the same token", got)
	}
	for f, content := range read() {
		if content != before[f] {
			t.Fatalf("second init-mesh changed %s", f)
		}
	}
	if code, _, _ := runEnv(t, nil, "certs", "init-mesh", dir, "c"); code != 2 {
		t.Fatalf("a node without =HOST: exit %d, want 2", code)
	}
}
