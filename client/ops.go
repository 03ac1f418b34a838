package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// RateLimitResult is the answer of RateLimit.
type RateLimitResult struct {
	Allowed   bool  `json:"allowed"`
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	// ResetMS is how many milliseconds until the window frees capacity.
	ResetMS int64 `json:"reset_ms"`
	// RetryAfter is the Retry-After header of a refused request.
	RetryAfter time.Duration   `json:"-"`
	Raw        json.RawMessage `json:"-"`
}

// RateLimit takes cost units (cost <= 0 sends none: the server's default,
// 1) from the rate limit ns/key allowing limit units per window (e.g.
// "1m"). A request over the limit is not an error: it returns Allowed
// false, whether the server answers 200 or 429 with the rate-limit body.
// POST /v1/ratelimit/{ns}/{key}.
func (c *Client) RateLimit(ctx context.Context, ns, key string, limit int64, window string, cost int64) (RateLimitResult, error) {
	var out RateLimitResult
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	if err := checkName("key", key); err != nil {
		return out, err
	}
	in := struct {
		Limit  int64  `json:"limit"`
		Window string `json:"window"`
		Cost   int64  `json:"cost,omitempty"`
	}{limit, window, max(cost, 0)}
	body, err := json.Marshal(in)
	if err != nil {
		return out, fmt.Errorf("client: encoding rate limit body: %w", err)
	}
	path := "/v1/ratelimit/" + url.PathEscape(ns) + "/" + url.PathEscape(key)

	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := c.newHTTPRequest(ctx, request{method: http.MethodPost, path: path, body: body})
	if err != nil {
		return out, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return out, c.transportError(http.MethodPost, path, err)
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	if !ok && resp.StatusCode != http.StatusTooManyRequests {
		return out, decodeError(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return out, fmt.Errorf("client: POST %s: reading answer: %w", path, err)
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(raw, &probe) != nil || probe["allowed"] == nil {
		if ok {
			return out, fmt.Errorf("client: POST %s: answer has no \"allowed\" field: %s", path, bytes.TrimSpace(raw))
		}
		// A 429 without a rate-limit body is the node shedding load.
		return out, decodeError(&http.Response{
			StatusCode: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(raw)),
		})
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("client: POST %s: decoding answer: %w", path, err)
	}
	out.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	out.Raw = raw
	return out, nil
}

// NodeInfo describes the node that answered Cluster.
type NodeInfo struct {
	Name       string `json:"name"`
	Region     string `json:"region"`
	HTTPAddr   string `json:"http_addr"`
	GossipAddr string `json:"gossip_addr"`
}

// Member is one member of the mesh as the answering node sees it.
type Member struct {
	Name     string `json:"name"`
	Region   string `json:"region"`
	State    string `json:"state"`
	HTTPAddr string `json:"http_addr"`
}

// Replication is the replication lag towards one peer.
type Replication struct {
	Peer   string  `json:"peer"`
	Region string  `json:"region"`
	LagMS  float64 `json:"lag_ms"`
}

// ClusterInfo is the answer of Cluster.
type ClusterInfo struct {
	Node        NodeInfo        `json:"node"`
	Members     []Member        `json:"members"`
	Replication []Replication   `json:"replication"`
	Raw         json.RawMessage `json:"-"`
}

// Cluster returns the answering node, the members it sees and its
// replication lag. GET /v1/cluster.
func (c *Client) Cluster(ctx context.Context) (ClusterInfo, error) {
	var out ClusterInfo
	raw, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/cluster"}, nil, &out)
	out.Raw = raw
	return out, err
}

type forgetBody struct {
	Node string `json:"node"`
	Gone bool   `json:"gone,omitempty"`
}

// Forgotten answers Forget.
type Forgotten struct {
	Node       string          `json:"node"`
	Index      int             `json:"index"`
	IDs        []string        `json:"ids"` // decimal slot ids
	Generation uint64          `json:"generation"`
	Raw        json.RawMessage `json:"-"`
}

// Forget forgets the node called name for good: every node folds its
// slots into the retired slot (slot compaction). It needs an admin token;
// every other member must be alive. gone also forgets a node the mesh
// still lists as dead or left (for a day after): say so only when it is
// gone for good, since a node forgotten and back is refused by every node.
// POST /v1/cluster/forget.
func (c *Client) Forget(ctx context.Context, name string, gone bool) (Forgotten, error) {
	var out Forgotten
	raw, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/cluster/forget"}, forgetBody{Node: name, Gone: gone}, &out)
	out.Raw = raw
	return out, err
}

// Healthz returns nil while the node's process is alive. GET /healthz.
func (c *Client) Healthz(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/healthz"})
	return err
}

// Readyz returns nil once the node has recovered and can serve, and a *Error
// matching ErrUnavailable before. GET /readyz.
func (c *Client) Readyz(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/readyz"})
	return err
}

// WaitReady polls Readyz every interval until it succeeds or ctx is done,
// and returns the last error in the latter case.
func (c *Client) WaitReady(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := c.Readyz(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("client: node at %s not ready: %w (last: %w)", c.base, ctx.Err(), err)
		case <-t.C:
		}
	}
}
