// Package oplog is the store's operation log: append-only segment files beside
// Pebble that each group commit appends one record to.
//
// Pebble inserts every key of a batch into its memtable skiplist, which
// costs about a microsecond a key once the memtable is large; at a million
// increments a second that alone would fill a core. So the write path does
// not write counters to Pebble one by one. Each group commit appends ONE
// record (every counter changed since the previous commit, coalesced) to an
// append-only log of segment files beside Pebble, and fsyncs it; a
// checkpoint later writes the coalesced counters to Pebble in the
// background and drops the log segments it covers.
//
// Files: <dir>/oplog/<segment number, 20 digits>.log. A record is
//
//	length (4 bytes, little endian) | CRC-32C of payload (4 bytes) | payload
//
// Segments are only ever appended to by one Store; a new Store replays the
// existing ones (Store.ReplayLog), then writes to a new segment. A torn or
// corrupt record at the end of the last segment is the trace of a crash (or
// a failed write, such as one that found the disk full) in the middle of an
// Append that was never acknowledged: it ends the replay, and the replay
// cuts it off the segment (rewriting the good prefix and renaming it into
// place) before any later segment exists, so that it never ends up in the
// middle of the log. A bad record anywhere else is corruption and fails the
// replay.
//
// A failed write or fsync breaks the log for good: every later append,
// Sync and rotation returns that error, and close does not fsync again.
// Retrying an fsync is unsafe: after a failed fsync Linux may have dropped
// the dirty pages, so a second fsync can succeed without writing them.
package oplog
