package store

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// Config configures a Store. Start from DefaultConfig and set Dir.
type Config struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// FS is the file system; nil means the operating system's. Tests pass
	// vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// CacheSize is the Pebble block cache size in bytes; 0 means the
	// default (256 MiB).
	CacheSize int64
	// MemTableSize is the size of one Pebble memtable in bytes; 0 means the
	// default (8 MiB). Larger memtables absorb more overwrites of counters
	// written in small checkpoints before anything reaches an sstable, and
	// cost that much more resident memory.
	MemTableSize uint64
	// LogWriteAhead is the most bytes a segment of the operation log is
	// zeroed for before appends reach it (package store/internal/oplog,
	// "Write ahead"); a negative value turns zeroing off. 0 means the
	// default: 16 MiB on the operating system's file system, and off on
	// any other, such as the in-memory ones of tests, where an fsync costs
	// nothing to spare (and a crashable one copies the whole file).
	LogWriteAhead int64
	// Logger receives Pebble's messages and the store's own; nil means
	// zap.NewNop().
	Logger *zap.Logger
}

const (
	// 256 MiB: Pebble splits its cache into 4 shards per core and will not
	// cache a block larger than a shard, so with 64 MiB on 2 cores a table's
	// bloom filter block (megabytes for a large table) was never cached and
	// every point read of a cold counter re-read it: 33 µs instead of 2 µs
	// per miss, measured on 3M keys.
	defaultCacheSize = 256 << 20
	// 8 MiB: a memtable's arena is resident whole from its allocation in
	// a build without cgo (the Go heap zeroes it), and Pebble doubles each
	// new one up to this size and keeps one for reuse, so with 64 MiB a
	// node held 8 to 64 MB of arenas after its first million counters,
	// depending on how many checkpoints the burst took: 50 or 93 bytes of
	// resident memory a counter in runs of the same benchmark
	// (docs/benchmarks.md, "The key filter grows in layers").
	defaultMemTableSize = 8 << 20
	// 16 MiB: under a million increments a second a segment fills in a
	// second or two, so the next one is zeroed (in the background, from
	// half full) long before it is needed; at most two segments' room is
	// held ahead.
	defaultLogWriteAhead = 16 << 20
	// maxMemTableSize is Pebble's limit: memtable arenas are addressed with
	// 32-bit offsets.
	maxMemTableSize = 4<<30 - 1
)

// DefaultConfig returns the defaults; the caller sets Dir.
func DefaultConfig() Config {
	return Config{
		CacheSize:    defaultCacheSize,
		MemTableSize: defaultMemTableSize,
	}
}

// withDefaults fills the zero fields that have a default.
func (c Config) withDefaults() Config {
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.CacheSize == 0 {
		c.CacheSize = defaultCacheSize
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = defaultMemTableSize
	}
	if c.LogWriteAhead == 0 {
		c.LogWriteAhead = -1
		if vfs.Root(c.FS) == vfs.Default {
			c.LogWriteAhead = defaultLogWriteAhead
		}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c Config) validate() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: Dir is empty; set the data directory", ErrInvalidConfig)
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("%w: CacheSize %d is negative; use 0 for the default", ErrInvalidConfig, c.CacheSize)
	}
	if c.MemTableSize > maxMemTableSize {
		return fmt.Errorf("%w: MemTableSize %d is 4 GiB or more; use less", ErrInvalidConfig, c.MemTableSize)
	}
	return nil
}

// CommitterConfig configures a Committer.
type CommitterConfig struct {
	// MaxDelay bounds how long a change acknowledged with an async ticket
	// waits for the WAL fsync: the committer starts that fsync at most
	// MaxDelay/2 after the NoSync commit that carried the change, which
	// leaves the other half for the fsync itself. 0 means the default
	// (10 ms).
	MaxDelay time.Duration
	// Logger receives commit failures; nil means the store's logger.
	Logger *zap.Logger
}

const defaultMaxDelay = 10 * time.Millisecond

// DefaultCommitterConfig returns the defaults.
func DefaultCommitterConfig() CommitterConfig {
	return CommitterConfig{MaxDelay: defaultMaxDelay}
}

func (c CommitterConfig) validate() error {
	if c.MaxDelay < 0 {
		return fmt.Errorf("%w: MaxDelay %v is negative; use 0 for the default", ErrInvalidConfig, c.MaxDelay)
	}
	return nil
}
