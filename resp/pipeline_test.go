package resp

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/countmesh/countmesh/node"
)

var nodeRead = node.ReadOptions{}

// TestPipelineSharesOneBatch checks that a pipeline's increments are
// applied as node batches (one commit each), not one by one, and that the
// replies keep the commands' order.
func TestPipelineSharesOneBatch(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.client(nil)
	ctx := ctxT(t)
	if err := c.Ping(ctx).Err(); err != nil { // the handshake, before counting
		t.Fatal(err)
	}
	incrsBefore, batchesBefore := ts.metric("countmesh_increments_total"), ts.metric("countmesh_batches_total")
	const n = 1000
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, n)
	for i := range cmds {
		cmds[i] = pipe.Incr(ctx, "pages:piped")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if cmd.Val() != int64(i+1) {
			t.Fatalf("reply %d = %d, want %d", i, cmd.Val(), i+1)
		}
	}
	batches := ts.metric("countmesh_batches_total") - batchesBefore
	if batches < 1 || batches > 20 {
		t.Errorf("%d pipelined INCRs made %v node batches, want a few (the commands read at once share one)", n, batches)
	}
	if incrs := ts.metric("countmesh_increments_total") - incrsBefore; incrs != 0 && incrs != n {
		t.Errorf("increments counted %v", incrs)
	}
}

// TestPipelineOrderAndErrors mixes writes, reads and refusals in one
// pipeline: each reply is its command's, in order, and a refused increment
// (an overflow) refuses only itself.
func TestPipelineOrderAndErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.client(nil)
	ctx := ctxT(t)
	if err := c.Set(ctx, "pages:max", math.MaxInt64-1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	pipe := c.Pipeline()
	a1 := pipe.Incr(ctx, "pages:a")
	m1 := pipe.Incr(ctx, "pages:max")
	m2 := pipe.Incr(ctx, "pages:max") // overflows
	bad := pipe.IncrBy(ctx, "nons", 1)
	a2 := pipe.IncrBy(ctx, "pages:a", 5)
	g := pipe.Get(ctx, "pages:a")
	a3 := pipe.Decr(ctx, "pages:a")
	s := pipe.Set(ctx, "pages:a", 100, 0)
	a4 := pipe.Incr(ctx, "pages:a")
	mg := pipe.MGet(ctx, "pages:a", "pages:max")
	_, _ = pipe.Exec(ctx)
	check := func(name string, got int64, err error, want int64) {
		t.Helper()
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", name, got, err, want)
		}
	}
	check("INCR a", a1.Val(), a1.Err(), 1)
	check("INCR max", m1.Val(), m1.Err(), math.MaxInt64)
	if err := m2.Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR increment or decrement would overflow") {
		t.Errorf("overflowing INCR: %v", err)
	}
	if err := bad.Err(); err == nil || !strings.Contains(err.Error(), "has no namespace") {
		t.Errorf("INCRBY without namespace: %v", err)
	}
	check("INCRBY a 5", a2.Val(), a2.Err(), 6)
	if g.Val() != "6" {
		t.Errorf("GET a = %q, %v; want 6", g.Val(), g.Err())
	}
	check("DECR a", a3.Val(), a3.Err(), 5)
	if s.Val() != "OK" {
		t.Errorf("SET = %q, %v", s.Val(), s.Err())
	}
	check("INCR a after SET", a4.Val(), a4.Err(), 101)
	if fmt.Sprint(mg.Val()) != fmt.Sprintf("[101 %d]", int64(math.MaxInt64)) {
		t.Errorf("MGET = %v, %v", mg.Val(), mg.Err())
	}
}

// TestDeepPipeline sends more commands at once than Config.MaxPipeline:
// every one is answered, in order.
func TestDeepPipeline(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.MaxPipeline = 7 })
	conn := dialRaw(t, ts.addr)
	const n = 500
	var b strings.Builder
	for range n {
		b.WriteString("*2\r\n$4\r\nINCR\r\n$7\r\npages:d\r\n")
	}
	conn.send(b.String())
	for i := 1; i <= n; i++ {
		if got := conn.line(); got != fmt.Sprintf(":%d", i) {
			t.Fatalf("reply %d = %q", i, got)
		}
	}
}

// rawConn is a plain TCP client for what go-redis cannot send.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := rc.c.Write([]byte(s)); err != nil {
		rc.t.Fatal(err)
	}
}

// line reads one reply line without its CRLF.
func (rc *rawConn) line() string {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("read a reply: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// wantClosed fails unless the server closes the connection.
func (rc *rawConn) wantClosed() {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := rc.r.ReadString('\n'); err == nil {
		rc.t.Fatalf("the connection is still open (read %q)", l)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		rc.t.Fatal("the connection is still open after 10 s")
	}
}
