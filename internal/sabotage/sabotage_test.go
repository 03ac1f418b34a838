package sabotage

import "testing"

// A build without sabotage tags has none compiled in. (Under a tag this
// test checks that Active names it.)
func TestActiveMatchesConstants(t *testing.T) {
	want := map[string]bool{
		"sabotage_ack_before_fsync":   AckBeforeFsync,
		"sabotage_drop_delta":         DropDelta,
		"sabotage_id_twice":           IDTwice,
		"sabotage_bounds_no_rights":   BoundsNoRights,
		"sabotage_release_no_restore": ReleaseNoRestore,
	}
	got := map[string]bool{}
	for _, tag := range Active() {
		if _, ok := want[tag]; !ok {
			t.Errorf("Active lists unknown tag %q", tag)
		}
		got[tag] = true
	}
	for tag, on := range want {
		if got[tag] != on {
			t.Errorf("%s: compiled in %v, listed by Active %v", tag, on, got[tag])
		}
	}
}
