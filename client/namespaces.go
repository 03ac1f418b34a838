package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// NamespaceConfig is the configuration of a namespace as the server
// reports it (docs/api.md).
type NamespaceConfig struct {
	// Name is the namespace, when the server includes it.
	Name string `json:"name,omitempty"`
	// Type is "eventual" (default), "exact" or "approximate".
	Type string `json:"type,omitempty"`
	// Durability is "sync" or "async".
	Durability string `json:"durability,omitempty"`
	// Windows are the time-bucket granularities kept, e.g. "1m", "1h".
	Windows []string `json:"windows,omitempty"`
	// Retention maps a granularity to how long its buckets are kept ("0":
	// forever), e.g. {"1m": "48h"}.
	Retention map[string]string `json:"retention,omitempty"`
	// TTL expires counters untouched this long; "0" never.
	TTL string `json:"ttl,omitempty"`
	// Min and Max bound the counters; nil is no bound.
	Min *int64 `json:"min"`
	Max *int64 `json:"max"`
	// IdempotencyWindow is how long an increment id is remembered.
	IdempotencyWindow string `json:"idempotency_window,omitempty"`
	// Replicas is how many nodes of each region hold each counter; 0,
	// every node.
	Replicas int `json:"replicas,omitempty"`
	// Raw is the server's answer as sent.
	Raw json.RawMessage `json:"-"`
}

// NamespacePatch is the body of PUT /v1/namespaces/{ns}: the fields to
// change. A nil field (a zero Bound) is not sent and keeps its current value
// (the default for a new namespace). Ptr helps fill it:
//
//	client.NamespacePatch{Type: client.Ptr("exact"), Min: client.BoundAt(0),
//		Windows: client.Ptr([]string{"1m", "1h"})}
type NamespacePatch struct {
	Type              *string            `json:"type,omitempty"`
	Durability        *string            `json:"durability,omitempty"`
	Windows           *[]string          `json:"windows,omitempty"`
	Retention         *map[string]string `json:"retention,omitempty"`
	TTL               *string            `json:"ttl,omitempty"`
	Min               Bound              `json:"min,omitzero"`
	Max               Bound              `json:"max,omitzero"`
	IdempotencyWindow *string            `json:"idempotency_window,omitempty"`
	// Replicas shards a new namespace over that many nodes per region;
	// it is fixed once the namespace exists.
	Replicas *int `json:"replicas,omitempty"`
}

// Ptr returns a pointer to v, for the fields of NamespacePatch.
func Ptr[T any](v T) *T { return &v }

// Bound is a change of a namespace's min or max. The zero value changes
// nothing; BoundAt sets the bound and NoBound removes it.
type Bound struct {
	set   bool
	value *int64
}

// BoundAt sets a bound to v.
func BoundAt(v int64) Bound { return Bound{set: true, value: &v} }

// NoBound removes a bound (sent as null).
func NoBound() Bound { return Bound{set: true} }

// IsZero reports whether b changes nothing (and is then left out).
func (b Bound) IsZero() bool { return !b.set }

// MarshalJSON writes the bound, or null for NoBound.
func (b Bound) MarshalJSON() ([]byte, error) {
	if b.value == nil {
		return []byte("null"), nil
	}
	return []byte(strconv.FormatInt(*b.value, 10)), nil
}

// GetNamespace returns the configuration of ns; an unknown namespace is a
// *Error matching ErrNotFound. GET /v1/namespaces/{ns}.
func (c *Client) GetNamespace(ctx context.Context, ns string) (NamespaceConfig, error) {
	var out NamespaceConfig
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	raw, err := c.call(ctx, request{method: http.MethodGet, path: namespacePath(ns)}, nil, &out)
	out.Raw = raw
	return out, err
}

// PutNamespace creates ns or changes the fields of its configuration that
// patch sets, and returns the resulting configuration.
// PUT /v1/namespaces/{ns}.
func (c *Client) PutNamespace(ctx context.Context, ns string, patch NamespacePatch) (NamespaceConfig, error) {
	var out NamespaceConfig
	if err := checkName("namespace", ns); err != nil {
		return out, err
	}
	raw, err := c.call(ctx, request{method: http.MethodPut, path: namespacePath(ns)}, patch, &out)
	out.Raw = raw
	return out, err
}

// NamespaceInfo is one namespace of a listing. Config is filled when the
// server lists configurations, not only names.
type NamespaceInfo struct {
	Name   string
	Config NamespaceConfig
}

// NamespaceList is the answer of ListNamespaces.
type NamespaceList struct {
	Items []NamespaceInfo
	Raw   json.RawMessage
}

// ListNamespaces lists the namespaces. GET /v1/namespaces.
//
// docs/api.md does not fix the shape of the answer, so this accepts an
// array, or an object holding it under "namespaces" or "items", or an object
// keyed by name; each element may be a name or an object with "name" (or
// "ns") and the configuration fields.
func (c *Client) ListNamespaces(ctx context.Context) (NamespaceList, error) {
	raw, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/namespaces"}, nil, nil)
	if err != nil {
		return NamespaceList{}, err
	}
	items, err := decodeNamespaceList(raw)
	if err != nil {
		return NamespaceList{}, fmt.Errorf("client: GET /v1/namespaces: decoding answer: %w", err)
	}
	return NamespaceList{Items: items, Raw: raw}, nil
}

func decodeNamespaceList(raw json.RawMessage) ([]NamespaceInfo, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, nil
	}
	if raw[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, err
		}
		out := make([]NamespaceInfo, 0, len(elems))
		for _, e := range elems {
			info, err := decodeNamespaceInfo("", e)
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
		return out, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	for _, field := range []string{"namespaces", "items"} {
		if inner, ok := obj[field]; ok {
			return decodeNamespaceList(inner)
		}
	}
	// An object keyed by namespace name.
	out := make([]NamespaceInfo, 0, len(obj))
	for name, e := range obj {
		info, err := decodeNamespaceInfo(name, e)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b NamespaceInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func decodeNamespaceInfo(name string, e json.RawMessage) (NamespaceInfo, error) {
	e = bytes.TrimSpace(e)
	if len(e) > 0 && e[0] == '"' {
		var s string
		err := json.Unmarshal(e, &s)
		return NamespaceInfo{Name: s}, err
	}
	var named struct {
		Name   string          `json:"name"`
		NS     string          `json:"ns"`
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(e, &named); err != nil {
		return NamespaceInfo{}, err
	}
	info := NamespaceInfo{Name: name}
	if named.Name != "" {
		info.Name = named.Name
	} else if named.NS != "" {
		info.Name = named.NS
	}
	cfgJSON := e
	if len(named.Config) > 0 {
		cfgJSON = named.Config
	}
	if err := json.Unmarshal(cfgJSON, &info.Config); err != nil {
		return NamespaceInfo{}, err
	}
	info.Config.Raw = cfgJSON
	return info, nil
}
