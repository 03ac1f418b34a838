package resp

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/node"
)

// Tokens of the tests' tokens file.
const (
	tokWrite = "write-token-0123456789abcdef" // write on pages*
	tokRead  = "read-token-0123456789abcdef"  // read on everything
	tokAdmin = "admin-token-0123456789abcdef" // admin on everything
)

type testServer struct {
	t    *testing.T
	addr string
	node *node.Node
	srv  *Server
	reg  *prometheus.Registry
	// served receives Serve's error.
	served chan error
}

// newTestServer serves a fresh in-memory node over RESP on 127.0.0.1:0.
// mutate, when not nil, changes the listener's Config first.
func newTestServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	ncfg := node.DefaultConfig()
	ncfg.Name = "test-node"
	ncfg.Store.Dir = "data"
	ncfg.Store.FS = vfs.NewMem()
	ncfg.Logger = zaptest.NewLogger(t)
	reg := prometheus.NewRegistry()
	ncfg.Registerer = reg
	n, err := node.Open(ncfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	cfg := DefaultConfig()
	cfg.Node, cfg.Registerer, cfg.Logger, cfg.Version = n, reg, ncfg.Logger, "test"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("new resp server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, addr: ln.Addr().String(), node: n, srv: srv, reg: reg, served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		n.Close()
	})
	return ts
}

// tokensFile writes the tests' tokens file and loads it.
func tokensFile(t testing.TB) (string, *auth.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	file := tokWrite + " write pages*\n" + tokRead + " read\n" + tokAdmin + " admin\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := auth.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, store
}

// client returns a go-redis client of the server, closed with the test.
func (ts *testServer) client(mutate func(*redis.Options)) *redis.Client {
	ts.t.Helper()
	opt := &redis.Options{Addr: ts.addr, MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	if mutate != nil {
		mutate(opt)
	}
	c := redis.NewClient(opt)
	ts.t.Cleanup(func() { c.Close() })
	return c
}

// metric returns the value of the counter or gauge name (no labels, or
// the sum over them) in the server's registry.
func (ts *testServer) metric(name string) float64 {
	ts.t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		ts.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// redisErr returns the text of err, which must be a Redis error reply.
func redisErr(t *testing.T, err error) string {
	t.Helper()
	var re redis.Error
	if !errors.As(err, &re) {
		t.Fatalf("want a Redis error reply, got %v", err)
	}
	return re.Error()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
