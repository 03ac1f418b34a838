package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/countmesh/countmesh/client"
	"github.com/countmesh/countmesh/node"
)

// TestQueryRoutes drives series, at=, top and aggregate through HTTP.
func TestQueryRoutes(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC)
	a := newTestAPI(t, func(c *node.Config) { c.Now = func() time.Time { return now } })
	if s, b := a.json("PUT", "/v1/namespaces/an", `{"windows":["1m","1h"],"retention":{"1m":"2h"}}`); s != 200 {
		t.Fatalf("put namespace: %d %v", s, b)
	}
	for i, at := range []string{"2026-03-02T12:29:10Z", "2026-03-02T12:29:50Z", "2026-03-02T12:05:00Z", "2026-03-02T11:00:00Z"} {
		body := fmt.Sprintf(`{"by":%d,"at":%q,"labels":{"country":"c%d"}}`, i+1, at, i%2)
		if s, b := a.json("POST", "/v1/counters/an/home/incr", body); s != 200 {
			t.Fatalf("incr at %s: %d %v", at, s, b)
		}
	}
	a.json("POST", "/v1/counters/an/about/incr", `{"by":20}`)

	s, b := a.json("GET", "/v1/counters/an/home/series?from=2026-03-02T12:00:00Z&to=2026-03-02T12:30:00Z&step=10m", "")
	if s != 200 || b["step"] != "10m" || b["total"].(float64) != 6 {
		t.Fatalf("series: %d %v", s, b)
	}
	points := b["points"].([]any)
	if len(points) != 3 || points[0].(map[string]any)["delta"].(float64) != 3 || points[2].(map[string]any)["delta"].(float64) != 3 ||
		points[0].(map[string]any)["t"] != "2026-03-02T12:00:00Z" {
		t.Fatalf("series points: %v", points)
	}
	// As of 12:29:30, at the 1m resolution: the value at 12:29:00, before
	// the two increments of that minute.
	s, b = a.json("GET", "/v1/counters/an/home?at=2026-03-02T12:29:30Z", "")
	if s != 200 || b["value"].(float64) != 7 || b["resolution"] != "1m" || b["at"] != "2026-03-02T12:29:00Z" || b["window"] != nil {
		t.Fatalf("at: %d %v", s, b)
	}
	// Before the 1m retention (2h), the 1h resolution.
	s, b = a.json("GET", "/v1/counters/an/home?at=2026-03-02T10:10:00Z", "")
	if s != 200 || b["value"].(float64) != 0 || b["resolution"] != "1h" || b["at"] != "2026-03-02T10:00:00Z" {
		t.Fatalf("at before the 1m retention: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/counters/an/home?at=2026-03-02T12:00:00Z", "")
	if s != 200 || b["value"].(float64) != 4 || b["resolution"] != "1m" {
		t.Fatalf("at 12:00: %d %v", s, b)
	}
	// With a window: the change during its bucket holding at.
	s, b = a.json("GET", "/v1/counters/an/home?at=2026-03-02T12:29:30Z&window=1m", "")
	if s != 200 || b["value"].(float64) != 3 || b["window"] != "1m" || b["bucket_start"] != "2026-03-02T12:29:00Z" || b["resolution"] != nil {
		t.Fatalf("at with window 1m: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/counters/an/home?at=2026-03-02T12:29:30Z&window=1h", "")
	if s != 200 || b["value"].(float64) != 6 || b["window"] != "1h" || b["bucket_start"] != "2026-03-02T12:00:00Z" {
		t.Fatalf("at with window 1h: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/namespaces/an/top?k=1", "")
	items, _ := b["items"].([]any)
	if s != 200 || len(items) != 1 || items[0].(map[string]any)["key"] != "about" || b["exact"] != true {
		t.Fatalf("top: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/namespaces/an/top?k=5&window=1h", "")
	items, _ = b["items"].([]any)
	if s != 200 || len(items) != 2 || items[0].(map[string]any)["key"] != "about" || items[1].(map[string]any)["value"].(float64) != 6 {
		t.Fatalf("top in the current hour: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/namespaces/an/aggregate", "")
	if s != 200 || b["count"].(float64) != 2 || b["sum"].(float64) != 30 || b["max"].(float64) != 20 || b["avg"].(float64) != 15 {
		t.Fatalf("aggregate: %d %v", s, b)
	}
	s, b = a.json("GET", "/v1/namespaces/an/aggregate?group_by=country&window=1h", "")
	groups, _ := b["groups"].(map[string]any)
	if s != 200 || len(groups) != 2 || groups["c0"].(map[string]any)["sum"].(float64) != 4 || groups["c1"].(map[string]any)["sum"].(float64) != 2 {
		t.Fatalf("aggregate by country in the current hour: %d %v", s, b)
	}

	// Errors: each a 400 that changes nothing.
	bad := []string{
		"/v1/counters/an/home/series?from=2026-03-02T12:30:00Z&to=2026-03-02T12:00:00Z", // from > to
		"/v1/counters/an/home/series?from=yesterday",                                    // bad time
		"/v1/counters/an/home/series?step=7s",                                           // not a multiple of a window
		"/v1/counters/an/home/series?step=-1m",                                          // bad step
		"/v1/counters/an/home/series?stpe=1m",                                           // unknown parameter
		"/v1/counters/plain/home/series",                                                // no windows
		"/v1/counters/an/home?at=noon",                                                  // bad time
		"/v1/counters/an/home?at=2026-01-01T00:00:00Z",                                  // past retention of 1h? (1h is kept forever: see below)
		"/v1/counters/an/home?window=1h",                                                // window without at
		"/v1/counters/an/home?at=2026-03-02T12:00:00Z&window=1d",                        // window not kept
		"/v1/counters/an/home?at=2026-03-02T09:00:00Z&window=1m",                        // past the 1m retention
		"/v1/namespaces/an/top?window=1d",                                               // bad window
		"/v1/namespaces/an/top?k=0",                                                     // bad k
		"/v1/namespaces/an/top?k=ten",                                                   // bad k
		"/v1/namespaces/an/aggregate?window=2h",                                         // bad window
		"/v1/namespaces/an/aggregate?group_by=device",                                   // unknown label
		"/v1/namespaces/an/aggregate?group_by=Country",                                  // not a label name
		"/v1/counters/an/home/watch?interval=1ns",                                       // bad interval
		"/v1/namespaces/an/watch?interval=soon",                                         // bad interval
	}
	for _, path := range bad {
		s, b := a.json("GET", path, "")
		if path == "/v1/counters/an/home?at=2026-01-01T00:00:00Z" {
			// 1h has no retention: the value then is known (0).
			if s != 200 || b["value"].(float64) != 0 || b["resolution"] != "1h" {
				t.Fatalf("GET %s: %d %v", path, s, b)
			}
			continue
		}
		if s != http.StatusBadRequest || errCode(b) != "invalid_argument" {
			t.Errorf("GET %s: %d %v, want 400 invalid_argument", path, s, b)
		}
	}
	if s, b := a.json("POST", "/v1/counters/an/home/incr", `{"at":"2026-03-02T15:00:00Z"}`); s != 400 {
		t.Fatalf("incr far in the future: %d %v", s, b)
	}
	if s, b := a.json("POST", "/v1/counters/an/home/incr", `{"labels":{"a":"1","b":"1","c":"1","d":"1","e":"1","f":"1","g":"1","h":"1","i":"1"}}`); s != 400 {
		t.Fatalf("incr with 9 labels: %d %v", s, b)
	}
	if v := a.value("an", "home"); v != 10 {
		t.Fatalf("home = %d after refused requests, want 10", v)
	}
}

// TestWatchStream subscribes through the client: the counter watch starts
// with the current value and then delivers changes; the prefix watch
// delivers changes of matching keys only; a server shutdown ends the
// streams with a final event.
func TestWatchStream(t *testing.T) {
	a := newTestAPI(t, nil)
	c, err := client.New(client.Config{BaseURL: a.url})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.json("POST", "/v1/counters/likes/post-1/incr", `{"by":5}`)
	one, err := c.Watch(ctx, "likes", "post-1", client.WatchOptions{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pre, err := c.Watch(ctx, "likes", "", client.WatchOptions{Prefix: "post-", Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	next := func(ch <-chan client.Event) client.Event {
		t.Helper()
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("watch ended")
			}
			return ev
		case <-ctx.Done():
			t.Fatal("no event in time")
		}
		return client.Event{}
	}
	if ev := next(one); ev.Type != "value" || ev.Value != 5 || ev.Key != "post-1" {
		t.Fatalf("first event = %+v, want the current value 5", ev)
	}
	a.json("POST", "/v1/counters/likes/user-9/incr", "")
	a.json("POST", "/v1/counters/likes/post-1/incr", `{"by":2}`)
	if ev := next(one); ev.Value != 7 {
		t.Fatalf("after an increment: %+v", ev)
	}
	if ev := next(pre); ev.Key != "post-1" || ev.Value != 7 || ev.ID == "" {
		t.Fatalf("prefix watch: %+v", ev)
	}
}

// TestWatchDropsASlowSubscriber: a subscriber that falls more than
// MaxWatchPending counters behind gets a final "dropped" event.
func TestWatchDropsASlowSubscriber(t *testing.T) {
	a := newTestAPI(t, nil)
	resp, err := http.Get(a.url + "/v1/namespaces/pv/watch?interval=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// One change is delivered at once and starts the hour-long interval;
	// then more counters change than a subscription holds.
	a.json("POST", "/v1/counters/pv/first/incr", "")
	var ops []string
	for i := range node.MaxWatchPending + 1 {
		ops = append(ops, fmt.Sprintf(`{"ns":"pv","key":"k%06d","by":1}`, i))
		if len(ops) == node.MaxBatchOps || i == node.MaxWatchPending {
			if s, b := a.json("POST", "/v1/batch", `{"ops":[`+join(ops)+`]}`); s != 200 {
				t.Fatalf("batch: %d %v", s, b)
			}
			ops = ops[:0]
		}
	}
	done := make(chan string, 1)
	go func() {
		raw := make([]byte, 0, 4096)
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			raw = append(raw, buf[:n]...)
			if err != nil {
				done <- string(raw)
				return
			}
		}
	}()
	select {
	case raw := <-done:
		if !containsAll(raw, "event: value", "first", "event: dropped") {
			t.Fatalf("stream = %q, want the first value then a dropped event", raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow subscriber was not dropped")
	}
}

func join(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ","
		}
		out += p
	}
	return out
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		found := false
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
