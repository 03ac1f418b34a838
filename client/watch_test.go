package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// sseServer serves scripted event streams: connection i gets script[i]
// (or the last one), and then, when hold is set, stays open until the
// client goes away.
type sseServer struct {
	srv *httptest.Server
	mu  sync.Mutex // guards conns, headers
	// conns counts connections; headers holds each connection's request.
	conns   int
	headers []http.Header
	paths   []string
}

type sseScript struct {
	status int
	body   string
	hold   bool
}

func newSSEServer(t *testing.T, script []sseScript) *sseServer {
	t.Helper()
	s := &sseServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		i := min(s.conns, len(script)-1)
		s.conns++
		s.headers = append(s.headers, r.Header.Clone())
		s.paths = append(s.paths, r.URL.RequestURI())
		s.mu.Unlock()
		sc := script[i]
		if sc.status != 0 && sc.status != http.StatusOK {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(sc.status)
			_, _ = io.WriteString(w, sc.body)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, sc.body)
		w.(http.Flusher).Flush()
		if sc.hold {
			<-r.Context().Done()
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sseServer) request(t *testing.T, i int) (string, http.Header) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.paths) {
		t.Fatalf("connection %d never came (%d connections)", i, len(s.paths))
	}
	return s.paths[i], s.headers[i]
}

func (s *sseServer) client(t *testing.T) *Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.BaseURL = s.srv.URL
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// next receives one event, failing the test if none comes in time.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed, want an event")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return Event{}
}

// closed waits for ch to be closed, failing the test if it is not in time
// or if an event other than one with Err comes first.
func closed(t *testing.T, ch <-chan Event) {
	t.Helper()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Err == nil {
				t.Fatalf("unexpected event %+v, want the channel closed", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("watch channel not closed within 5s")
		}
	}
}

func valueEvent(id string, value int64) string {
	return fmt.Sprintf("id: %s\nevent: value\ndata: {\"ns\":\"n\",\"key\":\"k\",\"value\":%d,\"ts\":\"2024-05-06T07:08:09Z\"}\n\n", id, value)
}

func TestWatchCounter(t *testing.T) {
	s := newSSEServer(t, []sseScript{{
		body: ": keep-alive\n\n" + valueEvent("1", 5) +
			"event: ping\r\ndata: a\r\ndata: b\r\n\r\n" + valueEvent("2", 6),
		hold: true,
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.client(t).Watch(ctx, "n", "k", WatchOptions{Interval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	want := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if ev.Type != "value" || ev.ID != "1" || ev.NS != "n" || ev.Key != "k" || ev.Value != 5 || !ev.TS.Equal(want) {
		t.Errorf("first event = %+v", ev)
	}
	if ev := next(t, ch); ev.Type != "ping" || string(ev.Data) != "a\nb" {
		t.Errorf("second event = %+v, want a ping with data a\\nb", ev)
	}
	if ev := next(t, ch); ev.Value != 6 || ev.ID != "2" {
		t.Errorf("third event = %+v, want value 6", ev)
	}
	path, h := s.request(t, 0)
	if path != "/v1/counters/n/k/watch?interval=250ms" {
		t.Errorf("path = %s", path)
	}
	if h.Get("Accept") != "text/event-stream" {
		t.Errorf("Accept = %q", h.Get("Accept"))
	}
	cancel()
	closed(t, ch)
}

func TestWatchReconnectsWithLastEventID(t *testing.T) {
	s := newSSEServer(t, []sseScript{
		{body: "retry: 1\n\n" + valueEvent("7", 1)},
		{body: valueEvent("8", 2), hold: true},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.client(t).Watch(ctx, "n", "", WatchOptions{Prefix: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Value != 1 {
		t.Errorf("first event = %+v", ev)
	}
	if ev := next(t, ch); ev.Value != 2 {
		t.Errorf("event after reconnect = %+v", ev)
	}
	path, h := s.request(t, 1)
	if path != "/v1/namespaces/n/watch?prefix=k" {
		t.Errorf("path = %s", path)
	}
	if got := h.Get("Last-Event-ID"); got != "7" {
		t.Errorf("Last-Event-ID on reconnect = %q, want 7", got)
	}
	cancel()
	closed(t, ch)
}

func TestWatchEnds(t *testing.T) {
	t.Run("refused at once", func(t *testing.T) {
		s := newSSEServer(t, []sseScript{{status: 404, body: `{"error":{"code":"not_found","message":"no route"}}`}})
		_, err := s.client(t).Watch(context.Background(), "n", "k", WatchOptions{})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("error = %v, want ErrNotFound", err)
		}
	})
	t.Run("refused on reconnect", func(t *testing.T) {
		s := newSSEServer(t, []sseScript{
			{body: "retry: 1\n\n" + valueEvent("1", 1)},
			{status: 400, body: `{"error":{"code":"invalid_argument","message":"bad id"}}`},
		})
		ch, err := s.client(t).Watch(context.Background(), "n", "k", WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		next(t, ch)
		if ev := next(t, ch); !errors.Is(ev.Err, ErrInvalidArgument) {
			t.Errorf("last event = %+v, want Err matching ErrInvalidArgument", ev)
		}
		closed(t, ch)
	})
	t.Run("no reconnect", func(t *testing.T) {
		s := newSSEServer(t, []sseScript{{body: valueEvent("1", 1)}})
		ch, err := s.client(t).Watch(context.Background(), "n", "k", WatchOptions{NoReconnect: true})
		if err != nil {
			t.Fatal(err)
		}
		next(t, ch)
		if ev := next(t, ch); !errors.Is(ev.Err, io.EOF) {
			t.Errorf("last event = %+v, want Err wrapping io.EOF", ev)
		}
		closed(t, ch)
	})
}
