package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// TopOptions are the parameters of Top.
type TopOptions struct {
	// K is how many counters to return; 0 is the server's default (10).
	K int
	// Window restricts to the last window ("1h"); empty is all time.
	Window string
	// Prefix restricts to keys with this prefix.
	Prefix string
}

// TopResult is the answer of Top.
type TopResult struct {
	Items []KeyValue `json:"items"`
	// Exact is false when the ranking comes from a sketch (approximate
	// namespaces).
	Exact bool            `json:"exact"`
	Raw   json.RawMessage `json:"-"`
}

// Top returns the K largest counters of ns. GET /v1/namespaces/{ns}/top.
func (c *Client) Top(ctx context.Context, ns string, opts TopOptions) (TopResult, error) {
	var out TopResult
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	q := url.Values{}
	if opts.K > 0 {
		q.Set("k", strconv.Itoa(opts.K))
	}
	if opts.Window != "" {
		q.Set("window", opts.Window)
	}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	raw, err := c.call(ctx, request{method: http.MethodGet, path: namespacePath(ns) + "/top", query: q}, nil, &out)
	out.Raw = raw
	return out, err
}

// SeriesOptions are the parameters of Series. Zero values are left to the
// server.
type SeriesOptions struct {
	From, To time.Time
	// Step is the bucket granularity, e.g. "1m".
	Step string
}

// Point is one bucket of a series: the change of the counter during the
// bucket starting at T.
type Point struct {
	T     Time  `json:"t"`
	Delta int64 `json:"delta"`
}

// Series is the answer of Series.
type Series struct {
	Step   string          `json:"step"`
	Points []Point         `json:"points"`
	Total  int64           `json:"total"`
	Raw    json.RawMessage `json:"-"`
}

// Series returns the time series of the counter ns/key.
// GET /v1/counters/{ns}/{key}/series?from=&to=&step=.
func (c *Client) Series(ctx context.Context, ns, key string, opts SeriesOptions) (Series, error) {
	var out Series
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	if err := checkName("key", key); err != nil {
		return out, err
	}
	q := url.Values{}
	if !opts.From.IsZero() {
		q.Set("from", formatTime(opts.From))
	}
	if !opts.To.IsZero() {
		q.Set("to", formatTime(opts.To))
	}
	if opts.Step != "" {
		q.Set("step", opts.Step)
	}
	raw, err := c.call(ctx, request{method: http.MethodGet, path: CounterPath(ns, key) + "/series", query: q}, nil, &out)
	out.Raw = raw
	return out, err
}

// AggregateOptions are the parameters of Aggregate.
type AggregateOptions struct {
	Prefix string
	Window string
	// GroupBy splits the aggregate by the value of this label.
	GroupBy string
}

// Stats are aggregates over a set of counters.
type Stats struct {
	Count int64   `json:"count"`
	Sum   int64   `json:"sum"`
	Avg   float64 `json:"avg"`
	Min   int64   `json:"min"`
	Max   int64   `json:"max"`
}

// AggregateResult is the answer of Aggregate: the overall Stats, and Groups
// keyed by label value when GroupBy was given.
type AggregateResult struct {
	Stats
	Groups map[string]Stats
	Raw    json.RawMessage
}

// Aggregate returns count, sum, avg, min and max over the counters of ns.
// GET /v1/namespaces/{ns}/aggregate?prefix=&window=&group_by=.
//
// With GroupBy, docs/api.md gives "one such object per group" without fixing
// the shape; accepted are {"groups": {value: stats}}, {"groups": [{"group"
// (or "value", "key", "label", or the label's name): value, stats...}]} and
// {value: stats}.
func (c *Client) Aggregate(ctx context.Context, ns string, opts AggregateOptions) (AggregateResult, error) {
	var out AggregateResult
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	q := url.Values{}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.Window != "" {
		q.Set("window", opts.Window)
	}
	if opts.GroupBy != "" {
		q.Set("group_by", opts.GroupBy)
	}
	path := namespacePath(ns) + "/aggregate"
	raw, err := c.call(ctx, request{method: http.MethodGet, path: path, query: q}, nil, nil)
	if err != nil {
		return out, err
	}
	out, err = decodeAggregate(raw, opts.GroupBy)
	if err != nil {
		return out, fmt.Errorf("client: GET %s: decoding answer: %w", path, err)
	}
	out.Raw = raw
	return out, nil
}

func decodeAggregate(raw json.RawMessage, groupBy string) (AggregateResult, error) {
	var out AggregateResult
	if len(bytes.TrimSpace(raw)) == 0 {
		return out, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return out, err
	}
	_, hasCount := obj["count"]
	if hasCount {
		if err := json.Unmarshal(raw, &out.Stats); err != nil {
			return out, err
		}
	}
	groups, hasGroups := obj["groups"]
	switch {
	case hasGroups:
		g, err := decodeGroups(groups, groupBy)
		if err != nil {
			return out, err
		}
		out.Groups = g
	case !hasCount && groupBy != "":
		g, err := decodeGroups(raw, groupBy)
		if err != nil {
			return out, err
		}
		out.Groups = g
	}
	return out, nil
}

func decodeGroups(raw json.RawMessage, groupBy string) (map[string]Stats, error) {
	raw = bytes.TrimSpace(raw)
	out := map[string]Stats{}
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return out, nil
	}
	if raw[0] == '{' {
		var m map[string]Stats
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		return m, nil
	}
	var elems []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, err
	}
	for _, e := range elems {
		var name string
		for _, f := range []string{"group", "value", "key", "label", groupBy} {
			if v, ok := e[f]; ok && f != "" {
				if json.Unmarshal(v, &name) == nil {
					break
				}
				name = string(v)
				break
			}
		}
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		var s Stats
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		out[name] = s
	}
	return out, nil
}
