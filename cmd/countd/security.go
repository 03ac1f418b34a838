package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/internal/pki"
)

// isLoopback reports whether a listen address ("host:port") is reachable
// from this machine only: a loopback IP or "localhost". An empty host,
// 0.0.0.0, :: or any other name listens on (or may resolve to) a network.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// protectedMode refuses, as Redis's protected mode does, to start a
// listener on a non-loopback address without the security that listener
// needs, unless --insecure: the HTTP API and the RESP listener need
// tokens, gossip and the peer listener need mutual TLS and a gossip key,
// and the admin listener (profiling) is for loopback only. It returns one error naming every
// missing flag, or nil; with --insecure it returns the same findings as
// warnings instead.
func protectedMode(o options) (problems []string) {
	if !isLoopback(o.httpAddr) && o.apiTokensFile == "" {
		problems = append(problems, fmt.Sprintf("--http-addr %s is not a loopback address and no --api-tokens-file is given: anyone who can reach it could read and write every counter", o.httpAddr))
	}
	if addr := o.respListenAddr(); addr != "" && !isLoopback(addr) && o.apiTokensFile == "" {
		problems = append(problems, fmt.Sprintf("--resp-addr %s is not a loopback address and no --api-tokens-file is given: anyone who can reach it could read and write every counter (or give --resp-addr off)", addr))
	}
	if o.gossipAddr != "off" {
		var missing []string
		if o.tlsCA == "" || o.tlsCert == "" || o.tlsKey == "" {
			missing = append(missing, "--tls-ca, --tls-cert and --tls-key")
		}
		if o.gossipKeyFile == "" {
			missing = append(missing, "--gossip-key-file")
		}
		for _, l := range []struct{ flag, addr string }{{"--gossip-addr", o.gossipAddr}, {"--peer-addr", o.peerAddr}} {
			if l.addr == "" || isLoopback(l.addr) || len(missing) == 0 {
				continue
			}
			problems = append(problems, fmt.Sprintf("%s %s is not a loopback address and %s %s not given: any process that reaches it could join the mesh and forge counts", l.flag, l.addr, strings.Join(missing, " and "), isOrAre(missing)))
		}
	}
	if o.adminAddr != "off" && o.adminAddr != "" && !isLoopback(o.adminAddr) {
		problems = append(problems, fmt.Sprintf("--admin-addr %s is not a loopback address: the profiler it serves is for operators on this machine", o.adminAddr))
	}
	return problems
}

func isOrAre(missing []string) string {
	if len(missing) == 1 && !strings.Contains(missing[0], " and ") {
		return "is"
	}
	return "are"
}

// maxGossipKeysFile bounds the gossip key file.
const maxGossipKeysFile = 64 << 10

// readGossipKeys reads a memberlist keyring file: one base64 key (16, 24
// or 32 bytes) per line, the first the one that encrypts; blank lines and
// lines starting with # are skipped.
func readGossipKeys(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	if st.Size() > maxGossipKeysFile {
		return nil, fmt.Errorf("gossip key file %s: %d bytes; a keyring file is a few lines (at most %d bytes)", path, st.Size(), maxGossipKeysFile)
	}
	var keys [][]byte
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("gossip key file %s, line %d: not base64 (make a key with `countctl keygen`)", path, line)
		}
		switch len(k) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("gossip key file %s, line %d: a key of %d bytes; keys are 16, 24 or 32 bytes (`countctl keygen` makes 32)", path, line, len(k))
		}
		for _, o := range keys {
			if bytes.Equal(o, k) {
				return nil, fmt.Errorf("gossip key file %s, line %d: the same key twice", path, line)
			}
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip key file %s has no key (make one with `countctl keygen`)", path)
	}
	return keys, nil
}

// limitListener accepts at most max connections at once; connections
// beyond that are closed as soon as they are accepted, so that a client
// that opens thousands of idle connections neither exhausts the process's
// file descriptors nor holds back the clients already connected.
type limitListener struct {
	net.Listener
	max     int64
	active  atomic.Int64
	refused atomic.Uint64
	onFull  func() // called once, the first time the limit is hit
	once    sync.Once
}

func newLimitListener(l net.Listener, max int, onFull func()) *limitListener {
	return &limitListener{Listener: l, max: int64(max), onFull: onFull}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.max {
			l.active.Add(-1)
			l.refused.Add(1)
			c.Close()
			if l.onFull != nil {
				l.once.Do(l.onFull)
			}
			continue
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.active.Add(-1) })
	return err
}

// security is what the security flags loaded: each part nil (or empty)
// when its flags were not given.
type security struct {
	tokens     *auth.Store
	peerTLS    *pki.PeerTLS
	apiCert    *pki.ServerCert
	gossipKeys [][]byte
}

func loadSecurity(o options) (*security, error) {
	sec := &security{}
	var err error
	if o.apiTokensFile != "" {
		if sec.tokens, err = auth.LoadFile(o.apiTokensFile); err != nil {
			return nil, fmt.Errorf("--api-tokens-file: %w", err)
		}
	}
	if o.tlsCA != "" {
		if sec.peerTLS, err = pki.LoadPeerTLS(o.tlsCA, o.tlsCert, o.tlsKey); err != nil {
			return nil, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		// Peers check that a hello names the node its certificate was
		// issued to, so the two must agree.
		if name := sec.peerTLS.Name(); name != o.nodeName {
			return nil, fmt.Errorf("--tls-cert was issued to %q but --node-name is %q: make a certificate for this node with `countctl certs create-node DIR %s HOST...`", name, o.nodeName, o.nodeName)
		}
	}
	if o.apiTLSCert != "" {
		if sec.apiCert, err = pki.LoadServerCert(o.apiTLSCert, o.apiTLSKey); err != nil {
			return nil, fmt.Errorf("--api-tls-cert/--api-tls-key: %w", err)
		}
	}
	if o.gossipKeyFile != "" {
		if sec.gossipKeys, err = readGossipKeys(o.gossipKeyFile); err != nil {
			return nil, err
		}
	}
	return sec, nil
}

// reload re-reads every file given on SIGHUP: tokens, gossip keys and
// certificates. A file that fails to load leaves what was loaded before in
// force; the error is logged.
func (sec *security) reload(o options, mesh *gossip.Mesh, log *zap.Logger) {
	log.Info("SIGHUP: reloading tokens, gossip keys and certificates")
	if sec.tokens != nil {
		if err := sec.tokens.Reload(); err != nil {
			log.Error("reload --api-tokens-file failed; the previous tokens stay in force", zap.Error(err))
		} else {
			log.Info("reloaded the API tokens", zap.String("file", o.apiTokensFile))
		}
	}
	if sec.peerTLS != nil {
		if err := sec.peerTLS.Reload(); err != nil {
			log.Error("reload the peer certificates failed; the previous ones stay in force", zap.Error(err))
		} else {
			log.Info("reloaded the peer certificates (new connections use them)")
		}
	}
	if sec.apiCert != nil {
		if err := sec.apiCert.Reload(); err != nil {
			log.Error("reload the API certificate failed; the previous one stays in force", zap.Error(err))
		} else {
			log.Info("reloaded the API certificate")
		}
	}
	if o.gossipKeyFile != "" && mesh != nil {
		keys, err := readGossipKeys(o.gossipKeyFile)
		if err == nil {
			err = mesh.SetGossipKeys(keys)
		}
		if err != nil {
			log.Error("reload --gossip-key-file failed; the previous keyring stays in force", zap.Error(err))
		} else {
			log.Info("reloaded the gossip keyring", zap.Int("keys", len(keys)))
		}
	}
}
