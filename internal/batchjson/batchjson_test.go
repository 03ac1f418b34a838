package batchjson

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/countmesh/countmesh/node"
)

// maxOps is the bound the tests use: small, so that the fuzzer reaches it.
const maxOps = 5

// reference decodes body as httpapi did before the fast path, with
// encoding/json (unknown fields refused, nothing after the value, an
// empty body is an empty batch, at most maxOps ops); ok is false where it
// refuses the body.
func reference(body []byte, maxOps int) (ops []node.BatchOp, consistency string, ok bool) {
	var b struct {
		Ops []struct {
			NS  string `json:"ns"`
			Key string `json:"key"`
			By  *int64 `json:"by"`
			ID  string `json:"id"`
		} `json:"ops"`
		Consistency string `json:"consistency"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			return nil, "", false
		}
		if dec.More() {
			return nil, "", false
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, "", false
		}
	}
	if len(b.Ops) > maxOps {
		return nil, "", false
	}
	ops = make([]node.BatchOp, len(b.Ops))
	for i, op := range b.Ops {
		ops[i] = node.BatchOp{NS: op.NS, Key: op.Key, By: 1, ID: op.ID}
		if op.By != nil {
			ops[i].By = *op.By
		}
	}
	return ops, b.Consistency, true
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		body        string
		ok          bool
		ops         []node.BatchOp
		consistency string
	}{
		{body: `{}`, ok: true, ops: []node.BatchOp{}},
		{body: ` {"ops":[]} `, ok: true, ops: []node.BatchOp{}},
		{body: `{"ops":[{}]}`, ok: true, ops: []node.BatchOp{{By: 1}}},
		{body: `{"consistency":"all","ops":[{"ns":"a","key":"k","by":-7,"id":"i"},{"key":"l","ns":"a"}]}`, ok: true,
			ops: []node.BatchOp{{NS: "a", Key: "k", By: -7, ID: "i"}, {NS: "a", Key: "l", By: 1}}, consistency: "all"},
		{body: `{"ops":[{"by":9223372036854775807},{"by":-9223372036854775808},{"by":-0}]}`, ok: true,
			ops: []node.BatchOp{{By: 1<<63 - 1}, {By: -1 << 63}, {By: 0}}},
		{body: `{"ops":[{"ns":"é","key":"😀"}]}`, ok: true, ops: []node.BatchOp{{NS: "é", Key: "😀", By: 1}}},
		{body: `{"ops":[{},{},{},{},{}]}`, ok: true, ops: []node.BatchOp{{By: 1}, {By: 1}, {By: 1}, {By: 1}, {By: 1}}},
		// Left to encoding/json.
		{body: `{"ops":[{},{},{},{},{},{}]}`}, // over maxOps
		{body: ``},
		{body: `null`},
		{body: `{"ops":null}`},
		{body: `{"ops":[null]}`},
		{body: `{"ops":[{"by":null}]}`},
		{body: `{"ops":[{"ns":null}]}`},
		{body: `{"consistency":null}`},
		{body: `{"Ops":[]}`},
		{body: `{"ops":[{"NS":"a"}]}`},
		{body: `{"ops":[{"ns":"a\u0062"}]}`},
		{body: `{"ops":[{"ns":"a","ns":"b"}]}`},
		{body: `{"ops":[],"ops":[]}`},
		{body: `{"consistency":"a","consistency":"b"}`},
		{body: `{"ops":[{"by":1.0}]}`},
		{body: `{"ops":[{"by":1e2}]}`},
		{body: `{"ops":[{"by":9223372036854775808}]}`},
		{body: `{"ops":[{"by":-9223372036854775809}]}`},
		{body: `{"ops":[{"by":12345678901234567890}]}`},
		{body: `{"ops":[{"by":01}]}`},
		{body: `{"ops":[{"by":-}]}`},
		{body: "{\"ops\":[{\"key\":\"\xff\"}]}"},
		{body: "{\"ops\":[{\"key\":\"\x1f\"}]}"},
		{body: `{"ops":[]}x`},
		{body: `{"ops":[]}{}`},
		{body: "{\"ops\":[]}\v"},
		{body: `{"ops":[{},]}`},
		{body: `{"ops":[{"x":1}]}`},
		{body: `{"ops":[{"ns":"a"`},
	} {
		ops, consistency, ok := Decode([]byte(tc.body), maxOps)
		if ok != tc.ok || !reflect.DeepEqual(ops, tc.ops) || consistency != tc.consistency {
			t.Errorf("Decode(%q) = %+v, %q, %v; want %+v, %q, %v", tc.body, ops, consistency, ok, tc.ops, tc.consistency, tc.ok)
		}
	}
}

// TestDecodeSharesNamespaces checks that ops naming the namespace of the
// op before them share its string, and that it is not a part of the body.
func TestDecodeSharesNamespaces(t *testing.T) {
	body := []byte(`{"ops":[{"ns":"bench","key":"a"},{"ns":"bench","key":"b"},{"ns":"other","key":"c"}]}`)
	ops, _, ok := Decode(body, maxOps)
	if !ok {
		t.Fatal("not decoded")
	}
	if ops[0].NS != "bench" || ops[2].NS != "other" {
		t.Fatalf("ops %+v", ops)
	}
	if unsafe.StringData(ops[0].NS) != unsafe.StringData(ops[1].NS) {
		t.Fatal("two ops of one namespace have a string each")
	}
	copy(body, strings.Repeat("x", len(body)))
	if ops[0].NS != "bench" || ops[1].NS != "bench" || ops[0].Key != "a" || ops[2].Key != "c" {
		t.Fatalf("the ops changed with the body: %+v", ops)
	}
}

// FuzzDecodeBatchJSON checks the fast path against encoding/json: a body
// it decodes, encoding/json decodes the same; and a batch of its plain
// shape (encoding/json's answer written back without escapes) it decodes.
func FuzzDecodeBatchJSON(f *testing.F) {
	for _, body := range []string{
		``, `{}`, `{"ops":[]}`, `{"ops":[{"ns":"v","key":"a"},{"ns":"v","key":"b","by":5,"id":"x"}],"consistency":"local"}`,
		`{"ops":[{"ns":"v","key":"a","by":1.5}]}`, `{"ops":[{"ns":"v","key":"a","by":-9223372036854775808}]}`,
		`{"ops":[{"ns":"v","key":"a","extra":1}]}`, `{"ops":{}}`, `{"ops":null}`, `{"ops":[null]}`, `[]`, `{`,
		`{"ops":[]} x`, `{"Ops":[{"Ns":"a","KEY":"b"}]}`, `{"ops":[{"ns":"a","ns":"b"}],"ops":[{}]}`,
		`{"ops":[{"ns":"a","key":"k\u0031"}]}`, "{\"ops\":[{\"ns\":\"\xff\",\"key\":\"ключ\"}]}",
		`{"ops":[{},{},{},{},{},{}]}`, `{"ops":[{"by":-0},{"by":01}]}`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, consistency, ok := Decode(body, maxOps)
		wantOps, wantConsistency, wantOK := reference(body, maxOps)
		if ok {
			if !wantOK {
				t.Fatalf("Decode(%q) accepts what encoding/json refuses: %+v %q", body, ops, consistency)
			}
			if !reflect.DeepEqual(ops, wantOps) || consistency != wantConsistency {
				t.Fatalf("Decode(%q) = %+v %q; encoding/json %+v %q", body, ops, consistency, wantOps, wantConsistency)
			}
		}
		if !wantOK {
			return
		}
		// The same batch in the plain shape goes by the fast path.
		plain, escaped := plainBody(wantOps, wantConsistency)
		if escaped {
			return
		}
		ops, consistency, ok = Decode(plain, maxOps)
		if !ok || !reflect.DeepEqual(ops, wantOps) || consistency != wantConsistency {
			t.Fatalf("Decode(%q) = %+v %q %v; want %+v %q", plain, ops, consistency, ok, wantOps, wantConsistency)
		}
	})
}

// plainBody writes ops and consistency as a client does; escaped says
// that a string needed an escape (the fast path leaves those out).
func plainBody(ops []node.BatchOp, consistency string) ([]byte, bool) {
	type op struct {
		NS  string `json:"ns"`
		Key string `json:"key"`
		By  int64  `json:"by"`
		ID  string `json:"id,omitempty"`
	}
	b := struct {
		Ops         []op   `json:"ops"`
		Consistency string `json:"consistency,omitempty"`
	}{Ops: make([]op, len(ops)), Consistency: consistency}
	for i, o := range ops {
		b.Ops[i] = op(o)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		panic(err)
	}
	return buf.Bytes(), bytes.IndexByte(buf.Bytes(), '\\') >= 0
}
