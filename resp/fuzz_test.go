package resp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tidwall/redcon"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/node"
)

// FuzzCommands feeds arbitrary bytes, parsed by redcon as a client's
// pipeline, to the command layer over a real node, with and without
// tokens. It checks that nothing panics and that every command gets
// exactly one well-formed reply (fewer only after QUIT).
func FuzzCommands(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n$4\r\nINCR\r\n$7\r\npages:a\r\n",
		"*3\r\n$6\r\nINCRBY\r\n$7\r\npages:a\r\n$2\r\n-5\r\n*2\r\n$3\r\nGET\r\n$7\r\npages:a\r\n",
		"*3\r\n$3\r\nSET\r\n$7\r\npages:a\r\n$19\r\n9223372036854775807\r\n*2\r\n$4\r\nINCR\r\n$7\r\npages:a\r\n*2\r\n$4\r\nINCR\r\n$7\r\npages:b\r\n",
		"*2\r\n$4\r\nAUTH\r\n$28\r\n" + tokWrite + "\r\n*3\r\n$4\r\nMGET\r\n$7\r\npages:a\r\n$7\r\nclick:b\r\n",
		"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$28\r\n" + tokAdmin + "\r\n",
		"*3\r\n$3\r\nDEL\r\n$7\r\npages:a\r\n$1\r\nb\r\n",
		"*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n*1\r\n$7\r\nCOMMAND\r\n*1\r\n$4\r\nINFO\r\n",
		"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n",
		"PING\r\nECHO \"a b\"\r\nSELECT 1\r\nQUIT\r\nPING\r\n",
		"*1\r\n$4\r\nNOPE\r\n*2\r\n$4\r\nDECR\r\n$1\r\n:\r\n",
		"*1\r\n$9223372036854775800\r\n",         // crashed redcon's parser before the guard
		"*9223372036854775807\r\n$4\r\nPING\r\n", // made it loop for ever
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	ncfg := node.DefaultConfig()
	ncfg.Name = "fuzz"
	ncfg.Store.Dir = "data"
	ncfg.Store.FS = vfs.NewMem()
	ncfg.Logger = zap.NewNop()
	n, err := node.Open(ncfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	servers := map[bool]*Server{}
	for _, tokens := range []bool{false, true} {
		cfg := Config{Node: n}
		if tokens {
			_, cfg.Tokens = tokensFile(f)
		}
		s, err := New(cfg)
		if err != nil {
			f.Fatal(err)
		}
		servers[tokens] = s
	}
	f.Fuzz(func(t *testing.T, raw []byte, tokens bool) {
		// What the listener's connections do: the guard sees the bytes
		// before redcon does.
		rd := redcon.NewReader(&guardedReader{r: bytes.NewReader(raw)})
		var cmds [][][]byte
		for len(cmds) < 64 {
			cmd, err := rd.ReadCommand()
			if err != nil {
				break
			}
			cmds = append(cmds, cmd.Args)
		}
		var out bytes.Buffer
		w := redcon.NewWriter(&out)
		quit := servers[tokens].exec(context.Background(), &session{id: 1, proto: 2}, cmds, w)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		replies, err := countReplies(out.Bytes())
		if err != nil {
			t.Fatalf("malformed replies %q: %v", out.Bytes(), err)
		}
		if replies > len(cmds) || (!quit && replies != len(cmds)) {
			t.Fatalf("%d commands, %d replies (quit %v): %q", len(cmds), replies, quit, out.Bytes())
		}
	})
}

// guardedReader passes a reader through a lengthGuard, as boundedConn does.
type guardedReader struct {
	r io.Reader
	g lengthGuard
}

func (gr *guardedReader) Read(p []byte) (int, error) {
	n, err := gr.r.Read(p)
	if gerr := gr.g.check(p[:n], DefaultMaxCommandBytes); gerr != nil {
		return 0, gerr
	}
	return n, err
}

// countReplies counts the top-level RESP2/RESP3 values in b, failing on
// anything malformed.
func countReplies(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		rest, err := skipValue(b, 0)
		if err != nil {
			return n, err
		}
		b = rest
		n++
	}
	return n, nil
}

func skipValue(b []byte, depth int) ([]byte, error) {
	if depth > 8 {
		return nil, fmt.Errorf("nested too deep")
	}
	i := bytes.Index(b, []byte("\r\n"))
	if i < 1 {
		return nil, fmt.Errorf("no line at %q", b)
	}
	line, rest := b[1:i], b[i+2:]
	if bytes.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("line with CR or LF")
	}
	switch b[0] {
	case '+', '-', '_':
		return rest, nil
	case ':':
		_, err := strconv.ParseInt(string(line), 10, 64)
		return rest, err
	case '$':
		size, err := strconv.Atoi(string(line))
		if err != nil || size < -1 {
			return nil, fmt.Errorf("bad bulk length %q", line)
		}
		if size == -1 {
			return rest, nil
		}
		if len(rest) < size+2 || string(rest[size:size+2]) != "\r\n" {
			return nil, fmt.Errorf("short bulk")
		}
		return rest[size+2:], nil
	case '*', '%':
		count, err := strconv.Atoi(string(line))
		if err != nil || count < -1 {
			return nil, fmt.Errorf("bad aggregate length %q", line)
		}
		if b[0] == '%' {
			count *= 2
		}
		for range count {
			if rest, err = skipValue(rest, depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil
	}
	return nil, fmt.Errorf("unknown type %q", b[0])
}
