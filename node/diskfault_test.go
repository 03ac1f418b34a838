package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/countmesh/countmesh/internal/faultfs"
)

// TestDiskFailureStopsWrites: a failed fsync or a full disk under the
// operation log makes the write in flight and every later write fail with
// ErrUnavailable (503 unavailable) saying the disk failed and the node must
// be restarted, makes the node unready, is logged once at error level, and
// loses no acknowledged write across a restart. Reads keep working.
func TestDiskFailureStopsWrites(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault faultfs.Fault
	}{
		{"fsync fails", faultfs.SyncError},
		{"disk full", faultfs.NoSpace},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			ffs := faultfs.New(mem, func(path string) bool { return strings.Contains(path, "oplog/") })
			core, logs := observer.New(zapcore.InfoLevel)
			cfg := testConfig(t, ffs)
			cfg.Logger = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
			ctx := context.Background()
			n, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()

			const acked = 10
			for range acked {
				if _, err := n.Incr(ctx, "a", "x", 1, WriteOptions{}); err != nil {
					t.Fatalf("incr before the fault: %v", err)
				}
			}
			if !n.Ready() {
				t.Fatal("not ready before the fault")
			}

			ffs.Arm(tt.fault, 0)
			_, err = n.Incr(ctx, "a", "x", 1, WriteOptions{})
			checkDiskFailed(t, "the write in flight", err)
			if ffs.Injected() == 0 {
				t.Fatal("no fault was injected")
			}
			if n.Ready() {
				t.Fatal("Ready after the disk failed; /readyz would answer 200")
			}
			ffs.Disarm() // healthy again: still no write is acknowledged
			for _, key := range []string{"x", "other"} {
				_, err = n.Incr(ctx, "a", key, 1, WriteOptions{})
				checkDiskFailed(t, "a later write to "+key, err)
			}
			if n.Ready() {
				t.Fatal("Ready again without a restart")
			}
			// Reads are served from memory.
			if got := mustGet(t, n, "a", "x"); got < acked {
				t.Fatalf("read after the failure: %d, want at least %d", got, acked)
			}
			errs := logs.FilterLevelExact(zapcore.ErrorLevel).All()
			if len(errs) != 1 {
				t.Fatalf("%d error lines, want the failure logged once: %v", len(errs), errs)
			}

			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			t.Logf("Close after the failure: %v", n.Close())
			for _, fs := range []struct {
				name string
				fs   vfs.FS
			}{{"after a crash", crashed}, {"after a restart", mem}} {
				cfg := testConfig(t, fs.fs)
				r := openTest(t, cfg)
				if !r.Ready() {
					t.Fatalf("%s: not ready", fs.name)
				}
				if got := mustGet(t, r, "a", "x"); got < acked || got > acked+2 {
					t.Errorf("%s: x = %d, want the %d acknowledged increments (+ at most the 2 refused)", fs.name, got, acked)
				}
				if _, err := r.Incr(ctx, "a", "x", 1, WriteOptions{}); err != nil {
					t.Errorf("%s: write on the healthy disk: %v", fs.name, err)
				}
				r.Close()
			}
		})
	}
}

func checkDiskFailed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s: %v, want ErrUnavailable (503 unavailable)", what, err)
	}
	if testing.Verbose() {
		t.Logf("%s: %v", what, err)
	}
	for _, want := range []string{"disk failed", "restart the node"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not say %q", what, err, want)
		}
	}
}
