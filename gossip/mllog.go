package gossip

import (
	"bytes"
	"log"

	"go.uber.org/zap"
)

// mlLogWriter turns memberlist's log lines ("[WARN] memberlist: ...") into
// zap entries at the matching level (errors become warnings).
type mlLogWriter struct {
	log *zap.Logger
}

func newMemberlistLogger(l *zap.Logger) *log.Logger {
	return log.New(mlLogWriter{log: l.Named("memberlist")}, "", 0)
}

func (w mlLogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := "INFO"
	if len(line) > 0 && line[0] == '[' {
		if i := bytes.IndexByte(line, ']'); i > 0 {
			level = string(line[1:i])
			line = bytes.TrimSpace(line[i+1:])
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	msg := string(line)
	switch level {
	case "DEBUG", "TRACE":
		w.log.Debug(msg)
	case "WARN", "ERR", "ERROR":
		// memberlist logs unreachable peers as errors; in a mesh across
		// regions they are routine, so nothing here is above a warning.
		w.log.Warn(msg)
	default:
		w.log.Info(msg)
	}
	return len(p), nil
}
