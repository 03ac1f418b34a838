// Package faultfs is a vfs.FS for tests that injects disk faults into the
// files it is told to: a failing fsync (EIO) or a full disk (ENOSPC, after
// writing part of the buffer, as a real file system does when it runs out of
// space in the middle of a write). Everything else passes through to the
// wrapped file system, so it composes with vfs.NewMem and
// vfs.NewCrashableMem: a crash clone after a failed fsync drops the data
// that fsync did not make durable, which is what Linux may do.
package faultfs
