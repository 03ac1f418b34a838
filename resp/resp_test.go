package resp

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestCommands runs every command through go-redis, over RESP3 (go-redis's
// default) and RESP2.
func TestCommands(t *testing.T) {
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ts := newTestServer(t, nil)
			c := ts.client(func(o *redis.Options) { o.Protocol = proto })
			ctx := ctxT(t)

			if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
				t.Fatalf("PING = %q, %v", got, err)
			}
			if got, err := c.Do(ctx, "PING", "hi").Text(); err != nil || got != "hi" {
				t.Errorf("PING hi = %q, %v", got, err)
			}
			if got, err := c.Echo(ctx, "hello world").Result(); err != nil || got != "hello world" {
				t.Errorf("ECHO = %q, %v", got, err)
			}
			hello, err := c.Do(ctx, "HELLO", proto).Result()
			if err != nil {
				t.Fatalf("HELLO: %v", err)
			}
			if !strings.Contains(fmt.Sprint(hello), fmt.Sprintf("proto %d", proto)) && !strings.Contains(fmt.Sprint(hello), fmt.Sprintf("proto:%d", proto)) {
				t.Errorf("HELLO %d = %v, want proto %d in it", proto, hello, proto)
			}

			// A counter never written reads "0" (documented choice).
			if got, err := c.Get(ctx, "pages:home").Result(); err != nil || got != "0" {
				t.Errorf("GET of a new counter = %q, %v; want \"0\"", got, err)
			}
			steps := []struct {
				cmd  *redis.IntCmd
				want int64
			}{
				{c.Incr(ctx, "pages:home"), 1},
				{c.IncrBy(ctx, "pages:home", 10), 11},
				{c.Decr(ctx, "pages:home"), 10},
				{c.DecrBy(ctx, "pages:home", 4), 6},
				{c.IncrBy(ctx, "pages:home", -2), 4},
				{c.DecrBy(ctx, "pages:home", -3), 7},
			}
			for i, s := range steps {
				if got, err := s.cmd.Result(); err != nil || got != s.want {
					t.Errorf("step %d: %v = %d, %v; want %d", i, s.cmd.Args(), got, err, s.want)
				}
			}
			if got, err := c.Get(ctx, "pages:home").Result(); err != nil || got != "7" {
				t.Errorf("GET = %q, %v; want 7", got, err)
			}
			// The key is split at the first ':'.
			if got, err := c.Incr(ctx, "pages:a:b").Result(); err != nil || got != 1 {
				t.Errorf("INCR pages:a:b = %d, %v", got, err)
			}
			if v, err := ts.node.Get(ctx, "pages", "a:b", nodeRead); err != nil || v.Value != 1 {
				t.Errorf("node reads pages/a:b = %d, %v; want 1", v.Value, err)
			}
			if got, err := c.Set(ctx, "clicks:x", 42, 0).Result(); err != nil || got != "OK" {
				t.Errorf("SET = %q, %v", got, err)
			}
			if got, err := c.MGet(ctx, "pages:home", "clicks:x", "clicks:never").Result(); err != nil || fmt.Sprint(got) != "[7 42 0]" {
				t.Errorf("MGET = %v, %v; want [7 42 0]", got, err)
			}
			if got, err := c.Del(ctx, "clicks:x", "pages:home").Result(); err != nil || got != 2 {
				t.Errorf("DEL = %d, %v; want 2", got, err)
			}
			if got, err := c.MGet(ctx, "pages:home", "clicks:x").Result(); err != nil || fmt.Sprint(got) != "[0 0]" {
				t.Errorf("MGET after DEL = %v, %v; want [0 0]", got, err)
			}
			if got, err := c.Do(ctx, "SELECT", 0).Text(); err != nil || got != "OK" {
				t.Errorf("SELECT 0 = %q, %v", got, err)
			}
			if got, err := c.Do(ctx, "COMMAND", "COUNT").Int(); err != nil || got != len(commandTable) {
				t.Errorf("COMMAND COUNT = %d, %v; want %d", got, err, len(commandTable))
			}
			if _, err := c.Do(ctx, "COMMAND", "DOCS").Result(); err != nil {
				t.Errorf("COMMAND DOCS: %v", err)
			}
			if got, err := c.Command(ctx).Result(); err != nil || got["incrby"] == nil || got["incrby"].Arity != 3 || got["mget"].LastKeyPos != -1 {
				t.Errorf("COMMAND = %v, %v; want incrby with arity 3", got["incrby"], err)
			}
			if got, err := c.Info(ctx).Result(); err != nil || !strings.Contains(got, "redis_version:") || !strings.Contains(got, "countmesh_version:test") {
				t.Errorf("INFO = %q, %v", got, err)
			}
			if got, err := c.Do(ctx, "CLIENT", "SETNAME", "tester").Text(); err != nil || got != "OK" {
				t.Errorf("CLIENT SETNAME = %q, %v", got, err)
			}
			if got, err := c.Do(ctx, "CLIENT", "GETNAME").Text(); err != nil || got != "tester" {
				t.Errorf("CLIENT GETNAME = %q, %v", got, err)
			}
		})
	}
}

