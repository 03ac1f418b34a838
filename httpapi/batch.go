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
	body, release, err := readBodyReused(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The decoded ops hold copies of the body's strings (batchjson, msgpack
	// and encoding/json copy them), so the body goes back at once.
	ops, consistency, err := decodeBatch(r.Header.Get("Content-Type"), body)
	release()
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
// one: a body of the plain shape by the fast path (decodeBatchMsgpackPlain),
// any other one, and every refusal, by decodeBatchMsgpackStd, so that both
// give the same answers and errors.
func decodeBatchMsgpack(body []byte) ([]node.BatchOp, string, error) {
	if ops, consistency, ok := decodeBatchMsgpackPlain(body, node.MaxBatchOps); ok {
		return ops, consistency, nil
	}
	return decodeBatchMsgpackStd(body)
}

// decodeBatchMsgpackStd decodes a msgpack batch field by field with the
// msgpack library: the decoder of record, whose errors the client sees.
func decodeBatchMsgpackStd(body []byte) ([]node.BatchOp, string, error) {
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

// decodeBatchMsgpackPlain decodes body, a msgpack batch, when it is of the
// plain shape that clients send: a map of "ops" (an array of at most
// maxOps maps of "ns", "key", "by", "id") and "consistency", each field at
// most once, strings as str (not nil or bin), "by" an integer (not nil),
// and nothing after the map. It reads the bytes in place, without the
// msgpack library's reader and its string per field name.
//
// ok is false for any other body, valid or not: decodeBatchMsgpackStd
// then decodes it and gives the answer or error of record. Where ok is true
// the answer is the one decodeBatchMsgpackStd gives (FuzzDecodeBatchMsgpackPlain
// checks this), a nil ops where "ops" is absent included. Every string is
// a new allocation, so that nothing holds on to body; an op's namespace
// equal to the previous op's shares its string.
func decodeBatchMsgpackPlain(body []byte, maxOps int) (ops []node.BatchOp, consistency string, ok bool) {
	r := mpReader{b: body}
	n, ok := r.mapLen()
	if !ok {
		return nil, "", false
	}
	var seen uint8
	for range n {
		name, ok := r.str()
		if !ok {
			return nil, "", false
		}
		var bit uint8
		switch string(name) {
		case "ops":
			bit = 1
			ops, ok = r.ops(maxOps)
		case "consistency":
			bit = 2
			var raw []byte
			if raw, ok = r.str(); ok {
				consistency = string(raw)
			}
		}
		if !ok || bit == 0 || seen&bit != 0 {
			return nil, "", false
		}
		seen |= bit
	}
	if r.i != len(r.b) {
		return nil, "", false
	}
	return ops, consistency, true
}

// mpReader reads msgpack from b at offset i; its methods return false (and
// may leave i anywhere) when the input is outside the plain shape.
type mpReader struct {
	b []byte
	i int
	// lastNS is the previous op's namespace, shared by the next op that
	// names the same one.
	lastNS string
}

// uint reads a big-endian unsigned integer of size bytes.
func (r *mpReader) uint(size int) (uint64, bool) {
	if size > len(r.b)-r.i {
		return 0, false
	}
	var v uint64
	for _, x := range r.b[r.i : r.i+size] {
		v = v<<8 | uint64(x)
	}
	r.i += size
	return v, true
}

func (r *mpReader) code() (byte, bool) {
	if r.i >= len(r.b) {
		return 0, false
	}
	c := r.b[r.i]
	r.i++
	return c, true
}

// length reads the length of a container or string whose code is c: the
// fixed form's low bits (mask) when c is in [fixLow, fixLow+mask], else
// the 16- or 32-bit length after code16 or code32.
func (r *mpReader) length(fixLow, mask, code16, code32 byte) (int, bool) {
	c, ok := r.code()
	if !ok {
		return 0, false
	}
	var n uint64
	switch {
	case c >= fixLow && c <= fixLow+mask:
		return int(c & mask), true
	case c == code16:
		n, ok = r.uint(2)
	case c == code32:
		n, ok = r.uint(4)
	default:
		return 0, false
	}
	return int(n), ok
}

func (r *mpReader) mapLen() (int, bool)   { return r.length(0x80, 0x0f, 0xde, 0xdf) }
func (r *mpReader) arrayLen() (int, bool) { return r.length(0x90, 0x0f, 0xdc, 0xdd) }

// str reads a str (fixstr, str8, str16, str32) and returns its bytes, a
// part of b.
func (r *mpReader) str() ([]byte, bool) {
	c, ok := r.code()
	if !ok {
		return nil, false
	}
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n, ok = r.uint(1)
	case c == 0xda:
		n, ok = r.uint(2)
	case c == 0xdb:
		n, ok = r.uint(4)
	default:
		return nil, false
	}
	if !ok || n > uint64(len(r.b)-r.i) {
		return nil, false
	}
	s := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return s, true
}

// int64 reads an integer as the msgpack library's DecodeInt64 does (a
// uint64 over MaxInt64 wraps), except nil.
func (r *mpReader) int64() (int64, bool) {
	c, ok := r.code()
	if !ok {
		return 0, false
	}
	if c <= 0x7f || c >= 0xe0 { // positive or negative fixint
		return int64(int8(c)), true
	}
	var n uint64
	switch c {
	case 0xcc, 0xd0: // uint8, int8
		n, ok = r.uint(1)
		if c == 0xd0 {
			n = uint64(int8(n))
		}
	case 0xcd, 0xd1: // uint16, int16
		n, ok = r.uint(2)
		if c == 0xd1 {
			n = uint64(int16(n))
		}
	case 0xce, 0xd2: // uint32, int32
		n, ok = r.uint(4)
		if c == 0xd2 {
			n = uint64(int32(n))
		}
	case 0xcf, 0xd3: // uint64, int64
		n, ok = r.uint(8)
	default:
		return 0, false
	}
	return int64(n), ok
}

// ops reads the array of ops, of at most maxOps.
func (r *mpReader) ops(maxOps int) ([]node.BatchOp, bool) {
	count, ok := r.arrayLen()
	// Every op takes a byte at least: a count over the bytes left is a
	// truncated body, refused before allocating.
	if !ok || count > maxOps || count > len(r.b)-r.i {
		return nil, false
	}
	ops := make([]node.BatchOp, count)
	for i := range ops {
		if !r.op(&ops[i]) {
			return nil, false
		}
	}
	return ops, true
}

// op reads one op into op, a zero one.
func (r *mpReader) op(op *node.BatchOp) bool {
	n, ok := r.mapLen()
	if !ok {
		return false
	}
	op.By = 1
	var seen uint8
	for range n {
		name, ok := r.str()
		if !ok {
			return false
		}
		var bit uint8
		var raw []byte
		switch string(name) {
		case "ns":
			bit = 1
			if raw, ok = r.str(); ok && string(raw) != r.lastNS {
				r.lastNS = string(raw)
			}
			op.NS = r.lastNS
		case "key":
			bit = 2
			if raw, ok = r.str(); ok {
				op.Key = string(raw)
			}
		case "by":
			bit = 4
			op.By, ok = r.int64()
		case "id":
			bit = 8
			if raw, ok = r.str(); ok {
				op.ID = string(raw)
			}
		}
		if !ok || bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	return true
}
