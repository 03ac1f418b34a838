package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// exportOf returns n's export of ns ("" for every namespace).
func exportOf(t testing.TB, n *Node, ns string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := n.Export(context.Background(), ExportOptions{NS: ns}, &buf); err != nil {
		t.Fatalf("export: %v", err)
	}
	return buf.Bytes()
}

// body drops an export's header line (it names the node and the time), so
// that two nodes' exports of the same state compare equal.
func body(t testing.TB, export []byte) []byte {
	t.Helper()
	_, rest, ok := bytes.Cut(export, []byte("\n"))
	if !ok || !bytes.HasPrefix(export, []byte(`{"type":"header"`)) {
		t.Fatalf("export does not start with a header line: %.200s", export)
	}
	return rest
}

func mustImport(t testing.TB, n *Node, data []byte) ExportStats {
	t.Helper()
	st, err := n.Import(context.Background(), bytes.NewReader(data), ImportOptions{})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return st
}

// fillExportSource gives n counters of every kind an export holds: plain
// counters, a reset one, a deleted one, labels (series), windows (buckets),
// and an exact namespace with a bound and an idempotency id.
func fillExportSource(t *testing.T, n *Node, keys int) {
	t.Helper()
	ctx := context.Background()
	putWindows(t, n, "win", []string{"1m", "1h"}, map[string]string{"1m": "48h", "1h": "0"})
	putExactMin0(t, n, "stock")
	ops := make([]BatchOp, 0, MaxBatchOps)
	for i := range keys {
		ops = append(ops, BatchOp{NS: "pv", Key: fmt.Sprintf("page/%07d", i), By: int64(i%7 - 2)})
		if len(ops) == cap(ops) || i == keys-1 {
			if _, err := n.Batch(ctx, ops, "", false); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	if _, err := n.Reset(ctx, "pv", "page/0000001", 40); err != nil {
		t.Fatal(err)
	}
	if err := n.Delete(ctx, "pv", "page/0000002"); err != nil {
		t.Fatal(err)
	}
	for _, l := range []map[string]string{{"country": "fr"}, {"country": "de"}, nil} {
		if _, err := n.Incr(ctx, "win", "signup", 3, WriteOptions{Labels: l}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Incr(ctx, "stock", "widget", 5, WriteOptions{ID: "restock-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Incr(ctx, "stock", "widget", -2, WriteOptions{ID: "sale-1"}); err != nil {
		t.Fatal(err)
	}
}

// sameValues checks that every counter of the source reads the same on dst.
func sameValues(t *testing.T, src, dst *Node, keys int) {
	t.Helper()
	for i := range keys {
		k := fmt.Sprintf("page/%07d", i)
		if a, b := mustGet(t, src, "pv", k), mustGet(t, dst, "pv", k); a != b {
			t.Fatalf("pv/%s: %d on the source, %d after the import", k, a, b)
		}
	}
	for _, c := range []struct{ ns, key string }{{"win", "signup"}, {"stock", "widget"}} {
		if a, b := mustGet(t, src, c.ns, c.key), mustGet(t, dst, c.ns, c.key); a != b {
			t.Fatalf("%s/%s: %d on the source, %d after the import", c.ns, c.key, a, b)
		}
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	const keys = 10_000
	src := openNamed(t, "n1", vfs.NewMem())
	fillExportSource(t, src, keys)
	exp := exportOf(t, src, "")

	dst := openNamed(t, "n2", vfs.NewMem())
	st := mustImport(t, dst, exp)
	if st.Namespaces != 3 || st.Counters < keys {
		t.Fatalf("import applied %d namespaces and %d counters, want 3 and at least %d", st.Namespaces, st.Counters, keys)
	}
	sameValues(t, src, dst, keys)
	if v := mustGet(t, dst, "pv", "page/0000001"); v != 40 {
		t.Fatalf("the reset counter reads %d, want 40", v)
	}
	page, err := dst.List(context.Background(), "pv", "page/0000002", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 0 {
		t.Fatalf("the deleted counter is listed after the import: %v", page.Items)
	}
	ctx := context.Background()
	agg, err := dst.Aggregate(ctx, "win", "signup", "", "country")
	if err != nil {
		t.Fatal(err)
	}
	if len(agg.Groups) != 2 || agg.Groups["fr"].Sum != 3 || agg.Groups["de"].Sum != 3 {
		t.Fatalf("label series after the import: %+v, want fr and de at 3", agg.Groups)
	}
	series, err := dst.Series(ctx, "win", "signup", time.Now().Add(-time.Hour), time.Now().Add(time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if series.Total != 9 {
		t.Fatalf("the windows' buckets total %d after the import, want 9", series.Total)
	}
	ns, err := dst.GetNamespace("stock")
	if err != nil || ns.Config.Type != TypeExact || ns.Config.Min == nil || *ns.Config.Min != 0 {
		t.Fatalf("exact namespace after the import: %+v, %v", ns, err)
	}
	// The destination now holds exactly the source's state.
	if a, b := body(t, exp), body(t, exportOf(t, dst, "")); !bytes.Equal(a, b) {
		t.Fatalf("the destination's export differs from the source's (%d and %d bytes)", len(a), len(b))
	}
}

func TestImportTwiceChangesNothing(t *testing.T) {
	src := openNamed(t, "n1", vfs.NewMem())
	fillExportSource(t, src, 1000)
	exp := exportOf(t, src, "")
	dst := openNamed(t, "n2", vfs.NewMem())
	mustImport(t, dst, exp)
	once := body(t, exportOf(t, dst, ""))
	mustImport(t, dst, exp)
	if twice := body(t, exportOf(t, dst, "")); !bytes.Equal(once, twice) {
		t.Fatalf("a second import changed the node's export (%d bytes, then %d)", len(once), len(twice))
	}
	// The source itself takes its own export back unchanged.
	before := body(t, exp)
	mustImport(t, src, exp)
	if after := body(t, exportOf(t, src, "")); !bytes.Equal(before, after) {
		t.Fatal("importing a node's own export changed it")
	}
}

func TestImportDoesNotRollBack(t *testing.T) {
	ctx := context.Background()
	src := openNamed(t, "n1", vfs.NewMem())
	fillExportSource(t, src, 100)
	old := exportOf(t, src, "")
	// Newer state: more increments, a reset and a delete after the export.
	if _, err := src.Incr(ctx, "pv", "page/0000010", 1000, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Reset(ctx, "pv", "page/0000011", -7); err != nil {
		t.Fatal(err)
	}
	if err := src.Delete(ctx, "pv", "page/0000012"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.PutNamespace(ctx, "pv", NamespacePatch{TTL: ptr("90d")}); err != nil {
		t.Fatal(err)
	}
	newer := exportOf(t, src, "")
	for _, n := range []*Node{src, openNamed(t, "n2", vfs.NewMem())} {
		mustImport(t, n, newer)
		want := body(t, exportOf(t, n, ""))
		mustImport(t, n, old)
		if got := body(t, exportOf(t, n, "")); !bytes.Equal(want, got) {
			t.Fatalf("%s: importing the older export changed the newer state", n.Name())
		}
		for key, v := range map[string]int64{"page/0000010": 1000 + 10%7 - 2, "page/0000011": -7, "page/0000012": 0} {
			if got := mustGet(t, n, "pv", key); got != v {
				t.Fatalf("%s: pv/%s = %d after importing the older export, want %d", n.Name(), key, got, v)
			}
		}
		if ns, _ := n.GetNamespace("pv"); ns.Config.TTL != "90d" {
			t.Fatalf("%s: the older config won: ttl %q", n.Name(), ns.Config.TTL)
		}
	}
}

// TestImportRestoresExactNamespace restores a node's own backup after it
// lost its disk: the bound, the rights and the idempotency ids come back.
func TestImportRestoresExactNamespace(t *testing.T) {
	ctx := context.Background()
	src := openNamed(t, "a", vfs.NewMem())
	putExactMin0(t, src, "stock")
	if _, err := src.Incr(ctx, "stock", "widget", 5, WriteOptions{ID: "restock-1"}); err != nil {
		t.Fatal(err)
	}
	exp := exportOf(t, src, "stock")

	restored := openNamed(t, "a", vfs.NewMem()) // the same name on an empty disk
	mustImport(t, restored, exp)
	if v := mustGet(t, restored, "stock", "widget"); v != 5 {
		t.Fatalf("restored value %d, want 5", v)
	}
	res, err := restored.Incr(ctx, "stock", "widget", 5, WriteOptions{ID: "restock-1"})
	if err != nil || !res.Duplicate || res.Value != 5 {
		t.Fatalf("a retry of an id applied before the backup: %+v, %v; want a duplicate at 5", res, err)
	}
	if _, err := restored.Incr(ctx, "stock", "widget", -6, WriteOptions{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("decrement past the bound after the restore: %v, want ErrConflict", err)
	}
	if res, err := restored.Incr(ctx, "stock", "widget", -5, WriteOptions{}); err != nil || res.Value != 0 {
		t.Fatalf("decrement to the bound after the restore: %+v, %v", res, err)
	}
	// A node of another name knows the ids too.
	other := openNamed(t, "b", vfs.NewMem())
	mustImport(t, other, exp)
	if res, err := other.Incr(ctx, "stock", "widget", 5, WriteOptions{ID: "restock-1"}); err != nil || !res.Duplicate {
		t.Fatalf("a retry at another node after its import: %+v, %v; want a duplicate", res, err)
	}
}

func TestExportRefusedUntilReady(t *testing.T) {
	cfg := testConfig(t, vfs.NewMem())
	cfg.StartUnready = true
	n := openTest(t, cfg)
	var buf bytes.Buffer
	if _, err := n.Export(context.Background(), ExportOptions{}, &buf); !errors.Is(err, ErrUnavailable) || buf.Len() != 0 {
		t.Fatalf("export from a node catching up: %v, %d bytes written; want ErrUnavailable and nothing", err, buf.Len())
	}
	n.MarkReady()
	if _, err := n.Export(context.Background(), ExportOptions{}, &buf); err != nil {
		t.Fatalf("export once ready: %v", err)
	}
}

func TestImportRefusesBadLines(t *testing.T) {
	src := openNamed(t, "n1", vfs.NewMem())
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if _, err := src.Incr(ctx, "pv", k, 2, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(exportOf(t, src, "pv")), "\n"), "\n")
	if len(lines) != 5 { // header, namespace, a, b, end
		t.Fatalf("export of 2 counters has %d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	future := time.Now().Add(time.Hour)
	cases := []struct {
		name  string
		lines []string
		want  string // in the error
		a, b  int64  // the values of counters a and b after it
	}{
		{"unsorted slots", []string{lines[0], lines[1], lines[2],
			`{"type":"counter","ns":"pv","key":"b","slots":[{"node":"9","p":1,"n":0},{"node":"3","p":1,"n":0}]}`, lines[4]},
			"line 4: pv/\"b\": crdt: invalid state: slots not sorted by node", 2, 0},
		{"bad json", []string{lines[0], lines[1], `{"type":"counter",`, lines[3], lines[4]}, "line 3: malformed JSON", 0, 0},
		{"unknown field", []string{lines[0], `{"type":"namespace","namespace":"pv","colour":"red"}`}, `line 2: malformed JSON: json: unknown field "colour"`, 0, 0},
		{"no header", lines[1:], "line 1: the first line must be the header", 0, 0},
		{"cut short", lines[:4], "line 4: the stream ends without its end record", 2, 2},
		{"counts differ", []string{lines[0], lines[1], lines[2], lines[4]}, "line 4: the end record counts 1 namespace configs and 2 counters", 2, 0},
		{"config from the future", []string{lines[0],
			fmt.Sprintf(`{"type":"namespace","namespace":"pv","config":{"type":"eventual"},"hlc":%d}`, uint64(future.UnixNano())<<16)},
			"line 2: namespace \"pv\"", 0, 0},
		{"id applied in the future", []string{lines[0], lines[1], lines[2],
			fmt.Sprintf(`{"type":"counter","ns":"pv","kind":"id","raw_key":"BHgAYg==","slots":[{"node":"1048585","p":3,"n":%d}]}`, future.Unix()<<1)},
			"line 4: pv/\"\\x04x\\x00b\": id record slot of node 1048585 was applied at", 2, 0},
		{"bad key", []string{lines[0], lines[1], `{"type":"counter","ns":"pv","key":"a\u0001b","slots":[]}`}, "line 3: pv: ", 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := openNamed(t, "n2", vfs.NewMem())
			st, err := dst.Import(ctx, strings.NewReader(strings.Join(tc.lines, "\n")+"\n"), ImportOptions{})
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import: %v\nwant ErrInvalidArgument containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%d counters before it were applied", st.Counters)) {
				t.Fatalf("the error does not say what was applied (%+v): %v", st, err)
			}
			if a, b := mustGet(t, dst, "pv", "a"), mustGet(t, dst, "pv", "b"); a != tc.a || b != tc.b {
				t.Fatalf("counters a and b read %d and %d after the import, want %d and %d", a, b, tc.a, tc.b)
			}
		})
	}
}

// TestLargeExportImportMillion is the round trip of 1,000,000 counters
// through files: export from one node, import into an empty one, the same
// value for every counter, and the same export. Set
// COUNTMESH_EXPORT_KEYS for another size.
func TestLargeExportImportMillion(t *testing.T) {
	keys := 1_000_000
	if v := os.Getenv("COUNTMESH_EXPORT_KEYS"); v != "" {
		fmt.Sscan(v, &keys)
	}
	ctx := context.Background()
	open := func(name string) *Node {
		cfg := testConfig(t, vfs.Default)
		cfg.Name = name
		cfg.Store.Dir = filepath.Join(t.TempDir(), name)
		cfg.Logger = nil
		return openTest(t, cfg)
	}
	src := open("n1")
	if _, err := src.PutNamespace(ctx, "pv", NamespacePatch{Durability: ptr(DurabilityAsync)}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ops := make([]BatchOp, 0, MaxBatchOps)
	for i := range keys {
		ops = append(ops, BatchOp{NS: "pv", Key: fmt.Sprintf("page/%07d", i), By: int64(i%1000 + 1)})
		if len(ops) == cap(ops) || i == keys-1 {
			if _, err := src.Batch(ctx, ops, "", false); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	t.Logf("filled %d counters in %v", keys, time.Since(start))

	file := filepath.Join(t.TempDir(), "export.ndjson")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	st, err := src.Export(ctx, ExportOptions{}, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(file)
	t.Logf("exported %d counters (%d MB) in %v", st.Counters, fi.Size()>>20, time.Since(start))
	if st.Counters != int64(keys) {
		t.Fatalf("exported %d counters, want %d", st.Counters, keys)
	}

	dst := open("n2")
	f, err = os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start = time.Now()
	ist, err := dst.Import(ctx, bufio.NewReaderSize(f, 1<<20), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("imported %d counters in %v", ist.Counters, time.Since(start))
	if ist.Counters != int64(keys) {
		t.Fatalf("imported %d counters, want %d", ist.Counters, keys)
	}
	start = time.Now()
	for i := range keys {
		k := fmt.Sprintf("page/%07d", i)
		if got, want := mustGet(t, dst, "pv", k), int64(i%1000+1); got != want {
			t.Fatalf("pv/%s = %d after the import, want %d", k, got, want)
		}
	}
	t.Logf("read back %d counters in %v", keys, time.Since(start))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	exp, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body(t, exp), body(t, exportOf(t, dst, ""))) {
		t.Fatal("the destination's export differs from the source's")
	}
}
