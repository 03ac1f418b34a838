package resp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/countmesh/countmesh/internal/wait"
)

// TestBoundedAbuse checks the bounds: a connection past MaxConns is
// refused with Redis's message, a command larger than MaxCommandBytes ends
// its connection, a bulk length announcing gigabytes is not buffered, and
// the listener keeps serving the well-behaved client throughout.
func TestBoundedAbuse(t *testing.T) {
	const maxConns = 3
	ts := newTestServer(t, func(c *Config) { c.MaxConns, c.MaxCommandBytes = maxConns, 64<<10 })
	good := dialRaw(t, ts.addr)
	good.send("*1\r\n$4\r\nPING\r\n")
	if got := good.line(); got != "+PONG" {
		t.Fatalf("PING = %q", got)
	}

	// A command of 1 GiB announced: refused at its header.
	huge := dialRaw(t, ts.addr)
	huge.send("*2\r\n$4\r\nECHO\r\n$1073741824\r\n")
	chunk := strings.Repeat("x", 16<<10)
	for range 8 {
		if _, err := huge.c.Write([]byte(chunk)); err != nil {
			break // already refused
		}
	}
	if got := huge.line(); !strings.HasPrefix(got, "-ERR Protocol error: invalid bulk length (more than 65536)") {
		t.Errorf("oversized command: %q", got)
	}
	huge.wantClosed()

	// An endless inline line is cut at MaxCommandBytes.
	inline := dialRaw(t, ts.addr)
	for range 8 {
		if _, err := inline.c.Write([]byte(chunk)); err != nil {
			break
		}
	}
	if got := inline.line(); !strings.HasPrefix(got, "-ERR Protocol error: a command of more than 65536 bytes") {
		t.Errorf("endless inline command: %q", got)
	}
	inline.wantClosed()

	// Lengths that redcon's parser cannot take (an overflow of its bounds
	// check, a loop of 2^63 turns) are refused before it sees them, even
	// when they arrive a byte at a time.
	for _, bad := range []string{"*1\r\n$9223372036854775800\r\n", "*9223372036854775807\r\n$4\r\nPING\r\n", "*1\r\n$+00000000000000000000000999999\r\n"} {
		c := dialRaw(t, ts.addr)
		for i := range len(bad) {
			if _, err := c.c.Write([]byte{bad[i]}); err != nil {
				break
			}
		}
		if got := c.line(); !strings.HasPrefix(got, "-ERR Protocol error: invalid") {
			t.Errorf("%q: %q", bad, got)
		}
		c.wantClosed()
	}

	// Connections past the limit are refused; closing one makes room.
	wait.Until(t, 10*time.Second, "the refused connections to close", func() bool { return ts.srv.conns.Load() == 1 })
	var held []*rawConn
	for range maxConns - 1 {
		c := dialRaw(t, ts.addr)
		c.send("*1\r\n$4\r\nPING\r\n")
		if got := c.line(); got != "+PONG" {
			t.Fatalf("PING within the limit = %q", got)
		}
		held = append(held, c)
	}
	over := dialRaw(t, ts.addr)
	if got := over.line(); got != "-ERR max number of clients reached" {
		t.Errorf("connection past the limit: %q", got)
	}
	over.wantClosed()
	if got := ts.metric("countmesh_resp_connections_refused_total"); got != 1 {
		t.Errorf("refused connections metric = %v, want 1", got)
	}
	held[0].c.Close()
	wait.Until(t, 10*time.Second, "a slot to free", func() bool { return ts.srv.conns.Load() < maxConns })
	again := dialRaw(t, ts.addr)
	again.send("*1\r\n$4\r\nPING\r\n")
	if got := again.line(); got != "+PONG" {
		t.Errorf("PING after a slot freed = %q", got)
	}

	// Too many keys for one MGET.
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n$4\r\nMGET\r\n", 10_002)
	for range 10_001 {
		b.WriteString("$3\r\na:b\r\n")
	}
	good.send(b.String())
	if got := good.line(); !strings.HasPrefix(got, "-ERR MGET reads at most 10000 keys") {
		t.Errorf("MGET of 10,001 keys: %q", got)
	}
	// The well-behaved client was served throughout.
	good.send("*2\r\n$4\r\nINCR\r\n$7\r\npages:g\r\n")
	if got := good.line(); got != ":1" {
		t.Errorf("INCR after the abuse = %q", got)
	}
}

// TestShutdownFinishesPipelines checks that Shutdown answers what is in
// flight, then closes the connections and refuses new ones.
func TestShutdownFinishesPipelines(t *testing.T) {
	ts := newTestServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.send("*2\r\n$4\r\nINCR\r\n$7\r\npages:s\r\n")
	if got := c.line(); got != ":1" {
		t.Fatalf("INCR = %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-ts.served:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after Shutdown")
	}
	c.wantClosed()
	if err := ts.srv.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}
