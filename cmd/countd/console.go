package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// startupError is an error that stopped countd before it served: a bad
// setting, a port in use, a data directory another process holds. It is
// printed as one plain line, never as a log record with a stack trace.
type startupError struct{ err error }

func (e *startupError) Error() string { return e.err.Error() }
func (e *startupError) Unwrap() error { return e.err }

// explain returns the one line printed for a start-up error: the error,
// and what to do about it when the cause is a common one.
func explain(err error, dataDir string) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("%v: another process already listens on that address (perhaps another countd); stop it or choose another address", err)
	case errors.Is(err, syscall.EAGAIN) && strings.Contains(err.Error(), "store: open"):
		holder := "another process"
		if pid := lockHolder(filepath.Join(dataDir, "LOCK")); pid > 0 {
			holder = fmt.Sprintf("another process (pid %d%s)", pid, procName(pid))
		}
		return fmt.Sprintf("the data directory %s is in use by %s; stop it, or give this countd another --data-dir", dataDir, holder)
	case errors.Is(err, os.ErrPermission):
		return fmt.Sprintf("%v: countd may not use that file or directory; check its owner and mode, or choose another --data-dir", err)
	}
	return err.Error()
}

// lockHolder returns the pid that holds a POSIX lock on path (Pebble locks
// the LOCK file of its directory with fcntl), read from /proc/locks; 0 when
// it cannot tell.
func lockHolder(path string) int {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	// A line: "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; the fifth
	// field is the pid and the sixth major:minor:inode.
	inode := ":" + strconv.FormatUint(st.Ino, 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "POSIX" || !strings.HasSuffix(fields[5], inode) {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid != os.Getpid() {
			return pid
		}
	}
	return 0
}

// procName returns ", <command>" of pid, or "" when it cannot be read.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return ", " + strings.TrimSpace(string(b))
}

// isTerminal reports whether f is a character device (a terminal), the
// test of whether a person is reading.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// usage prints the flags, then the environment variables that set them.
func usage(fs *flag.FlagSet, w io.Writer) func() {
	return func() {
		fmt.Fprintf(w, "Usage: countd [flags]\n\nThe countmesh server. With no flags it runs a single node on 127.0.0.1:7070 (HTTP),\nkeeping its data in ./data. Reference: docs/api.md; running it: docs/operations.md.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nEnvironment: every flag but --version can be given as COUNTMESH_<FLAG>, upper case,\n'-' as '_'; a flag on the command line wins. The variables:\n")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name != "version" {
				fmt.Fprintf(w, "  %s\n", envName(f.Name))
			}
		})
	}
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "COUNTMESH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
