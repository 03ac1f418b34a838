package keyspace

import (
	"fmt"
	"testing"

	"github.com/countmesh/countmesh/store"
)

// TestRaiseSeqLeavesCheckpointedSeqsAlone: an entry's seqs share their array
// with ckSeqs (what the last checkpoint indexed) after a checkpoint or a read
// from the store; the first raise after that must copy, later ones may raise
// in place, and none may change ckSeqs, which the next checkpoint uses to
// delete the index entries it replaces.
func TestRaiseSeqLeavesCheckpointedSeqsAlone(t *testing.T) {
	read := []store.OriginSeq{{Origin: 1, Seq: 5}, {Origin: 3, Seq: 7}}
	e := &Entry{seqs: read, ckSeqs: read} // as Lookup makes it from a record
	e.RaiseSeq(1, 6)
	e.RaiseSeq(1, 8)
	e.RaiseSeq(3, 2) // lower: no change
	e.RaiseSeq(2, 1) // a new origin
	if got, want := fmt.Sprint(e.seqs), "[{1 8} {2 1} {3 7}]"; got != want {
		t.Fatalf("seqs %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(e.ckSeqs), "[{1 5} {3 7}]"; got != want {
		t.Fatalf("ckSeqs %s after raises, want %s", got, want)
	}
	// A checkpoint indexes seqs: they share an array again.
	e.ckSeqs = e.seqs
	e.RaiseSeq(3, 9)
	if got, want := fmt.Sprint(e.ckSeqs), "[{1 8} {2 1} {3 7}]"; got != want {
		t.Fatalf("ckSeqs %s after a raise past a checkpoint, want %s", got, want)
	}
	if got, want := fmt.Sprint(e.seqs), "[{1 8} {2 1} {3 9}]"; got != want {
		t.Fatalf("seqs %s, want %s", got, want)
	}
}
