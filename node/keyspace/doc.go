// Package keyspace is the node's key space and hot set.
//
// Key space: a counter is named by its namespace and key, joined into one
// composite key (Composite, Split). Everything the node derives from a
// user's counter (time buckets, label series, sketch cells, idempotency and
// rights records) is itself a PN-counter of the same namespace, under an
// internal key that starts with a control byte (the Kind constants). User
// keys never contain control characters, so the two spaces cannot collide,
// and every internal key sorts before every user key (FirstUserKey).
//
// Hot set: a Set holds recently used counters in memory, in lock stripes
// (Stripe), and reads the others through from the store. A counter and its
// idempotency and rights records share a stripe, so that one lock covers
// them and they reach the operation log together. The Set tracks which
// counters changed since the group committer's last Fill (dirty) and since
// the last checkpoint (unsaved); it implements store.Unsaved, and it evicts
// only counters Pebble holds. Scan merges Pebble's iterator with the counters
// Pebble does not hold yet, so that listings see every change without a
// checkpoint.
//
// Every Entry is guarded by the lock of the Stripe that holds it: methods
// whose doc says "the caller holds s" must be called with s locked.
package keyspace
