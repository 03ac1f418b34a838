package msgpackguard

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheck(t *testing.T) {
	type inner struct {
		A []string
		M map[string][]int
	}
	type outer struct {
		X  int64
		In []inner
	}
	ok, err := msgpack.Marshal(outer{X: -5, In: []inner{{A: []string{"a", "b"}, M: map[string][]int{"k": {1, 2, 3}}}}})
	if err != nil {
		t.Fatal(err)
	}
	deep := func(n int) []byte { return append(bytes.Repeat([]byte{0x91}, n), 0x01) }
	for _, tc := range []struct {
		name string
		b    []byte
		max  int
		want error
	}{
		{"a real message", ok, MaxDepth, nil},
		{"at the bound", deep(8), 8, nil},
		{"one past the bound", deep(9), 8, ErrTooDeep},
		{"8 MiB of nesting", deep(8 << 20), MaxDepth, ErrTooDeep},
		{"nesting inside a map value", append([]byte{0x81, 0xa2, 'z', 'z'}, deep(100)...), MaxDepth, ErrTooDeep},
		{"array32 nesting", bytes.Repeat([]byte{0xdd, 0, 0, 0, 1}, 40), MaxDepth, ErrTooDeep},
		{"siblings are not depth", bytes.Repeat([]byte{0x91, 0x01}, 1000), 2, nil},
		{"a wide flat array", append([]byte{0xdc, 0x03, 0xe8}, bytes.Repeat([]byte{0x01}, 1000)...), 1, nil},
		{"an array declaring more elements than bytes", []byte{0xdd, 0x7f, 0xff, 0xff, 0xff}, MaxDepth, ErrTruncated},
		{"a string declaring 808 MB in 5 bytes", []byte{0x92, 0xdb, 0x30, 0x30, 0x30, 0x30, 'x'}, MaxDepth, ErrTruncated},
		{"a length cut off by the end", []byte{0xda, 0x01}, MaxDepth, ErrTruncated},
		{"a map declaring 2^32 pairs", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0x01}, MaxDepth, ErrTruncated},
		{"a byte slice that fits exactly", []byte{0xc4, 0x03, 1, 2, 3}, MaxDepth, nil},
		{"strings are skipped, not parsed", append([]byte{0xd9, 100}, bytes.Repeat([]byte{0x91}, 100)...), 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Check(tc.b, tc.max); !errors.Is(err, tc.want) {
				t.Fatalf("CheckDepth = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzCheck: never panics, and what it lets through decodes without
// blowing the stack or allocating far beyond its size (the decoder may
// still refuse it).
func FuzzCheck(f *testing.F) {
	f.Add([]byte{0x81, 0xa2, 'z', 'z', 0x91, 0x91, 0x01})
	f.Add(bytes.Repeat([]byte{0x91}, 100))
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b, MaxDepth) != nil {
			return
		}
		var v any
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_ = msgpack.NewDecoder(bytes.NewReader(b)).Decode(&v)
		runtime.ReadMemStats(&after)
		// Generous: maps and interfaces cost more than their bytes.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(64*len(b))+1<<20 {
			t.Fatalf("decoding %d checked bytes allocated %d bytes", len(b), grew)
		}
	})
}
