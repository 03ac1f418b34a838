package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/httpapi"
	"github.com/countmesh/countmesh/internal/progress/ptytest"
	"github.com/countmesh/countmesh/node"
)

// realNode serves a node on an in-memory disk over the real API.
func realNode(t *testing.T, name string) (*node.Node, string) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Name = name
	cfg.Store.Dir = "data"
	cfg.Store.FS = vfs.NewMem()
	cfg.Logger = zaptest.NewLogger(t)
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Config{Node: n, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(func() { srv.Close(); n.Close() })
	return n, srv.URL
}

// runWith runs countctl with the given stdout and stderr.
func runWith(args []string, stdout, stderr *os.File) int {
	return runContext(context.Background(), args, stdout, stderr, func(string) string { return "" })
}

func TestExportImportCommands(t *testing.T) {
	ctx := context.Background()
	src, srcURL := realNode(t, "a")
	ops := make([]node.BatchOp, 100)
	for i := range ops {
		ops[i] = node.BatchOp{NS: "pv", Key: fmt.Sprintf("k%03d", i), By: int64(i)}
	}
	if _, err := src.Batch(ctx, ops, "", false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	create := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	read := func(f *os.File) string {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Off a terminal: the data on stdout, nothing on stderr.
	backup, errOut := create("backup.ndjson"), create("stderr")
	if code := runWith([]string{"--addr", srcURL, "export"}, backup, errOut); code != 0 {
		t.Fatalf("export: exit %d: %s", code, read(errOut))
	}
	if got := read(errOut); got != "" {
		t.Fatalf("export printed %q on a stderr that is not a terminal", got)
	}
	if lines := strings.Count(read(backup), "\n"); lines != 103 { // header, namespace, 100 counters, end
		t.Fatalf("the export has %d lines, want 103", lines)
	}
	dst, dstURL := realNode(t, "b")
	out, errOut := create("out"), create("stderr2")
	if code := runWith([]string{"--addr", dstURL, "import", backup.Name()}, out, errOut); code != 0 {
		t.Fatalf("import: exit %d: %s", code, read(errOut))
	}
	if got, want := read(out), "imported 1 namespaces, 100 counters\n"; got != want || read(errOut) != "" {
		t.Fatalf("import printed %q and %q on stderr, want %q and nothing", got, read(errOut), want)
	}
	for i := range ops {
		c, err := dst.Get(ctx, "pv", ops[i].Key, node.ReadOptions{})
		if err != nil || c.Value != ops[i].By {
			t.Fatalf("pv/%s after the import: %d, %v; want %d", ops[i].Key, c.Value, err, ops[i].By)
		}
	}

	// On a terminal: a progress bar on stderr.
	tty, drawn := ptytest.Open(t)
	backup2 := create("backup2.ndjson")
	if code := runWith([]string{"--addr", srcURL, "export", "pv"}, backup2, tty); code != 0 {
		t.Fatalf("export to a terminal's stderr: exit %d", code)
	}
	if shown := drawn(); !strings.Contains(shown, "exported 1 namespaces, 100 counters") || !strings.Contains(shown, "kB") {
		t.Fatalf("the terminal shows %q; want the export's bar and counts", shown)
	}
	tty, drawn = ptytest.Open(t)
	out = create("out2")
	if code := runWith([]string{"--addr", dstURL, "import", backup2.Name()}, out, tty); code != 0 {
		t.Fatalf("import with a terminal's stderr: exit %d", code)
	}
	if shown := drawn(); !strings.Contains(shown, "importing") || !strings.Contains(shown, "100%") {
		t.Fatalf("the terminal shows %q; want the import's bar at 100%%", shown)
	}

	// The data never goes to a terminal; a bad file names its line.
	tty, _ = ptytest.Open(t)
	if code := runWith([]string{"--addr", srcURL, "export"}, tty, create("stderr3")); code != exitUsage {
		t.Fatalf("export to a terminal: exit %d, want %d", code, exitUsage)
	}
	bad := create("bad.ndjson")
	if _, err := bad.WriteString(strings.SplitAfter(read(backup), "\n")[0] + "{\"type\":\"nonsense\"}\n"); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := runContext(ctx, []string{"--addr", dstURL, "import", bad.Name()}, &bytes.Buffer{}, &stderr, func(string) string { return "" }); code != exitRefused ||
		!strings.Contains(stderr.String(), `import line 2: unknown record type "nonsense"`) {
		t.Fatalf("import of a bad file: exit %d, %q", code, stderr.String())
	}
}
