package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/node"
)

// Watch streams (Server-Sent Events).
const (
	defaultWatchInterval = 100 * time.Millisecond
	minWatchInterval     = 10 * time.Millisecond
	maxWatchInterval     = time.Hour
	// watchWriteTimeout drops a client that does not take an event within
	// it, so that a stalled reader costs the node nothing but the socket.
	watchWriteTimeout = 5 * time.Second
	watchHeartbeat    = 15 * time.Second
	// watchCatchUp bounds the counters sent to a reconnecting prefix
	// watcher.
	watchCatchUp = 1000
)

type watchEvent struct {
	NS    string    `json:"ns"`
	Key   string    `json:"key"`
	Value int64     `json:"value"`
	TS    time.Time `json:"ts"`
}

func (s *Server) watchCounter(w http.ResponseWriter, r *http.Request) {
	ns, key, err := nsKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := knownParams(r, "interval"); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.serveWatch(w, r, ns, key, "")
}

func (s *Server) watchNamespace(w http.ResponseWriter, r *http.Request) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := knownParams(r, "interval", "prefix"); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.serveWatch(w, r, ns, "", r.URL.Query().Get("prefix"))
}

// serveWatch streams the changes of ns/key (or of ns under prefix) as
// Server-Sent Events, at most one per counter per interval. A counter watch
// starts with the counter's current value; a prefix watch reconnecting with
// Last-Event-ID (the event ids are unix milliseconds) starts with the
// counters changed since that id. A subscriber too slow to keep up gets a
// final "dropped" event (or, when it does not read at all, its connection
// closed) and never slows the node.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, ns, key, prefix string) {
	interval := defaultWatchInterval
	if v := r.URL.Query().Get("interval"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minWatchInterval || d > maxWatchInterval {
			s.writeError(w, r, badRequest(fmt.Sprintf("interval must be a duration from %s to %s such as 100ms or 1s, got %q", minWatchInterval, maxWatchInterval, v)))
			return
		}
		interval = d
	}
	since := time.Time{}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		ms, err := strconv.ParseInt(id, 10, 64)
		if err == nil && ms > 0 {
			since = time.UnixMilli(ms)
		}
	}
	if n := s.watchers.Add(1); n > s.maxWatchers {
		s.watchers.Add(-1)
		s.writeError(w, r, &apiError{http.StatusTooManyRequests, codeOverloaded,
			fmt.Sprintf("this node already serves its limit of %d watch streams; retry later or watch from another node (a namespace watch with ?prefix= covers many counters in one stream)", s.maxWatchers)})
		return
	}
	defer s.watchers.Add(-1)
	sub, err := s.node.Subscribe(ns, key, prefix)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer sub.Close()
	ctx := r.Context()

	// What the stream starts with, read after subscribing so that no change
	// falls between the two.
	var initial []node.Counter
	switch {
	case key != "":
		c, err := s.node.Get(ctx, ns, key, node.ReadOptions{})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		initial = []node.Counter{c}
	case !since.IsZero():
		if initial, err = s.node.ChangedSince(ctx, ns, prefix, since, watchCatchUp); err != nil {
			s.writeError(w, r, err)
			return
		}
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(format string, args ...any) error {
		_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	send := func(cs []node.Counter) error {
		now := time.Now()
		for _, c := range cs {
			ts := c.UpdatedAt
			if ts.IsZero() {
				ts = now
			}
			data, _ := json.Marshal(watchEvent{NS: ns, Key: c.Key, Value: c.Value, TS: ts.UTC()})
			_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
			if _, err := fmt.Fprintf(w, "id: %d\nevent: value\ndata: %s\n\n", now.UnixMilli(), data); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	if err := write(": watching %s\n\n", ns); err != nil {
		return
	}
	if err := send(initial); err != nil {
		return
	}
	heartbeat := time.NewTicker(watchHeartbeat)
	defer heartbeat.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			_ = write("event: closed\ndata: {\"reason\":\"the node is shutting down\"}\n\n")
			return
		case <-heartbeat.C:
			if err := write(": ping\n\n"); err != nil {
				return
			}
		case <-sub.Ready():
			if wait := time.Until(last.Add(interval)); wait > 0 {
				t := time.NewTimer(wait)
			waiting:
				for {
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-sub.Ready():
						if sub.Overflowed() {
							t.Stop()
							break waiting // drop it now, not an interval later
						}
					case <-t.C:
						break waiting
					}
				}
			}
			last = time.Now()
			keys, overflow := sub.Take()
			if overflow {
				s.log.Info("dropping a watch that fell behind", zap.String("ns", ns), zap.String("key", key), zap.String("prefix", prefix))
				_ = write("event: dropped\ndata: {\"reason\":\"more than %d counters changed faster than this client read them; reconnect with Last-Event-ID\"}\n\n", node.MaxWatchPending)
				return
			}
			slices.Sort(keys)
			cs, err := sub.Current(ctx, keys)
			if err != nil {
				_ = write("event: error\ndata: {\"reason\":%q}\n\n", err.Error())
				return
			}
			if err := send(cs); err != nil {
				return
			}
		}
	}
}
