package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WatchOptions are the parameters of Watch.
type WatchOptions struct {
	// Prefix restricts a namespace watch (empty key) to keys with this
	// prefix.
	Prefix string
	// Interval is the server-side coalescing interval (?interval=); zero is
	// the server's default, 100ms.
	Interval time.Duration
	// NoReconnect ends the watch when the stream ends, instead of
	// reconnecting with Last-Event-ID.
	NoReconnect bool
	// Buffer is the capacity of the returned channel; default 64.
	Buffer int
}

// Event is one Server-Sent Event of a watch.
type Event struct {
	// Type is the SSE event name: "value" for a counter change.
	Type string
	// ID is the SSE event id, if the server sent one.
	ID string
	// NS, Key, Value and TS are decoded from a "value" event's data
	// {"ns","key","value","ts"}.
	NS    string
	Key   string
	Value int64
	TS    Time
	// Data is the event's data as sent.
	Data json.RawMessage
	// Err is set on the last event only, when the watch ended for a reason
	// other than its context being done (the server refused to reconnect,
	// or the stream ended with NoReconnect set).
	Err error
}

// Watch subscribes to changes of the counter ns/key, or of every counter of
// ns under opts.Prefix when key is empty, and returns a channel of events.
// GET /v1/counters/{ns}/{key}/watch or GET /v1/namespaces/{ns}/watch.
//
// The first connection is made before Watch returns, so a refused watch
// (an unknown route, a bad name) is returned as an error. Afterwards a
// dropped stream is reconnected with growing back-off, sending the last
// event id seen as Last-Event-ID; an answer other than 2xx, 429 or 5xx on
// reconnect ends the watch with an Event carrying Err. The channel is closed
// when the watch ends; cancel ctx to end it. The goroutine behind it blocks
// while the channel is full, which the server's coalescing makes harmless.
func (c *Client) Watch(ctx context.Context, ns, key string, opts WatchOptions) (<-chan Event, error) {
	if err := checkName("namespace", ns); err != nil {
		return nil, err
	}
	path := namespacePath(ns) + "/watch"
	q := url.Values{}
	if key != "" {
		path = CounterPath(ns, key) + "/watch"
	} else if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.Interval > 0 {
		q.Set("interval", formatInterval(opts.Interval))
	}
	w := &watcher{c: c, r: request{method: http.MethodGet, path: path, query: q, accept: "text/event-stream"}, opts: opts}
	body, err := w.connect(ctx)
	if err != nil {
		return nil, err
	}
	buf := opts.Buffer
	if buf <= 0 {
		buf = 64
	}
	ch := make(chan Event, buf)
	go w.run(ctx, body, ch)
	return ch, nil
}

// formatInterval writes d as whole milliseconds when it is one ("250ms").
func formatInterval(d time.Duration) string {
	if d%time.Millisecond == 0 {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return d.String()
}

// watcher is the state of one Watch; only its goroutine touches it after
// Watch returns.
type watcher struct {
	c      *Client
	r      request
	opts   WatchOptions
	lastID string
	retry  time.Duration // server-suggested reconnection delay
}

// connect opens the event stream.
func (w *watcher) connect(ctx context.Context) (io.ReadCloser, error) {
	req, err := w.c.newHTTPRequest(ctx, w.r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Cache-Control", "no-cache")
	if w.lastID != "" {
		req.Header.Set("Last-Event-ID", w.lastID)
	}
	resp, err := w.c.hc.Do(req)
	if err != nil {
		return nil, w.c.transportError(http.MethodGet, w.r.path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp.Body, nil
}

// run reads events until the watch ends, then closes ch.
func (w *watcher) run(ctx context.Context, body io.ReadCloser, ch chan<- Event) {
	defer close(ch)
	backoff := 100 * time.Millisecond
	for {
		// The request carries ctx, so a read blocked in body ends when ctx
		// is done.
		gotEvent, err := w.read(ctx, body, ch)
		body.Close()
		if ctx.Err() != nil {
			return
		}
		if w.opts.NoReconnect {
			if err == nil {
				err = io.EOF
			}
			w.send(ctx, ch, Event{Err: fmt.Errorf("client: watch %s ended: %w", w.r.path, err)})
			return
		}
		if gotEvent {
			backoff = 100 * time.Millisecond
		}
		for {
			delay := backoff
			if w.retry > 0 {
				delay = w.retry
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, 5*time.Second)
			body, err = w.connect(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			var apiErr *Error
			if errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests {
				w.send(ctx, ch, Event{Err: err})
				return
			}
		}
	}
}

// send delivers ev unless ctx is done first.
func (w *watcher) send(ctx context.Context, ch chan<- Event, ev Event) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// read parses the event stream r (text/event-stream) and sends its events
// to ch. It returns at the end of the stream, with the read error if any,
// and whether any event arrived.
func (w *watcher) read(ctx context.Context, r io.Reader, ch chan<- Event) (bool, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	got := false
	var (
		evType  string
		evID    string
		data    strings.Builder
		hasData bool
	)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			return got, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if hasData {
				ev := decodeEvent(evType, evID, data.String())
				got = true
				if !w.send(ctx, ch, ev) {
					return got, ctx.Err()
				}
			}
			evType, evID, hasData = "", "", false
			data.Reset()
			continue
		}
		if line[0] == ':' {
			continue // comment, e.g. a keep-alive
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			evType = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				evID = value
				w.lastID = value
			}
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				w.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// decodeEvent builds an Event; data that is not the expected JSON is kept
// in Data only.
func decodeEvent(typ, id, data string) Event {
	if typ == "" {
		typ = "message"
	}
	ev := Event{Type: typ, ID: id, Data: json.RawMessage(data)}
	var v struct {
		NS    string `json:"ns"`
		Key   string `json:"key"`
		Value int64  `json:"value"`
		TS    Time   `json:"ts"`
	}
	if json.Unmarshal([]byte(data), &v) == nil {
		ev.NS, ev.Key, ev.Value, ev.TS = v.NS, v.Key, v.Value, v.TS
	}
	return ev
}
