package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/countmesh/countmesh/client"
	"github.com/countmesh/countmesh/node"
)

func clientOf(t *testing.T, a *testAPI, token string) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.BaseURL = a.url
	cfg.Token = token
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exportBody exports through the API and drops the header line (it names
// the node and the time).
func exportBody(t *testing.T, c *client.Client) ([]byte, client.ExportSummary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := c.Export(context.Background(), "", &buf)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	_, rest, _ := bytes.Cut(buf.Bytes(), []byte("\n"))
	return rest, sum
}

func TestExportImportThroughTheAPI(t *testing.T) {
	const keys = 10_000
	ctx := context.Background()
	src := newTestAPI(t, nil)
	ops := make([]node.BatchOp, 0, keys)
	for i := range keys {
		ops = append(ops, node.BatchOp{NS: "pv", Key: fmt.Sprintf("k%05d", i), By: int64(i + 1)})
	}
	if _, err := src.node.Batch(ctx, ops, "", false); err != nil {
		t.Fatal(err)
	}
	if s, b := src.json("PUT", "/v1/namespaces/stock", `{"type":"exact","min":0}`); s != 200 {
		t.Fatalf("put namespace: %d %v", s, b)
	}
	if s, b := src.json("POST", "/v1/counters/stock/widget/incr", `{"by":3,"id":"r1"}`); s != 200 {
		t.Fatalf("incr: %d %v", s, b)
	}
	var file bytes.Buffer
	sum, err := clientOf(t, src, "").Export(ctx, "", &file)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Namespaces != 2 || sum.Counters != keys+2 { // + the id record
		t.Fatalf("export summary %+v, want 2 namespaces and %d counters", sum, keys+2)
	}

	dst := newTestAPI(t, nil)
	dc := clientOf(t, dst, "")
	isum, err := dc.Import(ctx, bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if isum.Namespaces != sum.Namespaces || isum.Counters != sum.Counters {
		t.Fatalf("import summary %+v, export summary %+v", isum, sum)
	}
	for i := range keys {
		k := fmt.Sprintf("k%05d", i)
		if got := dst.value("pv", k); got != int64(i+1) {
			t.Fatalf("pv/%s = %d after the import, want %d", k, got, i+1)
		}
	}
	once, _ := exportBody(t, dc)
	srcBody, _ := exportBody(t, clientOf(t, src, ""))
	if !bytes.Equal(once, srcBody) {
		t.Fatal("the destination's export differs from the source's")
	}
	if _, err := dc.Import(ctx, bytes.NewReader(file.Bytes())); err != nil {
		t.Fatal(err)
	}
	if twice, _ := exportBody(t, dc); !bytes.Equal(once, twice) {
		t.Fatal("importing the same file twice changed the node")
	}
	if s, b := dst.json("POST", "/v1/counters/stock/widget/incr", `{"by":3,"id":"r1"}`); s != 200 || b["duplicate"] != true {
		t.Fatalf("a retry of an imported id: %d %v, want a duplicate", s, b)
	}
}

// TestImportBadLineAnswersAtOnce sends a bad line and keeps the body open:
// the answer names the line and arrives without waiting for the rest.
func TestImportBadLineAnswersAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := newTestAPI(t, nil)
	if s, b := src.json("POST", "/v1/counters/pv/a/incr", `{"by":2}`); s != 200 {
		t.Fatalf("incr: %d %v", s, b)
	}
	var file bytes.Buffer
	if _, err := clientOf(t, src, "").Export(ctx, "", &file); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(file.String(), "\n")
	dst := newTestAPI(t, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		// header, namespace, counter a, then a counter whose slots
		// repeat a node; then the body stays open.
		io.WriteString(pw, lines[0]+lines[1]+lines[2])
		io.WriteString(pw, `{"type":"counter","ns":"pv","key":"b","slots":[{"node":"7","p":1,"n":0},{"node":"7","p":2,"n":0}]}`+"\n")
		io.WriteString(pw, strings.Repeat(lines[2], 1000))
	}()
	_, err := clientOf(t, dst, "").Import(ctx, pr)
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 400 ||
		!strings.Contains(apiErr.Message, "import line 4") || !strings.Contains(apiErr.Message, "hold node 7 twice") ||
		!strings.Contains(apiErr.Message, "1 namespace configs and 1 counters before it were applied") {
		t.Fatalf("import with a bad line 4: %v", err)
	}
	if got := dst.value("pv", "a"); got != 2 {
		t.Fatalf("the counter before the bad line reads %d, want 2", got)
	}
	if got := dst.value("pv", "b"); got != 0 {
		t.Fatalf("the bad line's counter reads %d, want 0", got)
	}
}

func TestExportImportAccess(t *testing.T) {
	ctx := context.Background()
	a, _, _, _ := newAuthAPI(t, nil)
	for _, tok := range []string{tokRead, tokPages} {
		if _, err := clientOf(t, a, tok).Export(ctx, "", io.Discard); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("export with a token below admin: %v, want permission denied", err)
		}
		if _, err := clientOf(t, a, tok).Import(ctx, strings.NewReader("{}\n")); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("import with a token below admin: %v, want permission denied", err)
		}
	}
	admin := clientOf(t, a, tokAdmin)
	var file bytes.Buffer
	if _, err := admin.Export(ctx, "", &file); err != nil {
		t.Fatalf("export with the admin token: %v", err)
	}
	if _, err := admin.Import(ctx, &file); err != nil {
		t.Fatalf("import with the admin token: %v", err)
	}
	if _, err := admin.Export(ctx, "nosuch", io.Discard); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("export of an unknown namespace: %v, want not found", err)
	}
	if _, err := admin.Export(ctx, "Bad Name", io.Discard); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("export of a bad namespace name: %v, want invalid argument", err)
	}
	if s, b := a.as(tokAdmin).do("POST", "/v1/import", "application/msgpack", []byte{0x81, 0xa1}); s != 415 {
		t.Fatalf("import of a msgpack body: %d %v, want 415", s, b)
	}
}

