package httpapi

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/internal/msgpackguard"
	"github.com/countmesh/countmesh/node"
)

type batchGetKey struct {
	NS  string `json:"ns" msgpack:"ns"`
	Key string `json:"key" msgpack:"key"`
}

// batchGetBody is the body of POST /v1/batch/get, JSON or msgpack.
type batchGetBody struct {
	Keys        []batchGetKey `json:"keys" msgpack:"keys"`
	Consistency string        `json:"consistency" msgpack:"consistency"`
}

type batchGetAnswer struct {
	Values []int64 `json:"values"`
}

// batchGet answers POST /v1/batch/get: the values of up to
// node.MaxGetMany counters in key order. Every key is checked (name and
// the token's namespaces) before anything is read.
func (s *Server) batchGet(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	keys, consistency, err := decodeBatchGet(r.Header.Get("Content-Type"), body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := eachAllowed(grantOf(r), auth.ScopeRead, "key", len(keys), func(i int) string { return keys[i].NS }); err != nil {
		s.writeError(w, r, err)
		return
	}
	values, err := s.node.GetMany(r.Context(), keys, consistency)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, batchGetAnswer{Values: values})
}

// decodeBatchGet decodes a batch/get body with Content-Type ct, JSON or
// msgpack; its errors are 400, 413 or 415.
func decodeBatchGet(ct string, body []byte) ([]node.KeyRef, string, error) {
	mt, err := mediaType(ct, true)
	if err != nil {
		return nil, "", err
	}
	if mt == mediaOther {
		if err := sniffJSON(ct, body, true); err != nil {
			return nil, "", err
		}
	}
	var b batchGetBody
	if mt == mediaMsgpack {
		if err := unmarshalMsgpack(body, &b); err != nil {
			return nil, "", err
		}
	} else if err := unmarshalJSON(body, &b); err != nil {
		return nil, "", err
	}
	if len(b.Keys) > node.MaxGetMany {
		return nil, "", &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("a batch read holds at most %d keys, got %d; split it", node.MaxGetMany, len(b.Keys))}
	}
	keys := make([]node.KeyRef, len(b.Keys))
	for i, k := range b.Keys {
		keys[i] = node.KeyRef{NS: k.NS, Key: k.Key}
	}
	return keys, b.Consistency, nil
}

// unmarshalMsgpack decodes a msgpack body into v, refusing unknown fields,
// deep nesting and trailing data; its errors are 400.
func unmarshalMsgpack(body []byte, v any) error {
	if err := msgpackguard.Check(body, msgpackguard.MaxDepth); err != nil {
		return badRequest("malformed msgpack body: " + err.Error())
	}
	rd := bytes.NewReader(body)
	dec := msgpack.NewDecoder(rd)
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed msgpack body: " + err.Error())
	}
	if rd.Len() > 0 {
		return badRequest("malformed msgpack body: data after the value")
	}
	return nil
}
