package node

// Internal counters. Everything the node derives from a user's counter (time
// buckets, label series, sketch cells, idempotency records) is itself a
// PN-counter stored, replicated and repaired exactly like a user's counter,
// under a key of the same namespace that starts with a control byte. User
// keys never contain control characters (ValidateKey), so the two spaces
// cannot collide, and every internal key sorts before every user key: a
// listing starts after them, and a granularity's buckets are one contiguous
// key range that retention drops with a single range delete.
const (
	kindBucket = 0x01 // kindBucket, granularity, bucket start (8 bytes), series key
	kindSketch = 0x02 // kindSketch, ... (approximate namespaces)
	kindSeries = 0x03 // kindSeries, key, 0x00, labels (see seriesKey)
	kindID     = 0x04 // kindID, id, 0x00, key (idempotency records)
	kindRights = 0x05 // kindRights, receiver node id (8 bytes), key (bounds.go)

	// firstUserKey is a bound below every user key and above every
	// internal one: user keys start with a byte >= 0x20.
	firstUserKey = "\x1f"
)

// isInternalKey reports whether key belongs to an internal counter.
func isInternalKey(key string) bool { return len(key) > 0 && key[0] < 0x20 }

// validReplicatedKey checks a key that arrived from a peer: a user key, or
// an internal one of a known kind.
func validReplicatedKey(key string) error {
	if isInternalKey(key) {
		if len(key) < 2 || key[0] > kindRights || len(key) > 4*MaxKeyBytes {
			return ErrInvalidArgument
		}
		return nil
	}
	return ValidateKey(key)
}
