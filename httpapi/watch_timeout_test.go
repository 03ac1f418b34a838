package httpapi

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/node"
)

// A watch stream outlives the server's write timeout (countd sets one for
// every other route): each event renews the stream's own deadline.
func TestWatchOutlivesTheServerWriteTimeout(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.Name = "w"
	cfg.Store.Dir, cfg.Store.FS = "data", vfs.NewMem()
	cfg.Logger = zaptest.NewLogger(t)
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	api, err := New(Config{Node: n, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api)
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(func() { api.CloseStreams(); srv.Close() })

	resp, err := http.Get(srv.URL + "/v1/counters/ns/k/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events <- sc.Text()
			}
		}
		close(events)
	}()
	<-events // the current value, at once
	// Four times the server's write timeout later, a change still arrives.
	deadline := time.Now().Add(800 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case _, ok := <-events:
			if !ok {
				t.Fatal("the watch stream ended within the write timeout's reach")
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := n.Incr(context.Background(), "ns", "k", 7, node.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev, ok := <-events:
		if !ok || !strings.Contains(ev, `"value":7`) {
			t.Fatalf("after 800 ms with a 200 ms write timeout the stream gave %q (open %v)", ev, ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s of the change")
	}
}
