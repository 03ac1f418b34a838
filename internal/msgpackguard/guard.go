package msgpackguard

import (
	"errors"
	"fmt"
)

// ErrTooDeep is returned for input nested deeper than the bound.
var ErrTooDeep = errors.New("msgpack: nested too deeply")

// ErrTruncated is returned for a declared length the input does not hold.
var ErrTruncated = errors.New("msgpack: a declared length runs past the end of the input")

// MaxDepth is the nesting countmesh's own messages stay far below.
const MaxDepth = 32

// Check returns ErrTooDeep when b nests arrays and maps deeper than max,
// and ErrTruncated when a string, byte slice, extension or container
// declares more than the rest of b could hold. Other malformed input
// passes and is left to the decoder, which reports it.
func Check(b []byte, max int) error {
	// remaining[i] is how many values the i-th open container still holds.
	var remaining []uint64
	i := 0
	for i < len(b) {
		// A value starts: it fills one slot of the innermost container.
		for len(remaining) > 0 && remaining[len(remaining)-1] == 0 {
			remaining = remaining[:len(remaining)-1]
		}
		if len(remaining) > 0 {
			remaining[len(remaining)-1]--
		}
		c := b[i]
		i++
		var n uint64 // elements of a container that starts here
		container := false
		switch {
		case c <= 0x7f, c >= 0xe0: // fixint
		case c >= 0x80 && c <= 0x8f: // fixmap
			n, container = 2*uint64(c&0x0f), true
		case c >= 0x90 && c <= 0x9f: // fixarray
			n, container = uint64(c&0x0f), true
		case c >= 0xa0 && c <= 0xbf: // fixstr
			i += int(c & 0x1f)
		case c == 0xc0, c == 0xc2, c == 0xc3: // nil, false, true
		case c == 0xc4, c == 0xd9: // bin8, str8
			i += 1 + int(at(b, i, 1))
		case c == 0xc5, c == 0xda: // bin16, str16
			i += 2 + int(at(b, i, 2))
		case c == 0xc6, c == 0xdb: // bin32, str32
			i += 4 + int(at(b, i, 4))
		case c == 0xc7: // ext8
			i += 2 + int(at(b, i, 1))
		case c == 0xc8: // ext16
			i += 3 + int(at(b, i, 2))
		case c == 0xc9: // ext32
			i += 5 + int(at(b, i, 4))
		case c == 0xca, c == 0xce, c == 0xd2: // float32, uint32, int32
			i += 4
		case c == 0xcb, c == 0xcf, c == 0xd3: // float64, uint64, int64
			i += 8
		case c == 0xcc, c == 0xd0: // uint8, int8
			i++
		case c == 0xcd, c == 0xd1: // uint16, int16
			i += 2
		case c == 0xd4: // fixext1
			i += 2
		case c == 0xd5:
			i += 3
		case c == 0xd6:
			i += 5
		case c == 0xd7:
			i += 9
		case c == 0xd8:
			i += 17
		case c == 0xdc: // array16
			n, container = at(b, i, 2), true
			i += 2
		case c == 0xdd: // array32
			n, container = at(b, i, 4), true
			i += 4
		case c == 0xde: // map16
			n, container = 2*at(b, i, 2), true
			i += 2
		case c == 0xdf: // map32
			n, container = 2*at(b, i, 4), true
			i += 4
		default: // 0xc1, never used: the decoder refuses it
		}
		if i > len(b) {
			return fmt.Errorf("%w: at byte %d", ErrTruncated, i)
		}
		// Every element takes at least one byte.
		if container && n > uint64(len(b)-i) {
			return fmt.Errorf("%w: %d elements declared with %d bytes left", ErrTruncated, n, len(b)-i)
		}
		if container && n > 0 {
			remaining = append(remaining, n)
			if len(remaining) > max {
				return fmt.Errorf("%w: more than %d levels", ErrTooDeep, max)
			}
		}
	}
	return nil
}

// at reads a big-endian length of size bytes at b[i:] (past the end, a
// length that no input holds).
func at(b []byte, i, size int) uint64 {
	if i+size > len(b) {
		return 1 << 40
	}
	var v uint64
	for _, x := range b[i : i+size] {
		v = v<<8 | uint64(x)
	}
	return v
}