// slowLines hands out one line per read, pausing before each: a client
// whose upload lasts longer than the server's timeouts.
type slowLines struct {
	lines []string
	pause time.Duration
}

func (s *slowLines) Read(p []byte) (int, error) {
	if len(s.lines) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause) // the slow client being simulated, not a wait for a condition
	n := copy(p, s.lines[0])
	s.lines[0] = s.lines[0][n:]
	if s.lines[0] == "" {
		s.lines = s.lines[1:]
	}
	return n, nil
}

// TestImportOutlastsServerTimeouts imports through a server whose read and
// write timeouts are shorter than the upload: the import sets its own
// deadlines (as countd's 30 s timeouts would otherwise cut a long restore).
func TestImportOutlastsServerTimeouts(t *testing.T) {
	ctx := context.Background()
	src := newTestAPI(t, nil)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if s, b := src.json("POST", "/v1/counters/pv/"+k+"/incr", `{"by":4}`); s != 200 {
			t.Fatalf("incr: %d %v", s, b)
		}
	}
	var file bytes.Buffer
	if _, err := clientOf(t, src, "").Export(ctx, "", &file); err != nil {
		t.Fatal(err)
	}
	dst := newTestAPI(t, nil)
	srv := httptest.NewUnstartedServer(dst.srv)
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	c := clientOf(t, &testAPI{t: t, url: srv.URL}, "")
	body := &slowLines{lines: strings.SplitAfter(file.String(), "\n"), pause: 40 * time.Millisecond}
	sum, err := c.Import(ctx, body)
	if err != nil || sum.Counters != 5 {
		t.Fatalf("a slow import through a server with 100 ms timeouts: %+v, %v", sum, err)
	}
}
