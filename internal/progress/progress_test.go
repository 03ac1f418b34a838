package progress

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/countmesh/countmesh/internal/progress/ptytest"
)

func TestIsTerminal(t *testing.T) {
	tty, _ := ptytest.Open(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var nilFile *os.File
	cases := []struct {
		name string
		w    io.Writer
		want bool
	}{
		{"pty", tty, true},
		{"pipe", w, false},
		{"regular file", file, false},
		{"buffer", &bytes.Buffer{}, false},
		{"nil file", nilFile, false},
	}
	for _, tc := range cases {
		if got := IsTerminal(tc.w); got != tc.want {
			t.Errorf("IsTerminal(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNoBarOffATerminal(t *testing.T) {
	var out bytes.Buffer
	bar := New(&out, 100, "importing", Bytes)
	if bar != nil {
		t.Fatal("New returned a bar for a writer that is not a terminal")
	}
	src := strings.NewReader("data")
	if bar.Reader(src) != io.Reader(src) {
		t.Fatal("a nil bar's Reader wraps its reader")
	}
	bar.Add(4)
	bar.Describe("x")
	bar.Finish()
	if out.Len() != 0 {
		t.Fatalf("a nil bar wrote %q", out.String())
	}
}

func TestBarOnATerminal(t *testing.T) {
	tty, drawn := ptytest.Open(t)
	bar := New(tty, 1<<20, "importing", Bytes)
	if bar == nil {
		t.Fatal("New returned no bar for a terminal")
	}
	n, err := io.Copy(io.Discard, bar.Reader(bytes.NewReader(make([]byte, 1<<20))))
	if err != nil || n != 1<<20 {
		t.Fatalf("copy through the bar: %d, %v", n, err)
	}
	bar.Finish()
	out := drawn()
	if !strings.Contains(out, "importing") || !strings.Contains(out, "100%") || !strings.Contains(out, "1.0 MB") {
		t.Fatalf("the terminal shows %q; want the description, 100%% and 1.0 MB", out)
	}
}
