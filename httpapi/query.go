package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/countmesh/countmesh/node"
)

// knownParams refuses query parameters a route does not take, so that a
// typo (?stpe=1h) is an error rather than a silently different answer.
func knownParams(r *http.Request, names ...string) error {
	for p := range r.URL.Query() {
		ok := false
		for _, n := range names {
			if p == n {
				ok = true
				break
			}
		}
		if !ok {
			return badRequest(fmt.Sprintf("unknown query parameter %q; this route takes %v", p, names))
		}
	}
	return nil
}

// parseStep parses a series step: a Go duration ("90s", "1h") or days ("1d").
func parseStep(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := node.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badRequest(fmt.Sprintf("step must be a positive duration such as 1m, 1h or 1d, got %q", s))
	}
	return d, nil
}

// formatStep writes a step the way a user would: 1d, 1h, 5m, 10s.
func formatStep(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
}

type seriesPoint struct {
	T     time.Time `json:"t"`
	Delta int64     `json:"delta"`
}

type seriesAnswer struct {
	NS     string        `json:"ns"`
	Key    string        `json:"key"`
	Step   string        `json:"step"`
	Window string        `json:"window"`
	Points []seriesPoint `json:"points"`
	Total  int64         `json:"total"`
}

func (s *Server) getSeries(w http.ResponseWriter, r *http.Request) {
	ns, key, err := nsKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := knownParams(r, "from", "to", "step"); err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	from, err := parseTime("from", q.Get("from"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	to, err := parseTime("to", q.Get("to"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	step, err := parseStep(q.Get("step"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.node.Series(r.Context(), ns, key, from, to, step)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ans := seriesAnswer{NS: ns, Key: key, Step: formatStep(res.Step), Window: res.Window, Points: make([]seriesPoint, len(res.Points)), Total: res.Total}
	for i, p := range res.Points {
		ans.Points[i] = seriesPoint{T: p.T, Delta: p.Delta}
	}
	writeJSON(w, http.StatusOK, ans)
}

type topAnswer struct {
	Items       []listItem `json:"items"`
	Exact       bool       `json:"exact"`
	Window      string     `json:"window,omitempty"`
	BucketStart *time.Time `json:"bucket_start,omitempty"`
}

func (s *Server) getTop(w http.ResponseWriter, r *http.Request) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := knownParams(r, "k", "window", "prefix"); err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	k := 10
	if v := q.Get("k"); v != "" {
		k, err = strconv.Atoi(v)
		if err != nil || k < 1 || k > node.MaxTopK {
			s.writeError(w, r, badRequest(fmt.Sprintf("k must be a whole number from 1 to %d, got %q", node.MaxTopK, v)))
			return
		}
	}
	res, err := s.node.Top(r.Context(), ns, k, q.Get("window"), q.Get("prefix"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ans := topAnswer{Items: make([]listItem, len(res.Items)), Exact: res.Exact, Window: res.Window}
	for i, c := range res.Items {
		ans.Items[i] = listItem{Key: c.Key, Value: c.Value}
	}
	if !res.BucketStart.IsZero() {
		t := res.BucketStart
		ans.BucketStart = &t
	}
	writeJSON(w, http.StatusOK, ans)
}

type statsAnswer struct {
	Count int64   `json:"count"`
	Sum   int64   `json:"sum"`
	Avg   float64 `json:"avg"`
	Min   int64   `json:"min"`
	Max   int64   `json:"max"`
}

type aggregateAnswer struct {
	statsAnswer
	Window      string                 `json:"window,omitempty"`
	BucketStart *time.Time             `json:"bucket_start,omitempty"`
	GroupBy     string                 `json:"group_by,omitempty"`
	Groups      map[string]statsAnswer `json:"groups,omitempty"`
}

func stats(s node.Stats) statsAnswer {
	return statsAnswer{Count: s.Count, Sum: s.Sum, Avg: s.Avg, Min: s.Min, Max: s.Max}
}

func (s *Server) getAggregate(w http.ResponseWriter, r *http.Request) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := knownParams(r, "prefix", "window", "group_by"); err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	res, err := s.node.Aggregate(r.Context(), ns, q.Get("prefix"), q.Get("window"), q.Get("group_by"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ans := aggregateAnswer{statsAnswer: stats(res.Stats), Window: res.Window}
	if res.Window != "" {
		t := time.Unix(res.BucketStart, 0).UTC()
		ans.BucketStart = &t
	}
	if res.Groups != nil {
		ans.GroupBy = q.Get("group_by")
		ans.Groups = make(map[string]statsAnswer, len(res.Groups))
		for v, st := range res.Groups {
			ans.Groups[v] = stats(st)
		}
	}
	writeJSON(w, http.StatusOK, ans)
}
