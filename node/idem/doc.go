// Package idem applies increment ids at most once (idempotent increments).
//
// An increment carrying an id leaves an id record beside the counter: an
// internal counter under keyspace.KindID, id, 0x00, key, in which the slot of every
// node that applied the increment holds P = zigzag(by)+1 (the body) and
// N = apply time in unix seconds << 1 | compensated. Id records replicate
// and merge like any counter (per-slot max), which makes the set of appliers
// a grow-only set: union by merge.
//
// A retry that reaches a node which holds the record (its own, or one
// replicated from the first node) is answered as a duplicate and changes
// nothing; with a different by it is 409. A retry that reaches a node before
// the first attempt's record does is applied there too; once the records
// meet, every applier but the one with the smallest node id compensates with
// -by on its own slot, exactly once (the compensated bit). So the value is
// exact once the nodes have exchanged the records, and over-counts by the
// duplicated increments only until then (about the convergence time, or a
// partition's length).
//
// A counter and its id records hash to the same lock stripe (keyspace.Set.StripeOf), so
// they change under one lock and go into the same operation-log record: a
// crash can never keep the increment and lose its id, or the reverse.
//
// Id records expire idempotency_window after the last apply: the expiry pass
// deletes them and a replicated copy that old is dropped on arrival.
//
// The package owns the id record layout (Key, ParseKey, Read), the locks
// that serialise one id's writes and the cross-key check (IDs.LockBatch),
// recording an application (IDs.SetLocked), the take-back
// (IDs.CompensateLocked) and expiry (IDs.Expired, IDs.Expire). The write
// path that decides which ops of a batch are duplicates stays in package
// node, which this package does not import.
package idem
