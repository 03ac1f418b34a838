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
// # Write ahead
//
// An fdatasync after an append that grows a file must also commit the
// file's new size to the file system's journal; one after an append that
// overwrites bytes already written and synced need not. On this project's
// ext4 disk an append of 200 bytes and its fsync took 0.15 ms and 54-66 µs
// of CPU the second way against 0.20-0.21 ms and 101 µs the first
// (BenchmarkAppendSync; docs/benchmarks.md, "The operation log zeroed
// ahead"), and every sync increment waits for that fsync. So a new segment is first zeroed and synced for room of its own,
// and appends overwrite the zeros: from MinWriteAhead (256 KiB) up to the
// store's LogWriteAhead (16 MiB by default), twice what the segment before
// it took. Once a segment is half full the next one is zeroed in the
// background, and the first record that does not fit goes to it (after an
// fsync of the full one, so that no record of a later segment reaches the
// disk without every earlier one); if it is not ready yet, appends go past
// the room and the file grows, as without zeroing. A rotation takes the
// segment zeroed ahead, or zeroes one itself. The room costs disk: that of
// the segment appended to and of the next one, and, until a checkpoint
// drops it, what the segment before a rotation left unused; at most 16 MiB
// each by default. Close removes a segment zeroed and never used.
//
// No record is empty, so a zero header marks where a segment's records
// end; only zeros may follow it. Zeros followed by written bytes are what a
// crash leaves when the bytes of an append that never reached the disk were
// written out of order: a torn tail if nothing after them holds a record,
// else corruption. A segment that holds only zeros holds nothing (one
// zeroed just before a crash), so the segment before it may still end in a
// torn record. A log of segments that grow replays the same way.
//
// Segments are only ever appended to by one Store; a new Store replays the
// existing ones (Store.ReplayLog), then writes to a new segment. A torn or
// corrupt record at the end of the last segment is the trace of a crash (or
// a failed write, such as one that found the disk full) in the middle of an
// Append that was never acknowledged: it ends the replay, and the replay
// cuts it off the segment (rewriting the good prefix and renaming it into
// place) before any later segment holds a record, so that it never ends up
// in the middle of the log. A bad record anywhere else is corruption and fails the
// replay.
//
// A failed write or fsync breaks the log for good: every later append,
// Sync and rotation returns that error, and close does not fsync again.
// Retrying an fsync is unsafe: after a failed fsync Linux may have dropped
// the dirty pages, so a second fsync can succeed without writing them.
package oplog
