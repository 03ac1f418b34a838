package kinderr

import (
	"errors"
	"io/fs"
	"testing"
)

func TestKindAndCause(t *testing.T) {
	kind := errors.New("node: unavailable")
	err := New(kind, fs.ErrNotExist, "read counter: %v", fs.ErrNotExist)
	if !errors.Is(err, kind) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%v: errors.Is finds the kind %v, the cause %v; want both", err, errors.Is(err, kind), errors.Is(err, fs.ErrNotExist))
	}
	if got, want := err.Error(), "node: unavailable: read counter: file does not exist"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	if errors.Is(err, errors.New("node: unavailable")) {
		t.Fatal("another error with the same text matched the kind")
	}
}
