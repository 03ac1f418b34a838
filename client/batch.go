package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxBatchOps is the most ops one batch may carry (docs/api.md).
const MaxBatchOps = 10000

// Op is one increment of a batch. By is always sent (a zero By is not
// turned into the default 1); a negative By decrements.
type Op struct {
	NS  string `json:"ns" msgpack:"ns"`
	Key string `json:"key" msgpack:"key"`
	By  int64  `json:"by" msgpack:"by"`
	ID  string `json:"id,omitempty" msgpack:"id,omitempty"`
}

// batchBody is the body of POST /v1/batch, in JSON and msgpack alike.
type batchBody struct {
	Ops         []Op        `json:"ops" msgpack:"ops"`
	Consistency Consistency `json:"consistency,omitempty" msgpack:"consistency,omitempty"`
}

// BatchResult is the answer of a batch.
type BatchResult struct {
	Applied    int64 `json:"applied" msgpack:"applied"`
	Duplicates int64 `json:"duplicates" msgpack:"duplicates"`
	// Values holds each op's counter value after the batch, in op order,
	// when the batch asked for them.
	Values []int64 `json:"values,omitempty" msgpack:"values,omitempty"`
	// Raw is the answer as sent: JSON, or msgpack bytes in the unusual case
	// that the server answered in msgpack despite Accept: application/json.
	Raw json.RawMessage `json:"-" msgpack:"-"`
}

// EncodeBatch encodes a batch body for POST /v1/batch and returns it with
// its Content-Type. Load generators call it once per body before a timed
// run and send the result with BatchRaw.
func EncodeBatch(ops []Op, consistency Consistency, enc Encoding) ([]byte, string, error) {
	if ops == nil {
		ops = []Op{}
	}
	body := batchBody{Ops: ops, Consistency: consistency}
	switch enc {
	case EncodingJSON:
		b, err := json.Marshal(body)
		if err != nil {
			return nil, "", fmt.Errorf("client: encoding batch as JSON: %w", err)
		}
		return b, ContentTypeJSON, nil
	case EncodingMsgpack:
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		e.UseCompactInts(true)
		if err := e.Encode(body); err != nil {
			return nil, "", fmt.Errorf("client: encoding batch as msgpack: %w", err)
		}
		return buf.Bytes(), ContentTypeMsgpack, nil
	default:
		return nil, "", fmt.Errorf("client: unknown batch encoding %d: %w", enc, ErrInvalidArgument)
	}
}

// Batch applies ops (at most MaxBatchOps) in one request, encoded as
// Config.BatchEncoding says. With returnValues the answer carries every
// op's counter value. POST /v1/batch[?return=values].
func (c *Client) Batch(ctx context.Context, ops []Op, consistency Consistency, returnValues bool) (BatchResult, error) {
	if len(ops) > MaxBatchOps {
		return BatchResult{}, fmt.Errorf("client: batch of %d ops is over the limit of %d; split it: %w",
			len(ops), MaxBatchOps, ErrTooLarge)
	}
	body, ct, err := EncodeBatch(ops, consistency, c.cfg.BatchEncoding)
	if err != nil {
		return BatchResult{}, err
	}
	return c.BatchRaw(ctx, body, ct, returnValues)
}

// BatchRaw sends a pre-encoded batch body (see EncodeBatch) with its
// Content-Type. The answer is decoded from JSON or msgpack as its own
// Content-Type says.
func (c *Client) BatchRaw(ctx context.Context, body []byte, contentType string, returnValues bool) (BatchResult, error) {
	var out BatchResult
	var q url.Values
	if returnValues {
		q = url.Values{"return": {"values"}}
	}
	resp, err := c.do(ctx, request{
		method: http.MethodPost, path: "/v1/batch", query: q,
		body: body, contentType: contentType,
	})
	if err != nil {
		return out, err
	}
	if len(bytes.TrimSpace(resp.body)) == 0 {
		return out, nil
	}
	mt, _, _ := mime.ParseMediaType(resp.header.Get("Content-Type"))
	if mt == ContentTypeMsgpack || mt == "application/x-msgpack" {
		if err := msgpack.Unmarshal(resp.body, &out); err != nil {
			return out, fmt.Errorf("client: POST /v1/batch: decoding msgpack answer: %w", err)
		}
		out.Raw = resp.body
		return out, nil
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return out, fmt.Errorf("client: POST /v1/batch: decoding answer: %w", err)
	}
	out.Raw = resp.body
	return out, nil
}

// MaxGetManyKeys is the most keys one GetMany may read (docs/api.md).
const MaxGetManyKeys = 10000

// Key names one counter of a GetMany.
type Key struct {
	NS  string `json:"ns"`
	Key string `json:"key"`
}

type getManyBody struct {
	Keys        []Key       `json:"keys"`
	Consistency Consistency `json:"consistency,omitempty"`
}

type getManyAnswer struct {
	Values []int64 `json:"values"`
}

// GetMany reads the counters keys (at most MaxGetManyKeys) in one request
// and returns their values in key order; a counter never written reads 0.
// POST /v1/batch/get.
func (c *Client) GetMany(ctx context.Context, keys []Key, consistency Consistency) ([]int64, error) {
	if len(keys) > MaxGetManyKeys {
		return nil, fmt.Errorf("client: a read of %d keys is over the limit of %d; split it: %w",
			len(keys), MaxGetManyKeys, ErrTooLarge)
	}
	if keys == nil {
		keys = []Key{}
	}
	var out getManyAnswer
	if _, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/batch/get"}, getManyBody{Keys: keys, Consistency: consistency}, &out); err != nil {
		return nil, err
	}
	if len(out.Values) != len(keys) {
		return nil, fmt.Errorf("client: POST /v1/batch/get: %d values for %d keys", len(out.Values), len(keys))
	}
	return out.Values, nil
}
