package store

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Key spaces. Every key starts with one byte naming its kind, so that a kind
// is one contiguous range of the LSM and new kinds can be added without
// touching the existing ones. Time buckets, label series and idempotency
// records are counters of the 'c' space under internal keys (package
// node/keyspace); other bytes are free.
const (
	// spaceCounter: 'c' ns 0x00 key -> encoded crdt.Counter.
	spaceCounter byte = 'c'
	// spaceNamespace: 'n' ns -> msgpack namespace config (owned by package node).
	spaceNamespace byte = 'n'
	// spaceMeta: 'm' name -> msgpack value (node identity, sequence numbers...).
	spaceMeta byte = 'm'
	// spaceIndex: 'a' origin(8, big endian) seq(8, big endian) -> ns 0x00 key:
	// the anti-entropy index, written by checkpoints.
	spaceIndex byte = 'a'
)

// appendIndexKey appends 'a' origin seq to dst.
func appendIndexKey(dst []byte, origin uint64, seq uint64) []byte {
	dst = append(dst, spaceIndex)
	dst = binary.BigEndian.AppendUint64(dst, origin)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// sep ends the namespace inside a counter key. Namespace names never hold
// it (docs/api.md allows [a-z0-9_.-] only) and checkNamespace makes sure.
const sep = 0x00

// checkNamespace refuses namespace names that would make the key layout
// ambiguous. Full validation of names is the HTTP layer's job; the store
// only guards its own invariant.
func checkNamespace(ns string) error {
	if ns == "" {
		return fmt.Errorf("%w: empty namespace", ErrInvalidName)
	}
	if strings.IndexByte(ns, sep) >= 0 {
		return fmt.Errorf("%w: namespace %q holds a NUL byte", ErrInvalidName, ns)
	}
	return nil
}

// appendCounterKey appends 'c' ns 0x00 key to dst.
func appendCounterKey(dst []byte, ns, key string) []byte {
	dst = append(dst, spaceCounter)
	dst = append(dst, ns...)
	dst = append(dst, sep)
	return append(dst, key...)
}

// appendNamespaceKey appends 'n' ns to dst.
func appendNamespaceKey(dst []byte, ns string) []byte {
	dst = append(dst, spaceNamespace)
	return append(dst, ns...)
}

// appendMetaKey appends 'm' name to dst.
func appendMetaKey(dst []byte, name string) []byte {
	dst = append(dst, spaceMeta)
	return append(dst, name...)
}

// prefixEnd returns the smallest key greater than every key starting with
// p, or nil when there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
