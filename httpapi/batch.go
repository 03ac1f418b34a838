package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/internal/batchjson"
	"github.com/countmesh/countmesh/internal/msgpackguard"
	"github.com/countmesh/countmesh/node"
)

type batchOpBody struct {
	NS  string `json:"ns"`
	Key string `json:"key"`
	By  *int64 `json:"by"`
	ID  string `json:"id"`
}

type batchBody struct {
	Ops         []batchOpBody `json:"ops"`
	Consistency string        `json:"consistency"`
}

type batchAnswer struct {
	Applied    int     `json:"applied"`
	Duplicates int     `json:"duplicates"`
	Values     []int64 `json:"values,omitempty"`
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request) {
	returnValues := false
	switch rv := r.URL.Query().Get("return"); rv {
	case "":
	case "values":
		returnValues = true
	default:
		s.writeError(w, r, badRequest(fmt.Sprintf("return must be \"values\" or absent, got %q", rv)))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ops, consistency, err := decodeBatch(r.Header.Get("Content-Type"), body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := batchAllowed(grantOf(r), ops); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.node.Batch(r.Context(), ops, consistency, returnValues)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, batchAnswer{Applied: res.Applied, Duplicates: res.Duplicates, Values: res.Values})
}

// decodeBatch decodes a batch body with Content-Type ct, JSON or msgpack;
// its errors are 400, 413 or 415.
func decodeBatch(ct string, body []byte) ([]node.BatchOp, string, error) {
	mt, err := mediaType(ct, true)
	if err != nil {
		return nil, "", err
	}
	if mt == mediaOther {
		if err := sniffJSON(ct, body, true); err != nil {
			return nil, "", err
		}
	}
	if mt == mediaMsgpack {
		return decodeBatchMsgpack(body)
	}
	return decodeBatchJSON(body)
}

// batchAllowed checks that grant (nil: no tokens) may write to the namespace
// of every op, so that a batch with one foreign op is refused whole.
func batchAllowed(grant *auth.Grant, ops []node.BatchOp) error {
	return eachAllowed(grant, auth.ScopeWrite, "op", len(ops), func(i int) string { return ops[i].NS })
}

// eachAllowed checks that grant (nil: no tokens) has scope need on the
// namespace nsOf(i) of each of the n items of a request (what names them in
// the error), so that one foreign item refuses the whole request.
func eachAllowed(grant *auth.Grant, need auth.Scope, what string, n int, nsOf func(i int) string) error {
	if grant == nil {
		return nil
	}
	for i := range n {
		ns := nsOf(i)
		if err := node.ValidateNamespace(ns); err != nil {
			return fmt.Errorf("%s %d: %w", what, i, err)
		}
		if err := grant.Allow(need, ns); err != nil {
			return fmt.Errorf("%s %d: %w", what, i, err)
		}
	}
	return nil
}

func tooManyOps(n int) error {
	return &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
		fmt.Sprintf("a batch holds at most %d ops, got %d; split it", node.MaxBatchOps, n)}
}

// decodeBatchJSON decodes a JSON batch: a body of the plain shape that
// clients send by the fast path (batchjson.Decode), any other one, and
// every refusal, by encoding/json (decodeBatchJSONStd), so that both give
// the same answers and errors.
func decodeBatchJSON(body []byte) ([]node.BatchOp, string, error) {
	if ops, consistency, ok := batchjson.Decode(body, node.MaxBatchOps); ok {
		return ops, consistency, nil
	}
	return decodeBatchJSONStd(body)
}

// decodeBatchJSONStd decodes a JSON batch with encoding/json: the decoder
// of record, whose errors the client sees.
func decodeBatchJSONStd(body []byte) ([]node.BatchOp, string, error) {
	var b batchBody
	if err := unmarshalJSON(body, &b); err != nil {
		return nil, "", err
	}
	if len(b.Ops) > node.MaxBatchOps {
		return nil, "", tooManyOps(len(b.Ops))
	}
	ops := make([]node.BatchOp, len(b.Ops))
	for i, op := range b.Ops {
		ops[i] = node.BatchOp{NS: op.NS, Key: op.Key, By: 1, ID: op.ID}
		if op.By != nil {
			ops[i].By = *op.By
		}
	}
	return ops, b.Consistency, nil
}

// decodeBatchMsgpack decodes a msgpack batch of the same shape as the JSON
// one, field by field without reflection (this is the bulk-ingest path).
func decodeBatchMsgpack(body []byte) ([]node.BatchOp, string, error) {
	bad := func(format string, args ...any) error {
		return badRequest("malformed msgpack body: " + fmt.Sprintf(format, args...))
	}
	// The decoder recurses when it skips a nested value: refuse deep
	// nesting first (a few MiB of it would overflow the stack).
	if err := msgpackguard.Check(body, msgpackguard.MaxDepth); err != nil {
		return nil, "", bad("%v", err)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(body))
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil, "", bad("want a map with ops: %v", err)
	}
	var ops []node.BatchOp
	var consistency string
	for range n {
		field, err := dec.DecodeString()
		if err != nil {
			return nil, "", bad("field name: %v", err)
		}
		switch field {
		case "consistency":
			if consistency, err = dec.DecodeString(); err != nil {
				return nil, "", bad("consistency: %v", err)
			}
		case "ops":
			count, err := dec.DecodeArrayLen()
			if err != nil {
				return nil, "", bad("ops must be an array: %v", err)
			}
			if count > node.MaxBatchOps {
				return nil, "", tooManyOps(count)
			}
			ops = make([]node.BatchOp, max(count, 0))
			for i := range ops {
				if err := decodeOpMsgpack(dec, &ops[i]); err != nil {
					return nil, "", bad("op %d: %v", i, err)
				}
			}
		default:
			return nil, "", badRequest(fmt.Sprintf("unknown field %q in the batch", field))
		}
	}
	if _, err := dec.PeekCode(); !errors.Is(err, io.EOF) {
		return nil, "", bad("data after the batch")
	}
	return ops, consistency, nil
}

func decodeOpMsgpack(dec *msgpack.Decoder, op *node.BatchOp) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return fmt.Errorf("want a map: %w", err)
	}
	op.By = 1
	for range n {
		field, err := dec.DecodeString()
		if err != nil {
			return fmt.Errorf("field name: %w", err)
		}
		switch field {
		case "ns":
			op.NS, err = dec.DecodeString()
		case "key":
			op.Key, err = dec.DecodeString()
		case "by":
			op.By, err = dec.DecodeInt64()
		case "id":
			op.ID, err = dec.DecodeString()
		default:
			return fmt.Errorf("unknown field %q", field)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	return nil
}
