package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// IncrOptions are the optional fields of an increment. The zero value sends
// none of them.
type IncrOptions struct {
	// ID makes the increment idempotent: the server counts an id once
	// within the namespace's idempotency window, whichever node a retry
	// reaches.
	ID string
	// Consistency is how many nodes must acknowledge the write.
	Consistency Consistency
	// Labels put the increment in the series of that label set.
	Labels map[string]string
	// At is the event time, which picks the time-window buckets.
	At time.Time
}

// GetOptions are the optional parameters of a read.
type GetOptions struct {
	Consistency Consistency
	// At asks for the value as of that time (needs the namespace's
	// windows); the answer's Resolution and At say how it was resolved.
	At time.Time
	// Window, with At, asks instead for the change during that window's
	// bucket holding At (the answer's Window and BucketStart).
	Window string
}

// CounterValue is the answer of Incr, Decr, Get and Reset.
type CounterValue struct {
	NS    string `json:"ns"`
	Key   string `json:"key"`
	Value int64  `json:"value"`
	// Duplicate is true when the increment's ID was seen before and the
	// increment was not applied again.
	Duplicate bool `json:"duplicate,omitempty"`
	// UpdatedAt is the time of the last change (Get only).
	UpdatedAt Time `json:"updated_at"`
	// Resolution and At: for Get with GetOptions.At, the window the value
	// as of that time was read at, and the time rounded down to it.
	Resolution string `json:"resolution,omitempty"`
	At         Time   `json:"at"`
	// Window and BucketStart: for Get with GetOptions.At and Window, the
	// bucket whose change Value is.
	Window      string `json:"window,omitempty"`
	BucketStart Time   `json:"bucket_start"`
	// Raw is the server's answer as sent.
	Raw json.RawMessage `json:"-"`
}

// incrBody is the JSON body of incr and decr.
type incrBody struct {
	By          int64             `json:"by"`
	ID          string            `json:"id,omitempty"`
	Consistency Consistency       `json:"consistency,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	At          string            `json:"at,omitempty"`
}

// Incr adds by to the counter ns/key (a negative by decrements) and returns
// its new value. POST /v1/counters/{ns}/{key}/incr.
func (c *Client) Incr(ctx context.Context, ns, key string, by int64, opts IncrOptions) (CounterValue, error) {
	return c.incr(ctx, "incr", ns, key, by, opts)
}

// Decr subtracts by from the counter ns/key and returns its new value.
// POST /v1/counters/{ns}/{key}/decr.
func (c *Client) Decr(ctx context.Context, ns, key string, by int64, opts IncrOptions) (CounterValue, error) {
	return c.incr(ctx, "decr", ns, key, by, opts)
}

func (c *Client) incr(ctx context.Context, op, ns, key string, by int64, opts IncrOptions) (CounterValue, error) {
	var out CounterValue
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	if err := checkName("key", key); err != nil {
		return out, err
	}
	body := incrBody{By: by, ID: opts.ID, Consistency: opts.Consistency, Labels: opts.Labels}
	if !opts.At.IsZero() {
		body.At = formatTime(opts.At)
	}
	raw, err := c.call(ctx, request{method: http.MethodPost, path: CounterPath(ns, key) + "/" + op}, body, &out)
	out.Raw = raw
	return out, err
}

// Get reads the counter ns/key; a counter never written reads 0.
// GET /v1/counters/{ns}/{key}.
func (c *Client) Get(ctx context.Context, ns, key string, opts GetOptions) (CounterValue, error) {
	var out CounterValue
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	if err := checkName("key", key); err != nil {
		return out, err
	}
	q := url.Values{}
	if opts.Consistency != "" {
		q.Set("consistency", string(opts.Consistency))
	}
	if !opts.At.IsZero() {
		q.Set("at", formatTime(opts.At))
	}
	if opts.Window != "" {
		q.Set("window", opts.Window)
	}
	raw, err := c.call(ctx, request{method: http.MethodGet, path: CounterPath(ns, key), query: q}, nil, &out)
	out.Raw = raw
	return out, err
}

// Reset sets the counter ns/key to value; increments concurrent with the
// reset are kept. PUT /v1/counters/{ns}/{key}.
func (c *Client) Reset(ctx context.Context, ns, key string, value int64) (CounterValue, error) {
	var out CounterValue
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	if err := checkName("key", key); err != nil {
		return out, err
	}
	body := struct {
		Value int64 `json:"value"`
	}{value}
	raw, err := c.call(ctx, request{method: http.MethodPut, path: CounterPath(ns, key)}, body, &out)
	out.Raw = raw
	return out, err
}

// Delete deletes the counter ns/key: it reads 0 and leaves listings and
// top-K. It returns the server's answer, which may be empty.
// DELETE /v1/counters/{ns}/{key}.
func (c *Client) Delete(ctx context.Context, ns, key string) (json.RawMessage, error) {
	if err := checkName("namespace", ns); err != nil {
		return nil, err
	}
	if err := checkName("key", key); err != nil {
		return nil, err
	}
	return c.call(ctx, request{method: http.MethodDelete, path: CounterPath(ns, key)}, nil, nil)
}

// KeyValue is one counter in a listing or a top-K answer.
type KeyValue struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
}

// Page is one page of a listing.
type Page struct {
	Items []KeyValue `json:"items"`
	// NextCursor continues the listing; empty on the last page.
	NextCursor string          `json:"next_cursor"`
	Raw        json.RawMessage `json:"-"`
}

// List lists the counters of ns whose keys start with prefix, one page of at
// most limit items (0: the server's default, 100) from cursor ("" for the
// first page). GET /v1/counters/{ns}?prefix=&limit=&cursor=.
func (c *Client) List(ctx context.Context, ns, prefix, cursor string, limit int) (Page, error) {
	var out Page
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	raw, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/counters/" + url.PathEscape(ns), query: q}, nil, &out)
	out.Raw = raw
	return out, err
}
