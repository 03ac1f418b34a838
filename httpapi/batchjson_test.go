package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/internal/batchjson"
	"github.com/countmesh/countmesh/node"
)

// decodeBatchReference is decodeBatch as it was before the fast paths
// (batchjson.Decode, decodeBatchMsgpackPlain), kept as the reference that
// they must match answer for answer and error for error. The msgpack
// decoder of before is decodeBatchMsgpackStd, unchanged.
func decodeBatchReference(ct string, body []byte) ([]node.BatchOp, string, error) {
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
		return decodeBatchMsgpackStd(body)
	}
	return decodeBatchJSONReference(body)
}

// decodeBatchJSONReference is decodeBatchJSON before the fast path.
func decodeBatchJSONReference(body []byte) ([]node.BatchOp, string, error) {
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

// checkSameAsReference fails unless decodeBatch and decodeBatchReference
// give body the same ops and consistency, or the same status, code and
// message; it returns the reference's error.
func checkSameAsReference(t *testing.T, ct string, body []byte) error {
	t.Helper()
	ops, consistency, err := decodeBatch(ct, body)
	wantOps, wantConsistency, wantErr := decodeBatchReference(ct, body)
	switch {
	case err == nil && wantErr == nil:
		if !reflect.DeepEqual(ops, wantOps) || consistency != wantConsistency {
			t.Fatalf("body %q: got %+v %q, the reference %+v %q", body, ops, consistency, wantOps, wantConsistency)
		}
	case err != nil && wantErr != nil:
		status, code := classify(err)
		wantStatus, wantCode := classify(wantErr)
		if status != wantStatus || code != wantCode || userMessage(err) != userMessage(wantErr) {
			t.Fatalf("body %q: refused with %d %s %q, the reference with %d %s %q",
				body, status, code, userMessage(err), wantStatus, wantCode, userMessage(wantErr))
		}
	default:
		t.Fatalf("body %q: got ops %+v, error %v; the reference ops %+v, error %v", body, ops, err, wantOps, wantErr)
	}
	return wantErr
}

func TestDecodeBatchJSONSameAsReference(t *testing.T) {
	manyOps := func(n int, tail string) string {
		return `{"ops":[` + strings.Repeat(`{},`, n-1) + `{}` + tail + `]}`
	}
	for _, tc := range []struct {
		name string
		body string
		// status is the reference's answer, 0 for accepted; fast says
		// that the fast path decodes the body (else encoding/json does).
		status int
		fast   bool
		// check, when set, looks at the accepted ops.
		check func(t *testing.T, ops []node.BatchOp, consistency string)
	}{
		{name: "plain", body: `{"ops":[{"ns":"bench","key":"k00001234","by":1},{"ns":"bench","key":"k2","by":5,"id":"x"}],"consistency":"local"}`, fast: true,
			check: func(t *testing.T, ops []node.BatchOp, c string) {
				want := []node.BatchOp{{NS: "bench", Key: "k00001234", By: 1}, {NS: "bench", Key: "k2", By: 5, ID: "x"}}
				if !reflect.DeepEqual(ops, want) || c != "local" {
					t.Fatalf("got %+v %q", ops, c)
				}
			}},
		{name: "fields in another order", body: `{"consistency":"quorum","ops":[{"id":"i","by":-3,"key":"k","ns":"n"}]}`, fast: true},
		{name: "whitespace everywhere", body: " \t\r\n{ \"ops\" : [ { \"ns\" : \"a\" , \"key\" : \"b\" , \"by\" : 2 } , { } ] } \n", fast: true},
		{name: "by absent means 1", body: `{"ops":[{"ns":"a","key":"b"}]}`, fast: true,
			check: func(t *testing.T, ops []node.BatchOp, _ string) {
				if ops[0].By != 1 {
					t.Fatalf("by %d", ops[0].By)
				}
			}},
		{name: "by 0", body: `{"ops":[{"ns":"a","key":"b","by":0}]}`, fast: true,
			check: func(t *testing.T, ops []node.BatchOp, _ string) {
				if ops[0].By != 0 {
					t.Fatalf("by %d", ops[0].By)
				}
			}},
		{name: "by -0", body: `{"ops":[{"ns":"a","key":"b","by":-0}]}`, fast: true},
		{name: "by max int64", body: `{"ops":[{"ns":"a","key":"b","by":9223372036854775807}]}`, fast: true},
		{name: "by min int64", body: `{"ops":[{"ns":"a","key":"b","by":-9223372036854775808}]}`, fast: true},
		{name: "by over int64", body: `{"ops":[{"ns":"a","key":"b","by":9223372036854775808}]}`, status: 400},
		{name: "by under int64", body: `{"ops":[{"ns":"a","key":"b","by":-9223372036854775809}]}`, status: 400},
		{name: "by of 20 digits", body: `{"ops":[{"by":10000000000000000000}]}`, status: 400},
		{name: "by float", body: `{"ops":[{"ns":"a","key":"b","by":1.5}]}`, status: 400},
		{name: "by integral float", body: `{"ops":[{"ns":"a","key":"b","by":1.0}]}`, status: 400},
		{name: "by exponent", body: `{"ops":[{"ns":"a","key":"b","by":1e3}]}`, status: 400},
		{name: "by leading zero", body: `{"ops":[{"ns":"a","key":"b","by":01}]}`, status: 400},
		{name: "by minus alone", body: `{"ops":[{"ns":"a","key":"b","by":-}]}`, status: 400},
		{name: "by string", body: `{"ops":[{"ns":"a","key":"b","by":"5"}]}`, status: 400},
		{name: "by true", body: `{"ops":[{"ns":"a","key":"b","by":true}]}`, status: 400},
		{name: "by null means 1", body: `{"ops":[{"ns":"a","key":"b","by":null}]}`},
		{name: "ns null", body: `{"ops":[{"ns":null,"key":"b"}]}`},
		{name: "ns number", body: `{"ops":[{"ns":1,"key":"b"}]}`, status: 400},
		{name: "id number", body: `{"ops":[{"ns":"a","key":"b","id":7}]}`, status: 400},
		{name: "consistency number", body: `{"ops":[],"consistency":1}`, status: 400},
		{name: "consistency null", body: `{"ops":[],"consistency":null}`},
		{name: "unknown op field", body: `{"ops":[{"ns":"a","key":"b","extra":1}]}`, status: 400},
		{name: "unknown batch field", body: `{"ops":[],"extra":[[[]]]}`, status: 400},
		{name: "unknown field then type error", body: `{"ops":[{"extra":1,"by":"x"}]}`, status: 400},
		{name: "type error then unknown field", body: `{"ops":[{"by":"x","extra":1}]}`, status: 400},
		{name: "type error then syntax error", body: `{"ops":[{"by":"x"}],}`, status: 400},
		{name: "field names in other cases", body: `{"OPS":[{"NS":"a","Key":"b","BY":2,"Id":"i"}],"Consistency":"local"}`},
		{name: "field name with the Kelvin sign", body: "{\"ops\":[{\"\u212aey\":\"b\"}]}"},
		{name: "field name escaped", body: `{"op\u0073":[{"n\u0073":"a"}]}`},
		{name: "duplicate op field", body: `{"ops":[{"ns":"a","ns":"b","key":"k","key":"l","by":2,"by":3,"id":"x","id":"y"}]}`},
		{name: "duplicate ops merge", body: `{"ops":[{"ns":"a","key":"x"},{"ns":"c"}],"ops":[{"key":"y"}]}`},
		{name: "duplicate ops, null op keeps the old one", body: `{"ops":[{"ns":"a","key":"x","by":4}],"ops":[null]}`},
		{name: "duplicate consistency", body: `{"consistency":"quorum","ops":[],"consistency":"local"}`},
		{name: "escaped string", body: `{"ops":[{"ns":"a","key":"k\u0031\"\\\/\n"}]}`},
		{name: "surrogate pair", body: `{"ops":[{"ns":"a","key":"\ud83d\ude00"}]}`},
		{name: "lone surrogate", body: `{"ops":[{"ns":"a","key":"\ud83d"}]}`},
		{name: "UTF-8", body: `{"ops":[{"ns":"ns","key":"ключ-😀"}]}`, fast: true},
		{name: "invalid UTF-8", body: "{\"ops\":[{\"ns\":\"a\",\"key\":\"k\xff\xfe\"}]}"},
		{name: "invalid UTF-8 in a field name", body: "{\"ops\":[{\"k\xffey\":\"b\"}]}", status: 400},
		{name: "truncated UTF-8", body: "{\"ops\":[{\"ns\":\"a\",\"key\":\"k\xe2\x82\"}]}"},
		{name: "control character in a string", body: "{\"ops\":[{\"ns\":\"a\",\"key\":\"k\x01\"}]}", status: 400},
		{name: "DEL in a string", body: "{\"ops\":[{\"ns\":\"a\",\"key\":\"k\x7f\"}]}", fast: true},
		{name: "empty body", body: ``},
		{name: "whitespace body", body: " \n\t"},
		{name: "vertical tab body", body: "\v"},
		{name: "empty object", body: `{}`, fast: true,
			check: func(t *testing.T, ops []node.BatchOp, _ string) {
				if ops == nil || len(ops) != 0 {
					t.Fatalf("ops %#v", ops)
				}
			}},
		{name: "empty ops", body: `{"ops":[]}`, fast: true},
		{name: "null ops", body: `{"ops":null}`},
		{name: "null op", body: `{"ops":[null]}`},
		{name: "empty op", body: `{"ops":[{}]}`, fast: true},
		{name: "ops object", body: `{"ops":{}}`, status: 400},
		{name: "ops string", body: `{"ops":"x"}`, status: 400},
		{name: "op array", body: `{"ops":[[]]}`, status: 400},
		{name: "array body", body: `[]`, status: 400},
		{name: "null body", body: `null`},
		{name: "number body", body: `123`, status: 400},
		{name: "string body", body: `"x"`, status: 400},
		{name: "trailing garbage", body: `{"ops":[]} x`, status: 400},
		{name: "two values", body: `{"ops":[]}{}`, status: 400},
		{name: "trailing bracket", body: `{"ops":[]}]`, status: 400},
		{name: "trailing NUL", body: "{\"ops\":[]}\x00", status: 400},
		{name: "trailing vertical tab", body: "{\"ops\":[]}\v", status: 400},
		{name: "byte order mark", body: "\ufeff{\"ops\":[]}", status: 400},
		{name: "truncated", body: `{"ops":[{"ns":"a"`, status: 400},
		{name: "truncated string", body: `{"ops":[{"ns":"a`, status: 400},
		{name: "trailing comma in ops", body: `{"ops":[{},]}`, status: 400},
		{name: "trailing comma in an op", body: `{"ops":[{"ns":"a",}]}`, status: 400},
		{name: "trailing comma in the batch", body: `{"ops":[],}`, status: 400},
		{name: "missing colon", body: `{"ops" []}`, status: 400},
		{name: "missing comma", body: `{"ops":[{"ns":"a" "key":"b"}]}`, status: 400},
		{name: "single quotes", body: `{'ops':[]}`, status: 400},
		{name: "10,000 ops", body: manyOps(node.MaxBatchOps, ""), fast: true},
		{name: "10,001 ops", body: manyOps(node.MaxBatchOps+1, ""), status: 413},
		{name: "10,001 ops and a type error", body: manyOps(node.MaxBatchOps+1, `,{"by":"x"}`), status: 400},
		{name: "10,001 ops and a syntax error", body: manyOps(node.MaxBatchOps+1, `,`), status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ct := range []string{"application/json", "", "text/plain"} {
				if ct == "text/plain" && !strings.HasPrefix(strings.TrimSpace(tc.body), "{") {
					continue // refused with 415 before decoding
				}
				err := checkSameAsReference(t, ct, []byte(tc.body))
				status := 0
				if err != nil {
					status, _ = classify(err)
				}
				if status != tc.status {
					t.Fatalf("Content-Type %q: the reference answers %d (%v), the case says %d", ct, status, err, tc.status)
				}
			}
			if _, _, ok := batchjson.Decode([]byte(tc.body), node.MaxBatchOps); ok != tc.fast {
				t.Fatalf("the fast path decodes the body: %v, want %v", ok, tc.fast)
			}
			if tc.check != nil {
				ops, consistency, err := decodeBatch("application/json", []byte(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, ops, consistency)
			}
		})
	}
}

// FuzzDecodeBatchJSONFast checks decodeBatch against the reference on any
// body and Content-Type: same answers, same refusals (status, code,
// message). (FuzzDecodeBatchJSON in internal/batchjson checks the fast
// path alone against encoding/json.)
func FuzzDecodeBatchJSONFast(f *testing.F) {
	for _, body := range []string{
		``, `{}`, `{"ops":[]}`, `{"ops":[{"ns":"v","key":"a"},{"ns":"v","key":"b","by":5,"id":"x"}],"consistency":"local"}`,
		`{"ops":[{"ns":"v","key":"a","by":1.5}]}`, `{"ops":[{"ns":"v","key":"a","by":-9223372036854775808}]}`,
		`{"ops":[{"ns":"v","key":"a","extra":1}]}`, `{"ops":{}}`, `{"ops":null}`, `{"ops":[null]}`, `[]`, `{`,
		`{"ops":[]} x`, `{"Ops":[{"Ns":"a","KEY":"b"}]}`, `{"ops":[{"ns":"a","ns":"b"}],"ops":[{}]}`,
		`{"ops":[{"ns":"a","key":"k\u0031"}]}`, "{\"ops\":[{\"ns\":\"\xff\",\"key\":\"ключ\"}]}",
	} {
		f.Add("application/json", []byte(body))
	}
	f.Add("text/plain", []byte(`{"ops":[{"ns":"a","key":"b"}]}`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		checkSameAsReference(t, ct, body)
	})
}

// benchBatchBody is a JSON batch of n ops as countbench sends them: ns
// "bench", keys k00000000.. drawn by Zipf over 1 M keys, by 1, and an id on
// one op in ten.
func benchBatchBody(n int) []byte {
	type op struct {
		NS  string `json:"ns"`
		Key string `json:"key"`
		By  int64  `json:"by"`
		ID  string `json:"id,omitempty"`
	}
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.1, 1, 999_999)
	ops := make([]op, n)
	for i := range ops {
		ops[i] = op{NS: "bench", Key: fmt.Sprintf("k%08d", zipf.Uint64()), By: 1}
		if r.IntN(10) == 0 {
			ops[i].ID = fmt.Sprintf("req-%016x", r.Uint64())
		}
	}
	body, err := json.Marshal(struct {
		Ops []op `json:"ops"`
	}{ops})
	if err != nil {
		panic(err)
	}
	return body
}

