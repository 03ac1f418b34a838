package resp

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/countmesh/countmesh/internal/pki"
)

// TestAuth checks AUTH in its forms and that each key is checked against
// the token's scope and namespaces.
func TestAuth(t *testing.T) {
	path, store := tokensFile(t)
	ts := newTestServer(t, func(c *Config) { c.Tokens = store })
	ctx := ctxT(t)

	// No token: PING works (go-redis's handshake sends HELLO without AUTH,
	// which is refused, and falls back), anything else is NOAUTH.
	anon := ts.client(nil)
	if err := anon.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING without a token: %v", err)
	}
	for _, args := range [][]any{{"GET", "pages:a"}, {"INCR", "pages:a"}, {"ECHO", "x"}, {"INFO"}, {"NOSUCH"}} {
		if got := redisErr(t, anon.Do(ctx, args...).Err()); got != "NOAUTH Authentication required." && !strings.HasPrefix(got, "ERR unknown command") {
			t.Errorf("%v without a token: %q", args, got)
		}
	}
	if got := redisErr(t, anon.Do(ctx, "AUTH", "wrong-token-0123456789abcdef").Err()); got != "WRONGPASS invalid username-password pair or user is disabled." {
		t.Errorf("AUTH with a wrong token: %q", got)
	}
	if got := redisErr(t, anon.Do(ctx, "AUTH", "alice", tokWrite).Err()); !strings.HasPrefix(got, "WRONGPASS") {
		t.Errorf("AUTH with a user other than default: %q", got)
	}
	if got := redisErr(t, anon.Do(ctx, "HELLO", 3).Err()); !strings.HasPrefix(got, "NOAUTH HELLO must be called") {
		t.Errorf("HELLO 3 without AUTH: %q", got)
	}

	// AUTH <token> on one connection (a pool of one, so that the AUTH and
	// the commands share it).
	one := ts.client(func(o *redis.Options) { o.PoolSize = 1 })
	if err := one.Do(ctx, "AUTH", tokWrite).Err(); err != nil {
		t.Fatalf("AUTH token: %v", err)
	}
	if got, err := one.Incr(ctx, "pages:a").Result(); err != nil || got != 1 {
		t.Fatalf("INCR after AUTH = %d, %v", got, err)
	}

	// go-redis with a password sends HELLO 3 AUTH default <token>; with a
	// user name AUTH default <token> (RESP2).
	writer := ts.client(func(o *redis.Options) { o.Password = tokWrite })
	writer2 := ts.client(func(o *redis.Options) { o.Username, o.Password, o.Protocol = "default", tokWrite, 2 })
	reader := ts.client(func(o *redis.Options) { o.Password = tokRead })
	for name, c := range map[string]*redis.Client{"hello auth": writer, "auth default": writer2} {
		if got, err := c.IncrBy(ctx, "pages-eu:a", 2).Result(); err != nil || got%2 != 0 {
			t.Errorf("%s: INCRBY = %d, %v", name, got, err)
		}
	}
	// The write token covers pages* only, every key of a command.
	for _, args := range [][]any{{"INCR", "clicks:a"}, {"GET", "clicks:a"}, {"SET", "clicks:a", 1}, {"DEL", "pages:a", "clicks:a"}, {"MGET", "pages:a", "clicks:a"}} {
		if got := redisErr(t, writer.Do(ctx, args...).Err()); !strings.HasPrefix(got, "NOPERM ") || !strings.Contains(got, `namespace "clicks"`) {
			t.Errorf("%v with a pages* token: %q", args, got)
		}
	}
	// The refused DEL deleted nothing.
	if got, err := writer.Get(ctx, "pages:a").Result(); err != nil || got != "1" {
		t.Errorf("pages:a after the refused DEL = %q, %v; want 1", got, err)
	}
	// The read token reads everything and writes nothing.
	if got, err := reader.MGet(ctx, "pages:a", "clicks:a").Result(); err != nil || fmt.Sprint(got) != "[1 0]" {
		t.Errorf("MGET with the read token = %v, %v", got, err)
	}
	for _, args := range [][]any{{"INCR", "pages:a"}, {"DECRBY", "pages:a", 2}, {"SET", "pages:a", 5}, {"DEL", "pages:a"}} {
		if got := redisErr(t, reader.Do(ctx, args...).Err()); !strings.HasPrefix(got, "NOPERM ") || !strings.Contains(got, "scope read") {
			t.Errorf("%v with a read token: %q", args, got)
		}
	}
	// A token removed from the file (reloaded on SIGHUP) stops working on
	// connections that authenticated with it.
	if err := os.WriteFile(path, []byte(tokRead+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := redisErr(t, one.Incr(ctx, "pages:a").Err()); got != "NOAUTH Authentication required." {
		t.Errorf("INCR with a token removed from the file: %q", got)
	}
	if err := reader.Get(ctx, "pages:a").Err(); err != nil {
		t.Errorf("GET with a token still in the file: %v", err)
	}
}

// TestTLS serves RESP over TLS with a certificate of the API's kind.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	if err := pki.CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := pki.CreateNode(dir, "api", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	cert, err := pki.LoadServerCert(filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(c *Config) { c.TLS = cert.TLSConfig() })
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	ctx := ctxT(t)
	c := ts.client(func(o *redis.Options) { o.TLSConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"} })
	if got, err := c.Incr(ctx, "pages:tls").Result(); err != nil || got != 1 {
		t.Fatalf("INCR over TLS = %d, %v", got, err)
	}
	// A plain-text client gets no answer from the TLS listener.
	plain := ts.client(func(o *redis.Options) { o.MaxRetries = -1 })
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("a plain-text PING was answered by the TLS listener")
	}
}
