package httpapi

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestBatchBodiesReused: batch bodies are read into reused buffers
// (readBodyReused), so a body's bytes are overwritten by the next request
// once its ops are decoded. Concurrent batches through every decoder (the
// JSON and msgpack fast paths, and the general decoders that bodies with
// labels or an unusual shape go to) must each count exactly their own keys:
// an op that kept a reference into its body would count under another
// request's key.
func TestBatchBodiesReused(t *testing.T) {
	a := newTestAPI(t, nil)
	const clients, rounds = 4, 20
	kinds := batchBodyKinds()
	var wg sync.WaitGroup
	errs := make(chan error, clients*len(kinds))
	for k, kind := range kinds {
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				prefix := fmt.Sprintf("k%dc%d", k, c)
				body := kind.body(prefix)
				for range rounds {
					status, out := a.do("POST", "/v1/batch", kind.ct, body)
					if status != 200 || out["applied"] != float64(bodyOps) {
						errs <- fmt.Errorf("%s: status %d %v", kind.name, status, out)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k, kind := range kinds {
		for c := range clients {
			for i := range bodyOps {
				key := fmt.Sprintf("k%dc%d-%02d", k, c, i)
				if v := a.value("reuse", key); v != rounds {
					t.Fatalf("%s: reuse/%s is %d, want %d", kind.name, key, v, rounds)
				}
			}
		}
	}
}

// TestDecodedBatchOwnsItsStrings is what lets the batch handler hand its
// body back before applying the ops: with every decoder, the ops and the
// consistency stay the same when the body's bytes are overwritten.
func TestDecodedBatchOwnsItsStrings(t *testing.T) {
	for _, kind := range batchBodyKinds() {
		body := kind.body("owned")
		want, wantC, err := decodeBatch(kind.ct, bytes.Clone(body))
		if err != nil || len(want) != bodyOps {
			t.Fatalf("%s: %d ops, %v", kind.name, len(want), err)
		}
		got, gotC, err := decodeBatch(kind.ct, body)
		if err != nil {
			t.Fatal(err)
		}
		copy(body, bytes.Repeat([]byte{'x'}, len(body)))
		if !reflect.DeepEqual(got, want) || gotC != wantC {
			t.Fatalf("%s: the ops changed with the body: %+v", kind.name, got[:2])
		}
	}
}

const bodyOps = 50

// batchBodyKinds are batch bodies of bodyOps ops, each to key prefix-NN of
// namespace reuse, for every decoder of POST /v1/batch.
func batchBodyKinds() []struct {
	name, ct string
	body     func(prefix string) []byte
} {
	const ops = bodyOps
	return []struct {
		name, ct string
		body     func(prefix string) []byte
	}{
		{"json plain", "application/json", func(p string) []byte {
			var b strings.Builder
			b.WriteString(`{"ops":[`)
			for i := range ops {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"ns":"reuse","key":"%s-%02d","by":1}`, p, i)
			}
			b.WriteString(`]}`)
			return []byte(b.String())
		}},
		{"json general", "application/json", func(p string) []byte {
			var b strings.Builder
			b.WriteString(`{"consistency":"local", "ops":[`)
			for i := range ops {
				if i > 0 {
					b.WriteByte(',')
				}
				// An escape sends the body to encoding/json.
				fmt.Fprintf(&b, `{"by":1,"key":"%s\u002d%02d","ns":"reuse"}`, p, i)
			}
			b.WriteString(`]}`)
			return []byte(b.String())
		}},
		{"msgpack plain", "application/msgpack", func(p string) []byte {
			m := newMP().mapLen(1).str("ops").arrayLen(ops)
			for i := range ops {
				m.op("reuse", fmt.Sprintf("%s-%02d", p, i), 1)
			}
			return m.bytes()
		}},
		{"msgpack general", "application/msgpack", func(p string) []byte {
			m := newMP().mapLen(1).str("ops").arrayLen(ops)
			for i := range ops {
				// A key in bin form sends the body to the msgpack library.
				key := fmt.Sprintf("%s-%02d", p, i)
				m.mapLen(3).str("ns").str("reuse").str("key").raw(0xc4, byte(len(key))).raw([]byte(key)...).str("by").int(1)
			}
			return m.bytes()
		}},
	}
}