// BenchmarkDecodeBatchMsgpack decodes the batch of BenchmarkDecodeBatchJSON
// sent as msgpack, for comparison.
func BenchmarkDecodeBatchMsgpack(b *testing.B) {
	var batch struct {
		Ops []struct {
			NS  string `json:"ns" msgpack:"ns"`
			Key string `json:"key" msgpack:"key"`
			By  int64  `json:"by" msgpack:"by"`
			ID  string `json:"id,omitempty" msgpack:"id,omitempty"`
		} `json:"ops" msgpack:"ops"`
	}
	if err := json.Unmarshal(benchBatchBody(node.MaxBatchOps), &batch); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(batch); err != nil {
		b.Fatal(err)
	}
	body := buf.Bytes()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ops, _, err := decodeBatch("application/msgpack", body)
		if err != nil || len(ops) != node.MaxBatchOps {
			b.Fatalf("%d ops, %v", len(ops), err)
		}
	}
}

// BenchmarkDecodeBatchJSON decodes a 10,000-op JSON batch by decodeBatch
// (the fast path) and by the reference (encoding/json).
func BenchmarkDecodeBatchJSON(b *testing.B) {
	body := benchBatchBody(node.MaxBatchOps)
	for _, d := range []struct {
		name   string
		decode func(string, []byte) ([]node.BatchOp, string, error)
	}{{"fast", decodeBatch}, {"encoding_json", decodeBatchReference}} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				ops, _, err := d.decode("application/json", body)
				if err != nil || len(ops) != node.MaxBatchOps {
					b.Fatalf("%d ops, %v", len(ops), err)
				}
			}
		})
	}
}
