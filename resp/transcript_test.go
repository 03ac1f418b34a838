package resp

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite resp/testdata/transcripts.golden")

// transcripts are byte streams a client sends in one write, each on a new
// connection of a fresh server; the replies up to the connection's end are
// compared with testdata/transcripts.golden, written by the listener as it
// was before its own connection loop and parser replaced redcon's (the
// replies, errors included, must stay byte-identical).
var transcripts = []struct {
	name   string
	tokens bool
	send   string
}{
	{"mix", false, bulkCmds(
		[]string{"INCR", "pages:a"},
		[]string{"INCR", "pages:a"},
		[]string{"incrby", "pages:a", "10"},
		[]string{"INCRBY", "pages:a", "x"},
		[]string{"INCRBY", "pages:a", "9007199254740992"},
		[]string{"INCR", "nonamespace"},
		[]string{"INCR", "Bad NS:a"},
		[]string{"INCR", "pages:"},
		[]string{"DECR", "pages:b"},
		[]string{"DECRBY", "pages:b", "-3"},
		[]string{"INCR"},
		[]string{"INCR", "pages:a", "extra"},
		[]string{"NOPE", "a", "b\r\nc"},
		[]string{"GET", "pages:a"},
		[]string{"GET", "pages:never"},
		[]string{"MGET", "pages:a", "pages:b", "pages:c"},
		[]string{"MGET", "pages:a", "nons"},
		[]string{"SET", "pages:max", strconv.FormatInt(math.MaxInt64-1, 10)},
		[]string{"INCR", "pages:a"},
		[]string{"INCR", "pages:max"},
		[]string{"INCR", "pages:max"},
		[]string{"INCR", "pages:a"},
		[]string{"INCRBY", "pages:max", "-1"},
		[]string{"SET", "pages:a", "x"},
		[]string{"SET", "pages:a", "1", "EX", "10"},
		[]string{"DEL", "pages:a", "pages:zz"},
		[]string{"GET", "pages:a"},
		[]string{"PING"},
		[]string{"PING", "hi"},
		[]string{"PING", "a", "b"},
		[]string{"ECHO", "x y"},
		[]string{"SELECT", "0"},
		[]string{"SELECT", "1"},
		[]string{"SELECT", "z"},
		[]string{"CLIENT", "SETNAME", "bench"},
		[]string{"CLIENT", "GETNAME"},
		[]string{"CLIENT", "ID"},
		[]string{"CLIENT", "NOPE"},
		[]string{"CONFIG", "GET", "save"},
		[]string{"CONFIG", "SET", "save"},
		[]string{"COMMAND", "COUNT"},
		[]string{"COMMAND", "INFO", "incr", "nope"},
		[]string{"COMMAND", "NOPE"},
		[]string{"HELLO", "3"},
		[]string{"CONFIG", "GET", "x"},
		[]string{"HELLO", "2"},
		[]string{"HELLO", "4"},
		[]string{"HELLO", "x"},
		[]string{"AUTH", "x"},
		[]string{"INCR", "pages:a"},
		[]string{"QUIT"},
		[]string{"INCR", "pages:a"},
	)},
	{"namespaces", false, bulkCmds(
		[]string{"INCR", ":a"},
		[]string{"INCR", "pages:a"},
		[]string{"INCR", ":a"},
		[]string{"INCR", "Bad:a"},
		[]string{"INCR", "pages:b"},
		[]string{"incR", "pages:b"},
		[]string{"INCR", "Bad:a"},
		[]string{"INCR", "Bad:b"},
		[]string{"INCRBY", "pages:c", "5"},
		[]string{"DECR", "pages:c"},
		[]string{"GET", ":a"},
		[]string{"GET", "Bad:a"},
		[]string{"GET", "pages:c"},
		[]string{"INCR", "pages:\x01"},
		[]string{"INCR", "pages:a"},
		[]string{"INCR", strings.Repeat("n", 65) + ":a"},
		[]string{"INCR", "clicks:a"},
		[]string{"QUIT"},
	)},
	{"inline", false, "INCRBY pages:i 5\r\n\r\n   \r\nGET pages:i\nECHO \"a b\" 'c d'\r\nPING\r\n" + bulkCmds([]string{"INCR", "pages:i"}) + "QUIT\r\n"},
	{"auth", true, bulkCmds(
		[]string{"PING"},
		[]string{"INCR", "pages:a"},
		[]string{"AUTH", "wrong"},
		[]string{"AUTH", "someone", tokWrite},
		[]string{"AUTH", tokWrite},
		[]string{"INCR", "pages:a"},
		[]string{"INCR", "clicks:a"},
		[]string{"GET", "pages:a"},
		[]string{"AUTH", "default", tokRead},
		[]string{"INCR", "pages:a"},
		[]string{"GET", "pages:a"},
		[]string{"QUIT"},
	)},
	{"unbalanced quotes", false, "PING\r\nECHO \"abc\r\n"},
	{"not dollar", false, "*1\r\n+PING\r\n"},
	{"zero multibulk", false, "*0\r\n"},
	{"negative multibulk", false, "*-1\r\n"},
	{"bad multibulk", false, "*x\r\n$4\r\nPING\r\n"},
	{"multibulk no cr", false, "*1\n$4\r\nPING\r\n"},
	{"bad bulk", false, "*1\r\n$x\r\nPING\r\n"},
	{"bulk no cr", false, "*1\r\n$4\nPING\r\n"},
	{"bulk too long", false, "*1\r\n$4\r\nPINGxx\r\n"},
	{"negative bulk", false, "*1\r\n$-1\r\n"},
	{"huge bulk", false, "*1\r\n$9223372036854775800\r\n"},
	{"huge multibulk", false, "*9223372036854775807\r\n$4\r\nPING\r\n"},
	{"good then bad", false, bulkCmds([]string{"INCR", "pages:a"}) + "*1\r\n$x\r\n"},
	{"plus sign lengths", false, "*+1\r\n$+4\r\nPING\r\n*1\r\n$04\r\nQUIT\r\n"},
}

