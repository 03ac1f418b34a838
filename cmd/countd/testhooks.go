package main

// Test-only hooks for the chaos campaign (chaos/, docs/chaos.md). They are
// read only from the environment, never from a flag, so that no operator
// sets one by accident through the flag table or COUNTMESH_<FLAG>, and each
// logs a warning when in effect. A production deployment sets neither.

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/internal/faultfs"
)

const (
	// envClockOffset shifts the node's clock (node.Config.Now and
	// ratelimit.Config.Now) by a signed Go duration, e.g. "+300ms", so that
	// the chaos campaign can skew the clocks of the nodes of one host.
	envClockOffset = "COUNTMESH_TEST_CLOCK_OFFSET"
	// envFsyncFailFile names a file: while it exists, every fsync of the
	// store's operation log fails with EIO (internal/faultfs).
	envFsyncFailFile = "COUNTMESH_TEST_FSYNC_FAIL_FILE"
	// fsyncPoll is how often the fsync-fail file is looked for.
	fsyncPoll = 50 * time.Millisecond
)

// testClock returns the clock shifted by COUNTMESH_TEST_CLOCK_OFFSET, or nil
// (time.Now) when it is unset.
func testClock(getenv func(string) string, log *zap.Logger) (func() time.Time, error) {
	v := getenv(envClockOffset)
	if v == "" {
		return nil, nil
	}
	off, err := time.ParseDuration(strings.TrimPrefix(v, "+"))
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w (a signed Go duration such as +300ms or -1s)", envClockOffset, v, err)
	}
	log.Warn("test-only clock offset in effect", zap.String("env", envClockOffset), zap.Duration("offset", off))
	return func() time.Time { return time.Now().Add(off) }, nil
}

// fsyncFaults wraps the store's file system with faultfs when
// COUNTMESH_TEST_FSYNC_FAIL_FILE is set: a goroutine arms SyncError on the
// operation log while the named file exists and disarms it when the file is
// gone. It returns the file system to use (nil: the default) and a stop
// function that ends the goroutine.
func fsyncFaults(getenv func(string) string, log *zap.Logger) (vfs.FS, func()) {
	path := getenv(envFsyncFailFile)
	if path == "" {
		return nil, func() {}
	}
	log.Warn("test-only fsync fault hook in effect: the operation log's fsyncs fail while the file exists",
		zap.String("env", envFsyncFailFile), zap.String("file", path))
	ffs := faultfs.New(vfs.Default, func(p string) bool { return strings.Contains(p, "oplog/") })
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(fsyncPoll)
		defer t.Stop()
		armed := false
		for {
			_, err := os.Stat(path)
			switch exists := err == nil; {
			case exists && !armed:
				ffs.Arm(faultfs.SyncError, 0)
				armed = true
				log.Warn("test-only fsync fault armed", zap.String("file", path))
			case !exists && armed:
				ffs.Disarm()
				armed = false
				log.Warn("test-only fsync fault disarmed", zap.String("file", path))
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return ffs, func() { close(done); <-stopped }
}
