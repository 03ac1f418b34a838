package client

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTokenIsSentOnEveryRequest(t *testing.T) {
	f := newFakeServer(t)
	cfg := DefaultConfig()
	cfg.BaseURL = f.srv.URL
	cfg.Token = "s3cr3t-Token_43"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := []struct {
		name string
		do   func() error
	}{
		{"incr", func() error { _, err := c.Incr(ctx, "n", "k", 1, IncrOptions{}); return err }},
		{"get", func() error { _, err := c.Get(ctx, "n", "k", GetOptions{}); return err }},
		{"send", func() error { return c.Send(ctx, http.MethodPost, CounterPath("n", "k")+"/incr", nil, "") }},
		{"healthz", func() error { return c.Healthz(ctx) }},
	}
	for _, call := range calls {
		t.Run(call.name, func(t *testing.T) {
			if err := call.do(); err != nil {
				t.Fatal(err)
			}
			if got := f.last().header.Get("Authorization"); got != "Bearer s3cr3t-Token_43" {
				t.Errorf("Authorization = %q, want the bearer token", got)
			}
		})
	}
	// Without a token no Authorization header is sent.
	if _, err := f.client(t).Get(ctx, "n", "k", GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.last().header.Get("Authorization"); got != "" {
		t.Errorf("Authorization without a token = %q, want none", got)
	}
}

func TestTokenWithSpacesIsRefused(t *testing.T) {
	for _, tok := range []string{"Bearer abc", "abc\n", "a\tb"} {
		cfg := DefaultConfig()
		cfg.Token = tok
		if _, err := New(cfg); err == nil {
			t.Errorf("New with Token %q succeeded, want an error", tok)
		}
	}
}

// writeCA writes srv's certificate as a PEM CA file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.crt")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLSConfigForCA(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ns":"n","key":"k","value":5}`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ctx := context.Background()
	newClient := func(tc func(*Config)) *Client {
		t.Helper()
		cfg := DefaultConfig()
		cfg.BaseURL = srv.URL
		cfg.Timeout = 5 * time.Second
		tc(&cfg)
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Without the CA the server's certificate is not trusted.
	_, err := newClient(func(*Config) {}).Get(ctx, "n", "k", GetOptions{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v, want a certificate error", err)
	}

	tc, err := TLSConfigForCA(writeCA(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	shared := NewHTTPClient(4)
	c := newClient(func(cfg *Config) { cfg.TLSConfig = tc; cfg.HTTPClient = shared })
	v, err := c.Get(ctx, "n", "k", GetOptions{})
	if err != nil || v.Value != 5 {
		t.Fatalf("with the CA: %v, %v; want 5", v.Value, err)
	}
	if tcc := shared.Transport.(*http.Transport).TLSClientConfig; tcc != nil && tcc.RootCAs != nil {
		t.Error("New changed the caller's transport; it must clone it")
	}

	// A transport New cannot configure is refused with advice.
	cfg := DefaultConfig()
	cfg.TLSConfig = tc
	cfg.HTTPClient = &http.Client{Transport: roundTripFunc(nil)}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "*http.Transport") {
		t.Errorf("New with a custom RoundTripper and TLSConfig = %v, want an error", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTLSConfigForCABadFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := TLSConfigForCA(bad); !errors.Is(err, ErrBadCA) {
		t.Errorf("TLSConfigForCA(not PEM) = %v, want ErrBadCA", err)
	}
	if _, err := TLSConfigForCA(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("TLSConfigForCA(missing) = %v, want not exist", err)
	}
}
