package node

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FuzzImport: whatever an import stream holds, Import refuses it with
// ErrInvalidArgument or applies it; it never panics, and the node still
// serves afterwards.
func FuzzImport(f *testing.F) {
	src := openTest(f, testConfig(f, vfs.NewMem()))
	ctx := context.Background()
	if _, err := src.Incr(ctx, "ns", "k", 3, WriteOptions{ID: "x"}); err != nil {
		f.Fatal(err)
	}
	var good bytes.Buffer
	if _, err := src.Export(ctx, ExportOptions{}, &good); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte(`{"type":"header","format":1}` + "\n" + `{"type":"counter","ns":"ns","key":"k","slots":[{"node":"1","p":18446744073709551615,"n":0}]}` + "\n"))
	f.Add([]byte(`{"type":"counter","ns":"ns","key":"k","reset":{"epoch":18446744073709551615,"node":"1","value":0}}`))
	f.Add([]byte("\n\n{}\n"))
	dst := openTest(f, testConfig(f, vfs.NewMem()))
	f.Fuzz(func(t *testing.T, stream []byte) {
		_, err := dst.Import(ctx, bytes.NewReader(stream), ImportOptions{})
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("import refused with %v, want ErrInvalidArgument", err)
		}
		if _, err := dst.Get(ctx, "ns", "k", ReadOptions{}); err != nil && !errors.Is(err, ErrOverflow) {
			t.Fatalf("the node does not serve after an import: %v", err)
		}
	})
}
