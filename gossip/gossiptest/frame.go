package gossiptest

import (
	"bytes"
	"encoding/binary"

	"github.com/vmihailenco/msgpack/v5"
)

// Frame returns one frame of the peer protocol as a peer writes it, for
// tests that speak to a peer listener byte by byte (an attacker's view): a
// 4-byte big-endian length, the type byte, and v as msgpack with structs
// as arrays (nil: no body).
func Frame(typ byte, v any) ([]byte, error) {
	var body bytes.Buffer
	body.WriteByte(typ)
	if v != nil {
		enc := msgpack.NewEncoder(&body)
		enc.UseArrayEncodedStructs(true)
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(body.Len())), body.Bytes()...), nil
}
