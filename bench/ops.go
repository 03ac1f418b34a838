package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/countmesh/countmesh/client"
)

// counterPrefix is the escaped path up to a key: /v1/counters/{ns}/.
func counterPrefix(ns string) []byte {
	return []byte("/v1/counters/" + url.PathEscape(ns) + "/")
}

// IncrBody returns the body of a single increment by 1 with the given
// consistency, encoded once and shared by every request.
func IncrBody(consistency client.Consistency) []byte {
	if consistency == "" {
		return []byte(`{"by":1}`)
	}
	return []byte(`{"by":1,"consistency":"` + string(consistency) + `"}`)
}

// IncrOp returns an Op that sends POST /v1/counters/{ns}/{key}/incr with the
// shared body for a key drawn from gen. Each call builds only the path.
func IncrOp(c *client.Client, ns string, gen KeyGen, body []byte) Op {
	prefix := counterPrefix(ns)
	buf := make([]byte, 0, len(prefix)+32)
	return func(ctx context.Context) (int64, error) {
		buf = append(buf[:0], prefix...)
		buf = AppendKeyName(buf, gen.Next())
		buf = append(buf, "/incr"...)
		if err := c.Send(ctx, http.MethodPost, string(buf), body, client.ContentTypeJSON); err != nil {
			return 0, err
		}
		return 1, nil
	}
}

// ReadOp returns an Op that sends GET /v1/counters/{ns}/{key} for a key drawn
// from gen.
func ReadOp(c *client.Client, ns string, gen KeyGen, consistency client.Consistency) Op {
	prefix := counterPrefix(ns)
	suffix := ""
	if consistency != "" {
		suffix = "?consistency=" + url.QueryEscape(string(consistency))
	}
	buf := make([]byte, 0, len(prefix)+len(suffix)+32)
	return func(ctx context.Context) (int64, error) {
		buf = append(buf[:0], prefix...)
		buf = AppendKeyName(buf, gen.Next())
		buf = append(buf, suffix...)
		if err := c.Send(ctx, http.MethodGet, string(buf), nil, ""); err != nil {
			return 0, err
		}
		return 1, nil
	}
}

// BatchBodies are pre-encoded batch bodies, all of the same size.
type BatchBodies struct {
	Bodies      [][]byte
	ContentType string
	// Ops is the number of increments in each body (each by 1), or of
	// keys read.
	Ops int
	// Path is where the bodies go: "" for POST /v1/batch.
	Path string
}

// BuildBatchBodies encodes n batch bodies of size increments by 1 each, to
// keys drawn from gen, before a timed run.
func BuildBatchBodies(ns string, n, size int, gen KeyGen, enc client.Encoding, consistency client.Consistency) (BatchBodies, error) {
	if n <= 0 || size <= 0 || size > client.MaxBatchOps {
		return BatchBodies{}, fmt.Errorf("bench: %d bodies of %d ops; want at least 1 body of 1 to %d ops",
			n, size, client.MaxBatchOps)
	}
	out := BatchBodies{Bodies: make([][]byte, n), Ops: size}
	ops := make([]client.Op, size)
	for i := range out.Bodies {
		for j := range ops {
			ops[j] = client.Op{NS: ns, Key: KeyName(gen.Next()), By: 1}
		}
		body, ct, err := client.EncodeBatch(ops, consistency, enc)
		if err != nil {
			return BatchBodies{}, err
		}
		out.Bodies[i], out.ContentType = body, ct
	}
	return out, nil
}

// BuildGetManyBodies encodes n JSON bodies of POST /v1/batch/get, each
// reading size keys drawn from gen, before a timed run.
func BuildGetManyBodies(ns string, n, size int, gen KeyGen, consistency client.Consistency) (BatchBodies, error) {
	if n <= 0 || size <= 0 || size > client.MaxGetManyKeys {
		return BatchBodies{}, fmt.Errorf("bench: %d bodies of %d keys; want at least 1 body of 1 to %d keys",
			n, size, client.MaxGetManyKeys)
	}
	type body struct {
		Keys        []client.Key       `json:"keys"`
		Consistency client.Consistency `json:"consistency,omitempty"`
	}
	out := BatchBodies{Bodies: make([][]byte, n), Ops: size, Path: "/v1/batch/get", ContentType: client.ContentTypeJSON}
	keys := make([]client.Key, size)
	for i := range out.Bodies {
		for j := range keys {
			keys[j] = client.Key{NS: ns, Key: KeyName(gen.Next())}
		}
		b, err := json.Marshal(body{Keys: keys, Consistency: consistency})
		if err != nil {
			return BatchBodies{}, fmt.Errorf("bench: encoding a batch read: %w", err)
		}
		out.Bodies[i] = b
	}
	return out, nil
}

// BatchOp returns an Op that sends the bodies in turn, starting at index
// first, to b.Path (POST /v1/batch by default).
func BatchOp(c *client.Client, b BatchBodies, first int) Op {
	i := first
	path := b.Path
	if path == "" {
		path = "/v1/batch"
	}
	return func(ctx context.Context) (int64, error) {
		body := b.Bodies[i%len(b.Bodies)]
		i++
		if err := c.Send(ctx, http.MethodPost, path, body, b.ContentType); err != nil {
			return 0, err
		}
		return int64(b.Ops), nil
	}
}