func bulkCmds(cmds ...[]string) string {
	var b strings.Builder
	for _, args := range cmds {
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	return b.String()
}

// TestTranscripts checks the replies to fixed pipelines, good and bad
// commands and protocol errors mixed, against the golden file.
func TestTranscripts(t *testing.T) {
	var got strings.Builder
	for _, tc := range transcripts {
		var ts *testServer
		if tc.tokens {
			_, store := tokensFile(t)
			ts = newTestServer(t, func(c *Config) { c.Tokens = store })
		} else {
			ts = newTestServer(t, nil)
		}
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, tc.send); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		replies, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Errorf("%s: read: %v (got %q)", tc.name, err, replies)
		}
		fmt.Fprintf(&got, "== %s\n%s\n", tc.name, strings.ReplaceAll(string(replies), "\r\n", "\\r\\n\n"))
	}
	path := filepath.Join("testdata", "transcripts.golden")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, []byte(got.String())) {
		t.Errorf("replies differ from %s:\n%s", path, lineDiff(string(want), got.String()))
	}
}

// lineDiff lists the lines that differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// TestCommandMetricsByResult checks countmesh_resp_commands_total by
// command and result after a pipeline mixing them (the increments of a
// group are counted in runs).
func TestCommandMetricsByResult(t *testing.T) {
	ts := newTestServer(t, nil)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := bulkCmds(
		[]string{"INCR", "pages:a"}, []string{"INCR", "pages:a"}, []string{"INCR", "bad"},
		[]string{"INCR", "pages:b"}, []string{"DECR", "pages:a"}, []string{"DECR", "x"},
		[]string{"DECR", "pages:a"}, []string{"INCRBY", "pages:a", "2"}, []string{"GET", "pages:a"},
		[]string{"GET", "x"}, []string{"NOPE"}, []string{"INCR", "pages:c"}, []string{"QUIT"},
	)
	if _, err := io.WriteString(c, send); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"incr/ok": 4, "incr/error": 1, "decr/ok": 2, "decr/error": 1, "incrby/ok": 1,
		"get/ok": 1, "get/error": 1, "other/error": 1, "quit/ok": 1,
	}
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "countmesh_resp_commands_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if v := m.GetCounter().GetValue(); v != 0 {
				got[labels["command"]+"/"+labels["result"]] = v
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("commands counted %v, want %v", got, want)
	}
}
