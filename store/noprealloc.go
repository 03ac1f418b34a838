package store

import "github.com/cockroachdb/pebble/v2/vfs"

// noPreallocFS is the file system Pebble writes through: fs, with files
// that do not preallocate. Pebble preallocates each write-ahead log to 110 %
// of the memtable size and keeps up to MemTableStopWritesThreshold+1 of them
// for reuse, so with the 64 MiB memtables of the time a node held about
// 140 MiB of disk after its first checkpoint (measured) and could hold about
// 420 MiB (arithmetic), whatever it stored: a chaos node on its 384 MiB
// tmpfs ran out of space 0.7 s after starting on an empty directory. The
// preallocation only saves a file-size update on each WAL fsync, and
// countmesh syncs that WAL at checkpoints and metadata writes; acknowledged
// counter changes go to its own operation log.
type noPreallocFS struct{ vfs.FS }

func (fs noPreallocFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return noPreallocFile{f}, nil
}

func (fs noPreallocFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return noPreallocFile{f}, nil
}

// noPreallocFile is a file whose Preallocate does nothing.
type noPreallocFile struct{ vfs.File }

func (noPreallocFile) Preallocate(offset, length int64) error { return nil }
