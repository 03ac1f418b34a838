package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/internal/wait"
)

func TestTestClockOffset(t *testing.T) {
	for _, tt := range []struct {
		env     string
		want    time.Duration
		wantErr bool
	}{
		{"+300ms", 300 * time.Millisecond, false},
		{"-1s", -time.Second, false},
		{"soon", 0, true},
	} {
		t.Run(tt.env, func(t *testing.T) {
			now, err := testClock(func(string) string { return tt.env }, zaptest.NewLogger(t))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := time.Until(now()); got < tt.want-50*time.Millisecond || got > tt.want+50*time.Millisecond {
				t.Fatalf("clock is %v off, want %v", got, tt.want)
			}
		})
	}
	if now, err := testClock(func(string) string { return "" }, zaptest.NewLogger(t)); now != nil || err != nil {
		t.Fatalf("unset: got a clock (%v)", err)
	}
}

func TestFsyncFailFileArmsFaults(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "fail")
	fs, stop := fsyncFaults(func(string) string { return flag }, zaptest.NewLogger(t))
	defer stop()
	if err := fs.MkdirAll(filepath.Join(dir, "oplog"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create(filepath.Join(dir, "oplog", "1.log"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitSync := func(wantErr bool) {
		t.Helper()
		wait.For(t, 2*time.Second, fmt.Sprintf("Sync failing: %v", wantErr), func() (bool, string) {
			err := f.Sync()
			return (err != nil) == wantErr, fmt.Sprintf("Sync() = %v", err)
		})
	}
	waitSync(false)
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitSync(true)
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	waitSync(false)
}
