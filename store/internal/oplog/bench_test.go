package oplog

import (
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// BenchmarkAppendSync appends 200-byte records with an fsync each, on the
// operating system's file system (the test's temporary directory), into
// segments zeroed ahead and into segments that grow. It reports the CPU
// time of the process per append (user and system, from getrusage) beside
// the wall time; the file system's journal thread is not counted.
//
//	go test ./store/internal/oplog/ -run XXX -bench AppendSync -benchtime 5000x -count 3
func BenchmarkAppendSync(b *testing.B) {
	for _, mode := range []struct {
		name       string
		writeAhead int64
	}{{"zeroed", 16 << 20}, {"growing", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			l, err := Open(vfs.Default, b.TempDir(), zap.NewNop(), mode.writeAhead)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			if _, err := l.Replay(func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
			rec := make([]byte, 200)
			for i := range rec {
				rec[i] = byte(i)
			}
			// The first append makes the first segment.
			if err := l.Append(rec, true); err != nil {
				b.Fatal(err)
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if err := l.Append(rec, true); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
