package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newPKI creates a CA and node certificates for names in a new directory.
func newPKI(t *testing.T, names ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := CreateCA(dir); err != nil {
		t.Fatalf("CreateCA: %v", err)
	}
	for _, n := range names {
		if err := CreateNode(dir, n, []string{"127.0.0.1", n + ".example"}); err != nil {
			t.Fatalf("CreateNode %s: %v", n, err)
		}
	}
	return dir
}

// loadPeer loads node name's PeerTLS from dir.
func loadPeer(t *testing.T, dir, name string) *PeerTLS {
	t.Helper()
	p, err := LoadPeerTLS(filepath.Join(dir, CACertFile), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatalf("LoadPeerTLS %s: %v", name, err)
	}
	return p
}

// rogueCert loads node name's key pair from dir as a plain tls.Certificate.
func rogueCert(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// outcome is what each side of one connection saw.
type outcome struct {
	serverErr, clientErr error
	serverSaw            string // PeerName on the server side
	clientSaw            string // CN of the server's leaf, on the client side
}

// exchange runs one TLS connection over loopback: the server handshakes,
// reads the peer's name and writes "ok"; the client handshakes and reads it.
func exchange(t *testing.T, srv, cli *tls.Config) outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var o outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			o.serverErr = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srv)
		if o.serverErr = tc.Handshake(); o.serverErr != nil {
			return
		}
		if o.serverSaw, o.serverErr = PeerName(tc.ConnectionState()); o.serverErr != nil {
			return
		}
		_, o.serverErr = tc.Write([]byte("ok"))
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, cli)
	if o.clientErr = tc.Handshake(); o.clientErr == nil {
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			o.clientSaw = pc[0].Subject.CommonName
		}
		// In TLS 1.3 the server judges the client's certificate after the
		// client's handshake returned: its verdict arrives with the first read.
		buf := make([]byte, 2)
		if _, err := io.ReadFull(tc, buf); err != nil {
			o.clientErr = err
		} else if string(buf) != "ok" {
			o.clientErr = errors.New("unexpected answer " + string(buf))
		}
	}
	<-done
	return o
}

func TestMutualTLS(t *testing.T) {
	dir := newPKI(t, "a", "b")
	other := newPKI(t, "a", "x") // another CA, with a node that also calls itself a
	a, b := loadPeer(t, dir, "a"), loadPeer(t, dir, "b")
	rogueA := rogueCert(t, other, "a")

	tests := []struct {
		name                   string
		srv, cli               *tls.Config
		wantServer, wantClient string // names each side sees; "" when it must fail
		clientErrIs            error
	}{
		{name: "b dials a", srv: a.ServerConfig(), cli: b.ClientConfig("a"), wantServer: "b", wantClient: "a"},
		{name: "a dials b", srv: b.ServerConfig(), cli: a.ClientConfig("b"), wantServer: "a", wantClient: "b"},
		{name: "no expected name", srv: a.ServerConfig(), cli: b.ClientConfig(""), wantServer: "b", wantClient: "a"},
		{name: "expected name mismatch", srv: a.ServerConfig(), cli: b.ClientConfig("c"), clientErrIs: ErrWrongPeer},
		{
			name: "server refuses a client of another CA", srv: a.ServerConfig(),
			cli: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{rogueA}},
		},
		{
			name: "client refuses a server of another CA",
			srv:  &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rogueA}, ClientAuth: tls.RequireAnyClientCert},
			cli:  b.ClientConfig("a"), clientErrIs: ErrNotSignedByCA,
		},
		{
			name: "server refuses a client without a certificate", srv: a.ServerConfig(),
			cli: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true},
		},
		{
			name: "server refuses TLS 1.2", srv: a.ServerConfig(),
			cli: &tls.Config{MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true, Certificates: []tls.Certificate{rogueCert(t, dir, "b")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := exchange(t, tt.srv, tt.cli)
			if tt.wantServer != "" {
				if o.serverErr != nil || o.clientErr != nil {
					t.Fatalf("server error %v, client error %v; want success", o.serverErr, o.clientErr)
				}
				if o.serverSaw != tt.wantServer || o.clientSaw != tt.wantClient {
					t.Errorf("server saw %q, client saw %q; want %q and %q", o.serverSaw, o.clientSaw, tt.wantServer, tt.wantClient)
				}
				return
			}
			if o.serverErr == nil || o.clientErr == nil {
				t.Fatalf("server error %v, client error %v; want both to fail", o.serverErr, o.clientErr)
			}
			if tt.clientErrIs != nil && !errors.Is(o.clientErr, tt.clientErrIs) {
				t.Errorf("client error %v, want %v", o.clientErr, tt.clientErrIs)
			}
		})
	}
}

