// Package store is countmesh's durable state: counters (crdt.Counter),
// namespace configs and node metadata in one Pebble database, behind a small
// API. Package node (its keyspace) owns the hot set in memory and decides
// what to write; this package decides how it is laid out, encoded, committed,
// checkpointed and recovered.
//
// # Use
//
// Open a Store with a Config (DefaultConfig, then set Dir). Write through a
// Batch (PutCounter, DeleteCounter, PutNamespace, PutMeta, then Commit):
// a batch is atomic, and Commit(true) returns after the WAL holding it is
// fsynced. Read with GetCounter, ScanCounters, GetNamespace, ListNamespaces
// and GetMeta. Close is idempotent. Every method is safe for concurrent use,
// except that one Batch belongs to one goroutine.
//
// The write path of a node goes through a Committer (the group committer,
// below) rather than through Batch.Commit directly: each group commit
// appends one record to the operation log (store/internal/oplog), and a
// Checkpointer later writes the counters those records changed to Pebble.
//
// # Guarantees
//
//   - Reads see every committed batch, completely or not at all.
//   - A batch committed with sync, or a Ticket that completed without
//     error, survives a crash (power loss included: only fsynced data is
//     relied upon). The crash tests check acknowledged <= recovered <=
//     attempted for every counter, on Pebble's crashable file system.
//   - Recovery reads no more than it must: Open lets Pebble replay its own
//     WAL, and Recover replays the operation log written since the last
//     checkpoint (at most one checkpoint interval of changes) into the
//     caller's hot set, with the version vector it covers. Nothing else is
//     scanned, so start-up time does not grow with the number of counters.
//   - Nothing is half applied: a batch with an invalid name commits nothing.
//
// # Key layout
//
// One leading byte names the kind of key, so that each kind is a contiguous
// key range and kinds can be added without touching the others:
//
//	'c' ns 0x00 key   counter          -> encoded record: crdt.Counter, time of
//	                                      the last change, (origin, seq) per slot
//	'n' ns            namespace config -> msgpack, the caller's type
//	'm' name          node metadata    -> msgpack (the checkpoint's version vector)
//	'a' origin seq    (origin, seq) index -> ns 0x00 key, for anti-entropy
//
// Time-window buckets, label series, sketch cells and idempotency and rights
// records are counters too, under internal keys of the 'c' space that start
// with a control byte (package node/keyspace).
//
// Namespace names never hold 0x00 (docs/api.md allows [a-z0-9_.-]); the
// store refuses one that does, with ErrInvalidName. Counter keys are stored
// as given, so ScanCounters lists in byte order and a prefix scan is one
// range read.
//
// # Counter encoding
//
// A counter is a msgpack array of unsigned integers in their shortest form,
// led by a format version (see counterFormatV1):
//
//	[1, [node, p, n, ...]]                                  without reset
//	[1, [node, p, n, ...], [epoch, node, value, deleted, [floor...]]]
//
// A node id is a 64-bit hash, so it takes 9 bytes; a one-slot counter with
// totals below 128 takes 14 bytes (below 65536: at most 16), three slots
// about 40. With its key ('c' + namespace + 0x00 + key) a one-slot counter
// under a 13-byte key in a 9-byte namespace is 39 bytes of key and value
// before Pebble's prefix and block compression; measured on disk after a flush (TestDiskBytesPerCounter):
// about 18 bytes per one-slot counter under a 13-byte key sharing prefixes,
// about 41 bytes per three-slot counter under a random 21-byte key. Encoding
// uses no reflection and allocates nothing (about 50 ns for one slot;
// BenchmarkEncodeCounter). Decoders skip fields appended to the outer or the
// reset array, so fields can be added within version 1.
//
// # Checkpoints
//
// A Checkpointer (NewCheckpointer) writes the counters an Unsaved (the hot
// set) changed since the last checkpoint to Pebble, with their (origin, seq)
// index entries and the version vector, in one synced batch, then drops the
// log segments that state covers. It runs every CheckpointConfig.Interval, or
// sooner when the log grows past LogBytes or the caller kicks it.
//
// The hot set hands counters out in the order of its hash stripes; a
// checkpoint stages their records and index entries first and adds them to
// the batch in key order (checkpoint_stage.go), so that Pebble, which sorts
// a large batch before it writes it, finds it sorted. Writes to the same
// key keep their order.
//
// # Group commit
//
// A Committer batches the writes of many requests into one Pebble commit.
// Writers change their counters in memory (the Source), then call Ticket,
// which wakes the committer goroutine. The committer holds the current
// generation of tickets; each round it publishes a new generation first,
// seals the old one, calls Source.Fill to collect every change made visible
// since the previous Fill, and commits the batch: with Sync if any ticket
// of the generation asked for sync, else NoSync followed by a WAL fsync
// within CommitterConfig.MaxDelay (10 ms by default). Because a writer takes
// its ticket after its change is visible, the Fill after its generation was
// sealed includes the change. While one commit and its fsync are in flight,
// new tickets pile up in the next generation, so batches grow with the load
// and no fixed sleep is needed. A ticket completes (Wait, Done) when its
// change is durable; then Source.Committed is called with the Fill's token
// (in Fill order), which is when the node may stream the change to peers.
// Ticket.WaitVisible returns earlier, once the change is committed and
// readable from the store, for use as a barrier before a scan.
//
// # Failures
//
// A failed write or fsync of the operation log, and a failed Pebble commit
// or WAL fsync (Pebble treats those as fatal: it calls Logger.Fatalf and
// leaves its commit pipeline unusable), fail the store for good: the write
// returns an error wrapping ErrDiskFailed that names the operation, the file
// and the OS error ("no space left on device" for a full disk), every later
// write is refused the same way, the failure is logged once at error level,
// and Store.Err reports it. Reads keep working. Nothing is retried: whether
// the failed write reached the disk is unknown, and after a failed fsync
// the kernel may have dropped the dirty pages, so a retried fsync could
// report success for data that is gone. The only recovery is a restart,
// which replays what is durable; a record torn by the failed write ends the
// replay, like a crash's.
//
// A Committer whose commit, fsync or Fill fails fails every ticket not yet
// completed and every later ticket with an error wrapping ErrCommitFailed,
// and commits nothing more: a node that cannot make writes durable must not
// acknowledge any. Its Close returns the error. The node should report
// itself unready and be restarted once the disk is fixed.
//
// Pebble failures outside the commit path (a failed flush or compaction
// that Pebble deems fatal) panic and end the process, as Pebble intends.
//
// # Tuning
//
// Pebble is set up for many small keys written far more often than read
// from disk, with hot keys overwritten again and again: 8 MiB memtables (a
// pure-Go build holds each arena resident whole; large checkpoints skip the
// memtables anyway), writes stalled only once 256 MiB of memtables and
// large batches wait to be flushed, an L0 stop-writes threshold of 32
// sublevels (a burst compacts late rather than stalling writes), Lbase at
// 256 MiB, bloom filters on every level (cold point reads, and reads of
// counters never written, mostly skip the data blocks), and the fastest
// compression on every level. See pebbleOptions for the reasoning. The
// operation log's segments are zeroed ahead of the appends
// (Config.LogWriteAhead), so that the fsync a sync write waits for does not
// also commit a new file size to the file system's journal (package
// store/internal/oplog, "Write ahead").
package store
