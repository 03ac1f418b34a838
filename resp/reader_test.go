package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

// parseAll reads every pipeline of in, given in reads of at most chunk
// bytes, with the listener's reader, and describes the commands and the
// error that ended it.
func parseAll(in []byte, chunk int) string {
	r := newReader(&chunkReader{b: in, n: chunk})
	var out strings.Builder
	for {
		cmds, err := r.read()
		if err != nil {
			fmt.Fprintf(&out, "error: %v", err)
			return out.String()
		}
		for _, c := range cmds {
			fmt.Fprintf(&out, "%q\n", c)
		}
	}
}

// parseAllRedcon is parseAll with redcon's reader.
func parseAllRedcon(in []byte, chunk int) string {
	r := redcon.NewReader(&chunkReader{b: in, n: chunk})
	var out strings.Builder
	for {
		cmds, err := r.ReadCommands()
		if err != nil {
			fmt.Fprintf(&out, "error: %v", err)
			return out.String()
		}
		for _, c := range cmds {
			fmt.Fprintf(&out, "%q\n", c.Args)
		}
	}
}

// chunkReader reads b at most n bytes at a time, then io.EOF.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

// guardOK reports whether the listener's length guard passes in (redcon's
// parser, which the reader is compared with, hangs or panics on what it
// refuses).
func guardOK(in []byte) bool {
	var g lengthGuard
	return g.check(in, DefaultMaxCommandBytes) == nil
}

// readerSeeds are inputs both parsers must agree on.
var readerSeeds = []string{
	"*2\r\n$4\r\nINCR\r\n$7\r\npages:a\r\n",
	"*2\r\n$4\r\nINCR\r\n$7\r\npages:a\r\n*2\r\n$4\r\nINCR\r\n$7\r\npa",
	"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
	"PING\r\nECHO \"a b\" 'c'\r\n\r\n   \r\nGET x\n",
	"ECHO \"a\\nb\"\r\nECHO 'x\"y'\r\n",
	"PING\r\nECHO \"abc\r\n",
	"ECHO \"a\"b\r\n",
	"*1\r\n+PING\r\n", "*1\r\n\xe9PING\r\n", "*0\r\n", "*-1\r\n", "*x\r\n", "*1\n$4\r\nPING\r\n",
	"*1\r\n$x\r\nPING\r\n", "*1\r\n$4\nPING\r\n", "*1\r\n$4\r\nPINGxx\r\n", "*1\r\n$-1\r\n",
	"*1\r\n$\r\n", "*\r\n", "*1\r\n$4\r\nPING\r", "*1\r\n$4\r\nPING\n\n",
	"*+1\r\n$+4\r\nPING\r\n*1\r\n$04\r\nQUIT\r\n",
	"*2\r\n$4\r\nINCR\r\n$7\r\npages:a\r\n*1\r\n$x\r\n",
	"*3\r\n$1\r\na\r\n",
}

// TestReaderMatchesRedcon checks that the listener's reader parses, and
// refuses, what redcon's reader does, read in one piece and byte by byte.
func TestReaderMatchesRedcon(t *testing.T) {
	for _, seed := range append(readerSeeds, bulkCmds([]string{"INCR", strings.Repeat("k", 40000)}, []string{"GET", "a"})) {
		for _, chunk := range []int{1 << 20, 1, 7} {
			if len(seed) > 4096 && chunk > 4096 {
				continue // redcon would see it in several reads
			}
			got, want := parseAll([]byte(seed), chunk), parseAllRedcon([]byte(seed), chunk)
			if got != want {
				t.Errorf("%q in reads of %d:\n got  %s\n want %s", seed, chunk, got, want)
			}
		}
	}
}

// FuzzReaderMatchesRedcon is TestReaderMatchesRedcon on arbitrary input.
func FuzzReaderMatchesRedcon(f *testing.F) {
	for _, s := range readerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 4000 || !guardOK(in) {
			return
		}
		if got, want := parseAll(in, 1<<20), parseAllRedcon(in, 1<<20); got != want {
			t.Fatalf("%q:\n got  %s\n want %s", in, got, want)
		}
	})
}

// TestReaderReusesNothingAcrossPipelines checks that a pipeline's
// arguments are the bytes read (no copy) and that the next read does not
// hand out the previous pipeline's commands again.
func TestReaderReusesNothingAcrossPipelines(t *testing.T) {
	r := newReader(&chunkReader{b: []byte(bulkCmds([]string{"INCR", "a:1"}, []string{"INCR", "a:2"})), n: 22})
	var got []string
	for {
		cmds, err := r.read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			got = append(got, string(bytes.Join(c, []byte(" "))))
		}
	}
	if strings.Join(got, ",") != "INCR a:1,INCR a:2" {
		t.Errorf("commands %q", got)
	}
}