// TestErrors checks Redis's wording for the errors Redis has.
func TestErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.client(nil)
	ctx := ctxT(t)
	if err := c.Set(ctx, "pages:max", math.MaxInt64, 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []any
		want string // prefix of the error
	}{
		{[]any{"INCRBY", "pages:a", "x"}, "ERR value is not an integer or out of range"},
		{[]any{"INCRBY", "pages:a", "99999999999999999999"}, "ERR value is not an integer or out of range"},
		{[]any{"DECRBY", "pages:a", "1.5"}, "ERR value is not an integer or out of range"},
		{[]any{"SET", "pages:a", "hello"}, "ERR value is not an integer or out of range"},
		{[]any{"SET", "pages:a", "1", "EX", "10"}, "ERR syntax error"},
		{[]any{"INCR", "pages:max"}, "ERR increment or decrement would overflow"},
		{[]any{"INCRBY", "pages:a", "9007199254740992"}, "ERR by must satisfy |by| < 2^53"},
		{[]any{"INCR", "nonamespace"}, "ERR key 'nonamespace' has no namespace"},
		{[]any{"GET", "Bad:key"}, "ERR namespace \"Bad\" must be"},
		{[]any{"GET", "pages:"}, "ERR key must be 1 to 512 bytes"},
		{[]any{"MGET", "pages:a", "nope"}, "ERR key 'nope' has no namespace"},
		{[]any{"FLUSHALL", "now"}, "ERR unknown command 'FLUSHALL', with args beginning with: 'now' "},
		{[]any{"INCR"}, "ERR wrong number of arguments for 'incr' command"},
		{[]any{"GET", "a:b", "c"}, "ERR wrong number of arguments for 'get' command"},
		{[]any{"SELECT", 1}, "ERR DB index is out of range"},
		{[]any{"HELLO", 4}, "NOPROTO unsupported protocol version"},
		{[]any{"AUTH", "sometoken"}, "ERR AUTH <password> called without any password configured"},
		{[]any{"COMMAND", "FOO"}, "ERR unknown subcommand 'FOO'"},
	} {
		err := c.Do(ctx, tc.args...).Err()
		if err == nil {
			t.Errorf("%v: no error, want %q", tc.args, tc.want)
			continue
		}
		if got := redisErr(t, err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%v: error %q, want it to start with %q", tc.args, got, tc.want)
		}
	}
	// Nothing of the refused commands was applied.
	if got, err := c.MGet(ctx, "pages:a", "pages:max").Result(); err != nil || fmt.Sprint(got) != fmt.Sprint([]any{"0", fmt.Sprint(int64(math.MaxInt64))}) {
		t.Errorf("after the refusals: %v, %v", got, err)
	}
	// The connection still works.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if got := ts.metric("countmesh_resp_commands_total"); got < 20 {
		t.Errorf("countmesh_resp_commands_total = %v, want the commands counted", got)
	}
}

// TestQuit checks that QUIT answers OK and closes the connection.
func TestQuit(t *testing.T) {
	ts := newTestServer(t, nil)
	conn := dialRaw(t, ts.addr)
	conn.send("*1\r\n$4\r\nQUIT\r\n")
	if got := conn.line(); got != "+OK" {
		t.Fatalf("QUIT = %q, want +OK", got)
	}
	conn.wantClosed()
}

// TestInlineCommands checks the telnet form (redcon parses it).
func TestInlineCommands(t *testing.T) {
	ts := newTestServer(t, nil)
	conn := dialRaw(t, ts.addr)
	conn.send("INCRBY pages:inline 5\r\nGET pages:inline\r\n")
	if got := conn.line(); got != ":5" {
		t.Errorf("inline INCRBY = %q", got)
	}
	if got := conn.line() + conn.line(); got != "$15" {
		t.Errorf("inline GET = %q, want $1 5", got)
	}
}
