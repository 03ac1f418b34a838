package gossip

import (
	"testing"

	"github.com/countmesh/countmesh/gossip/transport"
)

// FuzzNodeMeta decodes a member's memberlist meta, which any process that
// can gossip sends: no panic, and what decodes re-encodes to the same.
func FuzzNodeMeta(f *testing.F) {
	good, _ := transport.Marshal(&nodeMeta{Version: metaVersion, Region: "eu", HTTPAddr: "10.0.0.1:7070", ReplAddr: "10.0.0.1:7947"})
	f.Add(good)
	f.Add([]byte{0x95, 0x01, 0xdb, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := decodeMeta(data)
		if err != nil {
			return
		}
		again, err := transport.Marshal(&md)
		if err != nil {
			t.Fatal(err)
		}
		md2, err := decodeMeta(again)
		if err != nil || md2 != md {
			t.Fatalf("meta %+v re-decodes as %+v, %v", md, md2, err)
		}
	})
}