func TestPlainTCPGetsNoTLS(t *testing.T) {
	dir := newPKI(t, "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, loadPeer(t, dir, "a").ServerConfig())
		srvErr <- tc.Handshake()
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET /v1/peer/state HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if len(got) > 0 && got[0] != 0x15 { // at most a TLS alert record, never a handshake or data
		t.Errorf("plain client got %d bytes starting %#x, want nothing or an alert", len(got), got[0])
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("the server did not close the connection: %v", err)
	}
	if err := <-srvErr; err == nil {
		t.Error("the handshake with a plain TCP client succeeded")
	}
}

func TestReloadRotatesCertificates(t *testing.T) {
	dir := newPKI(t, "a", "b")
	srv := loadPeer(t, dir, "a")
	oldClient := loadPeer(t, dir, "b")
	if o := exchange(t, srv.ServerConfig(), oldClient.ClientConfig("a")); o.serverErr != nil || o.clientErr != nil {
		t.Fatalf("before rotation: server %v, client %v", o.serverErr, o.clientErr)
	}
	serverCfg := srv.ServerConfig() // taken before the reload: must follow it

	// Rotate to a new CA: new CA and node files replace the old ones.
	newDir := newPKI(t, "a", "b")
	for _, f := range []string{CACertFile, "a.crt", "a.key"} {
		copyFile(t, filepath.Join(newDir, f), filepath.Join(dir, f))
	}
	if err := srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	newClient := loadPeer(t, newDir, "b")
	if o := exchange(t, serverCfg, newClient.ClientConfig("a")); o.serverErr != nil || o.clientErr != nil {
		t.Fatalf("after rotation, new client: server %v, client %v", o.serverErr, o.clientErr)
	}
	if o := exchange(t, serverCfg, oldClient.ClientConfig("a")); o.clientErr == nil || o.serverErr == nil {
		t.Fatalf("after rotation, old-CA client: server %v, client %v; want both refused", o.serverErr, o.clientErr)
	}

	// A bad file is refused and the rotated certificates stay in use.
	if err := os.WriteFile(filepath.Join(dir, "a.crt"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); !errors.Is(err, ErrNotPEM) || !strings.Contains(err.Error(), "a.crt") {
		t.Errorf("Reload of a bad file = %v, want ErrNotPEM naming a.crt", err)
	}
	if o := exchange(t, serverCfg, newClient.ClientConfig("a")); o.serverErr != nil || o.clientErr != nil {
		t.Errorf("after a failed reload: server %v, client %v; want the rotated certificate", o.serverErr, o.clientErr)
	}

	// A certificate for another node name is refused.
	copyFile(t, filepath.Join(newDir, "b.crt"), filepath.Join(dir, "a.crt"))
	copyFile(t, filepath.Join(newDir, "b.key"), filepath.Join(dir, "a.key"))
	if err := srv.Reload(); !errors.Is(err, ErrNameChanged) {
		t.Errorf("Reload with b's certificate = %v, want ErrNameChanged", err)
	}
	if srv.Name() != "a" {
		t.Errorf("Name() = %q after a refused reload, want a", srv.Name())
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeNodeValid issues a node certificate with explicit validity.
func writeNodeValid(t *testing.T, dir, name string, notBefore, notAfter time.Time) {
	t.Helper()
	ca, caKey, err := loadCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, der, err := issueNode(ca, caKey, name, []string{name}, nil, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	if err := writePair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), der, key); err != nil {
		t.Fatal(err)
	}
}

func TestLoadPeerTLSErrors(t *testing.T) {
	dir := newPKI(t, "a", "b")
	other := newPKI(t, "x")
	now := time.Now()
	writeNodeValid(t, dir, "old", now.AddDate(-3, 0, 0), now.AddDate(-1, 0, 0))
	writeNodeValid(t, dir, "future", now.Add(time.Hour), now.AddDate(1, 0, 0))
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not pem at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, CACertFile)
	f := func(n string) string { return filepath.Join(dir, n) }
	tests := []struct {
		name             string
		caF, cert, key   string
		wantIs           error
		wantFileInString string
	}{
		{"CA not PEM", garbage, f("a.crt"), f("a.key"), ErrNotPEM, garbage},
		{"cert not PEM", ca, garbage, f("a.key"), ErrNotPEM, garbage},
		{"key not PEM", ca, f("a.crt"), garbage, ErrNotPEM, garbage},
		{"key is a certificate", ca, f("a.crt"), f("a.crt"), ErrNotPEM, f("a.crt")},
		{"key of another node", ca, f("a.crt"), f("b.key"), ErrKeyMismatch, f("b.key")},
		{"cert of another CA", ca, filepath.Join(other, "x.crt"), filepath.Join(other, "x.key"), ErrNotSignedByCA, filepath.Join(other, "x.crt")},
		{"node cert as CA", f("b.crt"), f("a.crt"), f("a.key"), ErrUsage, f("b.crt")},
		{"expired", ca, f("old.crt"), f("old.key"), ErrExpired, f("old.crt")},
		{"not valid yet", ca, f("future.crt"), f("future.key"), ErrExpired, f("future.crt")},
		{"missing file", ca, f("nope.crt"), f("a.key"), os.ErrNotExist, f("nope.crt")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadPeerTLS(tt.caF, tt.cert, tt.key)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("LoadPeerTLS = %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantFileInString) {
				t.Errorf("error %q does not name %s", err, tt.wantFileInString)
			}
		})
	}
}

func TestCreateRefusesOverwrite(t *testing.T) {
	dir := newPKI(t, "a")
	if err := CreateCA(dir); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), CACertFile) {
		t.Errorf("second CreateCA = %v, want ErrExists naming %s", err, CACertFile)
	}
	if err := CreateNode(dir, "a", nil); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "a.crt") {
		t.Errorf("second CreateNode = %v, want ErrExists naming a.crt", err)
	}
	// A key left behind alone is not overwritten either.
	if err := os.Remove(filepath.Join(dir, "a.crt")); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(dir, "a", nil); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "a.key") {
		t.Errorf("CreateNode over a lone key = %v, want ErrExists naming a.key", err)
	}
}

