package chaos

import (
	"os"
	"testing"
)

// TestRecheck runs the checker again over a recorded campaign:
//
//	CHAOS_RECHECK=chaos/results/<seed>.jsonl go test -run TestRecheck ./chaos/
//
// It is skipped without the variable.
func TestRecheck(t *testing.T) {
	path := os.Getenv("CHAOS_RECHECK")
	if path == "" {
		t.Skip("CHAOS_RECHECK names no recorded history")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	r := Check(h)
	t.Log(r.Summary())
	if !r.OK() {
		t.Fatalf("the checker fails the recorded history:\n%s", r)
	}
}
