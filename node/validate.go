package node

import (
	"fmt"
	"github.com/countmesh/countmesh/node/keyspace"
	"unicode/utf8"
)

// MaxKeyBytes is the longest counter key accepted.
const MaxKeyBytes = 512

// MaxBy bounds the magnitude of one increment: |by| < 2^53, so that every
// value a JSON client can send is represented exactly.
const MaxBy = 1<<53 - 1

// ValidateNamespace checks a namespace name against [a-z0-9][a-z0-9_.-]{0,63}.
func ValidateNamespace(ns string) error {
	if len(ns) == 0 || len(ns) > 64 {
		return fmt.Errorf("%w: namespace %q must be 1 to 64 characters of [a-z0-9_.-], starting with a letter or digit", ErrInvalidArgument, ns)
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '.' || c == '-'))
		if !ok {
			return fmt.Errorf("%w: namespace %q must be 1 to 64 characters of [a-z0-9_.-], starting with a letter or digit", ErrInvalidArgument, ns)
		}
	}
	return nil
}

// ValidateKey checks a counter key: 1 to 512 bytes of UTF-8 without control
// characters.
func ValidateKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: key must be 1 to %d bytes, got %d", ErrInvalidArgument, MaxKeyBytes, len(key))
	}
	// Most keys are printable ASCII: one pass over the bytes decides them
	// (batch ingest validates 10,000 keys a request).
	i := 0
	for i < len(key) && key[i] >= 0x20 && key[i] < 0x7f {
		i++
	}
	if i == len(key) {
		return nil
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: key must be valid UTF-8", ErrInvalidArgument)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: key must not contain control characters (found U+%04X)", ErrInvalidArgument, r)
		}
	}
	return nil
}

// ValidateBy checks an increment amount: |by| < 2^53.
func ValidateBy(by int64) error {
	if by > MaxBy || by < -MaxBy {
		return fmt.Errorf("%w: by must satisfy |by| < 2^53, got %d", ErrInvalidArgument, by)
	}
	return nil
}

// validReplicatedKey checks a key that arrived from a peer: a user key, or
// an internal one of a known kind.
func validReplicatedKey(key string) error {
	if keyspace.IsInternal(key) {
		if len(key) < 2 || key[0] > keyspace.KindRights || len(key) > 4*MaxKeyBytes {
			return ErrInvalidArgument
		}
		return nil
	}
	return ValidateKey(key)
}
