package resp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tidwall/redcon"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/node"
)

// benchPipeline is what redis-benchmark -t incr -P 64 -r 1000000 sends at
// once: 64 INCRs of random keys of namespace "counter".
func benchPipeline(depth, round int) []byte {
	var b strings.Builder
	for i := range depth {
		key := fmt.Sprintf("counter:rand_int_%012d", (round*depth+i)*7919%1_000_000)
		fmt.Fprintf(&b, "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", len(key), key)
	}
	return []byte(b.String())
}

// loopReader hands out the same bytes for ever, one pipeline a Read.
type loopReader struct{ b []byte }

func (l *loopReader) Read(p []byte) (int, error) { return copy(p, l.b), nil }

// BenchmarkReadPipeline parses a pipeline of 64 INCRs: an op is the whole
// pipeline. redcon is the reader the listener used before its own.
func BenchmarkReadPipeline(b *testing.B) {
	in := benchPipeline(64, 0)
	b.Run("own", func(b *testing.B) {
		r := newReader(&loopReader{in})
		b.SetBytes(int64(len(in)))
		for range b.N {
			cmds, err := r.read()
			if err != nil || len(cmds) != 64 {
				b.Fatal(len(cmds), err)
			}
		}
	})
	b.Run("redcon", func(b *testing.B) {
		r := redcon.NewReader(&loopReader{in})
		b.SetBytes(int64(len(in)))
		for range b.N {
			// redcon reads through a 4 KiB bufio.Reader: a pipeline may
			// come in two reads.
			for got := 0; got < 64; {
				cmds, err := r.ReadCommands()
				if err != nil {
					b.Fatal(err)
				}
				got += len(cmds)
			}
		}
	})
}

func benchNode(b *testing.B) *node.Node {
	ncfg := node.DefaultConfig()
	ncfg.Name = "bench"
	ncfg.Store.Dir = "data"
	ncfg.Store.FS = vfs.NewMem()
	ncfg.Logger = zap.NewNop()
	n, err := node.Open(ncfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return n
}

// BenchmarkExecPipeline runs pipelines of 64 INCRs (parsed once) through
// the command layer and the node (a sync namespace on an in-memory store):
// an op is one pipeline.
func BenchmarkExecPipeline(b *testing.B) {
	n := benchNode(b)
	s, err := New(Config{Node: n})
	if err != nil {
		b.Fatal(err)
	}
	const rounds = 64
	var pipes [rounds][][][]byte
	for i := range pipes {
		r := newReader(bytes.NewReader(benchPipeline(64, i)))
		cmds, err := r.read()
		if err != nil {
			b.Fatal(err)
		}
		pipes[i] = cmds
	}
	sess := &session{id: 1, proto: 2}
	w := redcon.NewWriter(io.Discard)
	b.ResetTimer()
	for i := range b.N {
		if s.exec(context.Background(), sess, pipes[i%rounds], w); w.Flush() != nil {
			b.Fatal("flush")
		}
	}
}

// BenchmarkServerPipeline sends pipelines of 64 INCRs over a loopback
// connection to a listener and reads their replies: an op is one round trip.
// The client is a raw connection, so the allocations are the server's.
func BenchmarkServerPipeline(b *testing.B) {
	benchServer(b, 64)
}

// BenchmarkServerSingle is BenchmarkServerPipeline with one INCR a round
// trip.
func BenchmarkServerSingle(b *testing.B) {
	benchServer(b, 1)
}

func benchServer(b *testing.B, depth int) {
	n := benchNode(b)
	s, err := New(Config{Node: n})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	b.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const rounds = 64
	var pipes [rounds][]byte
	for i := range pipes {
		pipes[i] = benchPipeline(depth, i)
	}
	buf := make([]byte, 64<<10)
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Write(pipes[i%rounds]); err != nil {
			b.Fatal(err)
		}
		for lines := 0; lines < depth; {
			m, err := c.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			lines += bytes.Count(buf[:m], []byte("\n"))
		}
	}
}
