package faultfs

import (
	"os"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Fault is the kind of fault injected.
type Fault int32

const (
	// None injects nothing.
	None Fault = iota
	// SyncError makes Sync, SyncData and SyncTo fail with EIO, writing
	// nothing durable.
	SyncError
	// NoSpace makes Write store the first half of its buffer and fail
	// with ENOSPC.
	NoSpace
)

// FS wraps a vfs.FS. Its methods are safe for concurrent use.
type FS struct {
	vfs.FS
	match func(path string) bool

	fault atomic.Int32
	// pass is the number of matching operations of the armed kind that
	// still succeed before the fault starts.
	pass     atomic.Int64
	injected atomic.Int64
}

// New wraps fs; files whose path satisfies match get the faults.
func New(fs vfs.FS, match func(path string) bool) *FS {
	return &FS{FS: fs, match: match}
}

// Arm injects f into every matching operation of its kind after the next
// pass ones succeed, until Disarm.
func (fs *FS) Arm(f Fault, pass int64) {
	fs.pass.Store(pass)
	fs.fault.Store(int32(f))
}

// Disarm stops injecting ("the space was freed", "the disk was replaced").
func (fs *FS) Disarm() { fs.fault.Store(int32(None)) }

// Injected counts the faults injected so far.
func (fs *FS) Injected() int64 { return fs.injected.Load() }

// inject reports whether the operation of kind f on a matching file fails.
func (fs *FS) inject(f Fault) bool {
	if Fault(fs.fault.Load()) != f {
		return false
	}
	if fs.pass.Add(-1) >= 0 {
		return false
	}
	fs.injected.Add(1)
	return true
}

func (fs *FS) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil || !fs.match(name) {
		return f, err
	}
	return &file{File: f, fs: fs, name: name}, nil
}

// Create implements vfs.FS.
func (fs *FS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, name, err)
}

// OpenReadWrite implements vfs.FS.
func (fs *FS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, category, opts...)
	return fs.wrap(f, name, err)
}

// ReuseForWrite implements vfs.FS.
func (fs *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, newname, err)
}

type file struct {
	vfs.File
	fs   *FS
	name string
}

func (f *file) Write(p []byte) (int, error) {
	if f.fs.inject(NoSpace) {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, &os.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func (f *file) syncErr() error {
	if f.fs.inject(SyncError) {
		return &os.PathError{Op: "fsync", Path: f.name, Err: syscall.EIO}
	}
	return nil
}

func (f *file) Sync() error {
	if err := f.syncErr(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *file) SyncData() error {
	if err := f.syncErr(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *file) SyncTo(length int64) (bool, error) {
	if err := f.syncErr(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

// Unwrap implements vfs.FS: it returns the wrapped file system.
func (fs *FS) Unwrap() vfs.FS { return fs.FS }
