package batchjson

import (
	"unicode/utf8"

	"github.com/countmesh/countmesh/node"
)

// Decode decodes body, a JSON batch of POST /v1/batch, when it is of the
// plain shape that clients send:
//
//	{"ops":[{"ns":"bench","key":"k1","by":1,"id":"x"},...],"consistency":"local"}
//
// with fields spelled exactly so, each at most once, in any order; strings
// of valid UTF-8 without escapes; "by" an integer in int64 (absent means
// 1); at most maxOps ops; and nothing but JSON whitespace around.
//
// ok is false for any other body, valid or not (null, escapes, another
// spelling of a field name, a float, a duplicate field, an error, ...):
// the caller then decodes it with encoding/json, whose answer and error
// are the ones of record. Where ok is true the answer is the one
// encoding/json gives (FuzzDecodeBatchJSON checks this).
//
// An accepted body gives a non-nil ops (empty when "ops" is absent or
// empty). Every string is a new allocation, as with encoding/json, so that
// nothing holds on to body; an op's namespace equal to the previous op's
// shares its string.
func Decode(body []byte, maxOps int) (ops []node.BatchOp, consistency string, ok bool) {
	p := parser{b: body}
	p.space()
	if !p.eat('{') {
		return nil, "", false
	}
	var seenOps, seenConsistency bool
	p.space()
	if !p.eat('}') {
		for {
			p.space()
			name, ok := p.rawString()
			if !ok {
				return nil, "", false
			}
			p.space()
			if !p.eat(':') {
				return nil, "", false
			}
			p.space()
			switch string(name) {
			case "ops":
				if seenOps {
					return nil, "", false
				}
				seenOps = true
				if ops, ok = p.ops(maxOps); !ok {
					return nil, "", false
				}
			case "consistency":
				if seenConsistency {
					return nil, "", false
				}
				seenConsistency = true
				raw, ok := p.rawString()
				if !ok {
					return nil, "", false
				}
				consistency = string(raw)
			default:
				return nil, "", false
			}
			p.space()
			if p.eat(',') {
				continue
			}
			if p.eat('}') {
				break
			}
			return nil, "", false
		}
	}
	p.space()
	if p.i != len(p.b) {
		return nil, "", false
	}
	if ops == nil {
		ops = []node.BatchOp{}
	}
	return ops, consistency, true
}

// parser reads b from offset i; its methods return false (and may leave i
// anywhere) when the input is outside the plain shape.
type parser struct {
	b []byte
	i int
	// lastNS is the previous op's namespace, shared by the next op that
	// names the same one.
	lastNS string
}

// space skips JSON whitespace (what encoding/json skips: not \v, \f or
// Unicode spaces).
func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// plain marks the bytes that stand for themselves in a JSON string: not
// the quote, the backslash, control characters, nor bytes of multi-byte
// UTF-8 sequences (checked apart).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// rawString reads a JSON string without escapes and of valid UTF-8, and
// returns its contents, a part of b.
func (p *parser) rawString() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		if plain[c] {
			p.i++
			continue
		}
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		}
		if c < 0x80 { // a backslash or a control character
			return nil, false
		}
		ascii = false
		p.i++
	}
	return nil, false
}

// int64 reads a JSON number that is an integer in int64: -?(0|[1-9][0-9]*)
// not followed by a fraction or an exponent.
func (p *parser) int64() (int64, bool) {
	neg := p.eat('-')
	start := p.i
	var u uint64
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c < '0' || c > '9' {
			break
		}
		u = u*10 + uint64(c-'0')
		p.i++
		if p.i-start > 19 {
			return 0, false
		}
	}
	switch n := p.i - start; {
	case n == 0:
		return 0, false
	case n > 1 && p.b[start] == '0':
		return 0, false
	}
	if p.i < len(p.b) {
		if c := p.b[p.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	// 19 digits fit in a uint64 without wrapping; int64 holds up to
	// 1<<63-1, and -1<<63 when negative.
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// ops reads the array of ops, of at most maxOps.
func (p *parser) ops(maxOps int) ([]node.BatchOp, bool) {
	if !p.eat('[') {
		return nil, false
	}
	// A plain op takes 30 bytes or more ({"ns":"a","key":"b","by":1},
	// less with fields left out): a guess of the count that is seldom far
	// under, so that the slice is seldom grown.
	ops := make([]node.BatchOp, 0, min(maxOps, (len(p.b)-p.i)/32+1))
	p.space()
	if p.eat(']') {
		return ops, true
	}
	for {
		if len(ops) == maxOps {
			return nil, false
		}
		ops = append(ops, node.BatchOp{})
		p.space()
		if !p.op(&ops[len(ops)-1]) {
			return nil, false
		}
		p.space()
		if p.eat(',') {
			continue
		}
		if p.eat(']') {
			return ops, true
		}
		return nil, false
	}
}

// op reads one op into op, a zero one.
func (p *parser) op(op *node.BatchOp) bool {
	if !p.eat('{') {
		return false
	}
	op.By = 1
	p.space()
	if p.eat('}') {
		return true
	}
	var seen uint8
	for {
		p.space()
		name, ok := p.rawString()
		if !ok {
			return false
		}
		p.space()
		if !p.eat(':') {
			return false
		}
		p.space()
		var bit uint8
		switch string(name) {
		case "ns":
			bit = 1
			var raw []byte
			if raw, ok = p.rawString(); ok {
				if string(raw) != p.lastNS {
					p.lastNS = string(raw)
				}
				op.NS = p.lastNS
			}
		case "key":
			bit = 2
			var raw []byte
			if raw, ok = p.rawString(); ok {
				op.Key = string(raw)
			}
		case "by":
			bit = 4
			op.By, ok = p.int64()
		case "id":
			bit = 8
			var raw []byte
			if raw, ok = p.rawString(); ok {
				op.ID = string(raw)
			}
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		p.space()
		if p.eat(',') {
			continue
		}
		return p.eat('}')
	}
}
