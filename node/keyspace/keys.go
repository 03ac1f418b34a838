package keyspace

import "bytes"

// Internal counter kinds: the first byte of an internal key.
const (
	KindBucket = 0x01 // KindBucket, granularity, bucket start (8 bytes), series key
	KindSketch = 0x02 // KindSketch, ... (approximate namespaces)
	KindSeries = 0x03 // KindSeries, key, 0x00, labels
	KindID     = 0x04 // KindID, id, 0x00, key (idempotency records)
	KindRights = 0x05 // KindRights, receiver node id (8 bytes), key (bounds)

	// FirstUserKey is a bound below every user key and above every
	// internal one: user keys start with a byte >= 0x20.
	FirstUserKey = "\x1f"
)

// IsInternal reports whether key belongs to an internal counter.
func IsInternal(key string) bool { return len(key) > 0 && key[0] < 0x20 }

// Composite appends ns, 0x00 and key to buf; keys never contain control
// characters, so the separator is unambiguous.
func Composite(buf []byte, ns, key string) []byte {
	buf = append(buf, ns...)
	buf = append(buf, 0)
	return append(buf, key...)
}

// Split undoes Composite.
func Split(ck string) (ns, key string) {
	for i := 0; i < len(ck); i++ {
		if ck[i] == 0 {
			return ck[:i], ck[i+1:]
		}
	}
	return ck, ""
}

// anchor returns the part of a composite key that picks its stripe: the user
// key for a counter and for the counter's id and rights records, so that
// they share a lock; the whole key otherwise.
func anchor(ck []byte) []byte {
	i := bytes.IndexByte(ck, 0)
	if i < 0 || i+1 >= len(ck) {
		return ck
	}
	key := ck[i+1:]
	if key[0] == KindID {
		if j := bytes.IndexByte(key[1:], 0); j >= 0 {
			return key[j+2:]
		}
		return ck
	}
	if key[0] == KindRights && len(key) > 9 {
		return key[9:]
	}
	if key[0] < 0x20 {
		return ck
	}
	return key
}
