package ptytest

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/creack/pty"
)

// Open returns a terminal (the tty side of a new pty) and a function that
// closes it and returns everything written to it. A machine without
// pseudo-terminals skips the test.
func Open(t testing.TB) (*os.File, func() string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal on this machine: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&out, ptmx) // ends with EIO once the tty is closed
	}()
	return tty, func() string {
		tty.Close()
		<-done
		return out.String()
	}
}
