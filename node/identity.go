package node

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// IdentityFile is the file of the data directory that holds the node's
// incarnation.
const IdentityFile = "IDENTITY"

// LoadIncarnation returns the incarnation of the data directory dir (see
// crdt.NodeIDOf), read from its IDENTITY file. A directory without one
// that holds no data yet is a new life: with mint, LoadIncarnation draws a
// random incarnation and writes it (durably) before any counter can be
// written under it; without mint, and for a directory that holds data from
// before incarnations, it returns 0 (the slot named by the node's name).
//
// A mesh node mints: when its disk is lost and it restarts empty, it comes
// back under a new slot. Under its old one, a peer it cannot reach at
// start-up (or a change still being relayed) may hold more than any peer
// it can: continuing that slot from a lower copy would make its new
// increments vanish under the higher one, and since only a node writes its
// own slot, it would then refuse that copy forever, so the mesh would not
// converge either.
func LoadIncarnation(dir string, mint bool) (uint64, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	if err == nil {
		inc, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(b), "incarnation ")), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("node: %s does not hold an incarnation (%q); it is written by countd, do not edit it", path, b)
		}
		return inc, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("node: read %s: %w", path, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("node: read the data directory: %w", err)
	}
	// A directory that holds only the leftover of an interrupted write of
	// the identity is still new.
	entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), IdentityFile) })
	if len(entries) > 0 || !mint {
		return 0, nil
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return 0, fmt.Errorf("node: draw an incarnation: %w", err)
	}
	inc := binary.BigEndian.Uint64(r[:]) | 1 // never 0
	if err := writeFileDurably(dir, IdentityFile, []byte("incarnation "+strconv.FormatUint(inc, 16)+"\n")); err != nil {
		return 0, fmt.Errorf("node: write the incarnation: %w", err)
	}
	return inc, nil
}

// writeFileDurably creates dir/name with b through a temporary file, a
// rename and fsyncs of the file and the directory.
func writeFileDurably(dir, name string, b []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