func TestCreatedFiles(t *testing.T) {
	dir := newPKI(t, "node-1")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	for _, f := range []string{CAKeyFile, "node-1.key"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
	cas, err := readCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	ca := cas[0]
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || ca.Subject.CommonName != "countmesh CA" {
		t.Errorf("CA: IsCA %v, usage %v, CN %q", ca.IsCA, ca.KeyUsage, ca.Subject.CommonName)
	}
	if y := time.Until(ca.NotAfter).Hours() / 24 / 365; y < 9.9 || y > 10.1 {
		t.Errorf("CA lifetime %.2f years, want 10", y)
	}
	if ca.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("CA signature %v, want ECDSA-SHA256", ca.SignatureAlgorithm)
	}
	if err := CreateNode(dir, "n2", []string{"10.0.0.7", "::1", "Node2.Example.com", "10.0.0.7"}); err != nil {
		t.Fatal(err)
	}
	certs, err := readCerts(filepath.Join(dir, "n2.crt"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := certs[0]
	if leaf.Subject.CommonName != "n2" {
		t.Errorf("CN = %q, want n2", leaf.Subject.CommonName)
	}
	if want := []string{"n2", "node2.example.com"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS names %q, want %q", leaf.DNSNames, want)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.0.0.7", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP addresses %q, want %q", ips, want)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(leaf.ExtKeyUsage, want) {
		t.Errorf("ext key usage %v, want server and client auth", leaf.ExtKeyUsage)
	}
	if leaf.IsCA {
		t.Error("node certificate is a CA")
	}
	if y := time.Until(leaf.NotAfter).Hours() / 24 / 365; y < 1.9 || y > 2.1 {
		t.Errorf("node lifetime %.2f years, want 2", y)
	}
	if leaf.SerialNumber.Cmp(ca.SerialNumber) == 0 || leaf.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %v (CA %v): want positive and distinct", leaf.SerialNumber, ca.SerialNumber)
	}
	if err := leaf.VerifyHostname("10.0.0.7"); err != nil {
		t.Errorf("VerifyHostname(10.0.0.7): %v", err)
	}
}

func TestCreateNodeValidates(t *testing.T) {
	dir := newPKI(t)
	tests := []struct {
		name   string
		node   string
		hosts  []string
		wantIs error
	}{
		{"empty name", "", nil, ErrBadName},
		{"slash", "../etc/x", nil, ErrBadName},
		{"backslash", `a\b`, nil, ErrBadName},
		{"dot", ".", nil, ErrBadName},
		{"space", "a b", nil, ErrBadName},
		{"ca", "ca", nil, ErrBadName},
		{"empty host", "n", []string{""}, ErrBadHost},
		{"host with space", "n", []string{"a b"}, ErrBadHost},
		{"host with port", "n", []string{"10.0.0.1:7946"}, ErrBadHost},
		{"host empty label", "n", []string{"a..b"}, ErrBadHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CreateNode(dir, tt.node, tt.hosts); !errors.Is(err, tt.wantIs) {
				t.Errorf("CreateNode(%q, %q) = %v, want %v", tt.node, tt.hosts, err, tt.wantIs)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("refused names left files behind: %d entries, want the CA's 2", len(entries))
	}
	if err := CreateNode(filepath.Join(dir, "missing"), "n", nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CreateNode without a CA = %v, want not exist", err)
	}
}

func TestPeerNameNeedsAVerifiedPeer(t *testing.T) {
	if _, err := PeerName(tls.ConnectionState{}); !errors.Is(err, ErrNoPeerCert) {
		t.Errorf("PeerName of an empty state = %v, want ErrNoPeerCert", err)
	}
}

func TestServerCert(t *testing.T) {
	dir := newPKI(t, "api", "api2")
	s, err := LoadServerCert(filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}
	roots := x509.NewCertPool()
	cas, err := readCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(cas[0])
	served := func() string {
		t.Helper()
		c, srv := net.Pipe()
		defer c.Close()
		go func() {
			tls.Server(srv, cfg).Handshake()
			srv.Close()
		}()
		tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "api" {
		t.Errorf("served %q, want api", got)
	}
	copyFile(t, filepath.Join(dir, "api2.crt"), filepath.Join(dir, "api.crt"))
	copyFile(t, filepath.Join(dir, "api2.key"), filepath.Join(dir, "api.key"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "api2" {
		t.Errorf("after Reload served %q, want api2", got)
	}
	copyFile(t, filepath.Join(dir, "api.key"), filepath.Join(dir, "api.crt")) // a key where the cert belongs
	if err := s.Reload(); !errors.Is(err, ErrNotPEM) {
		t.Errorf("Reload of a bad file = %v, want ErrNotPEM", err)
	}
	if got := served(); got != "api2" {
		t.Errorf("after a failed Reload served %q, want api2 still", got)
	}
	if _, err := LoadServerCert(filepath.Join(dir, "api2.crt"), filepath.Join(dir, "ca.key")); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("LoadServerCert with the wrong key = %v, want ErrKeyMismatch", err)
	}
}
