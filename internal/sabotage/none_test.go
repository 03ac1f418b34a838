//go:build !sabotage_ack_before_fsync && !sabotage_drop_delta && !sabotage_id_twice && !sabotage_bounds_no_rights && !sabotage_release_no_restore

package sabotage

import "testing"

// A normal build (no sabotage tag) compiles no sabotage in.
func TestNormalBuildHasNoSabotage(t *testing.T) {
	if got := Active(); len(got) != 0 {
		t.Fatalf("Active() = %v in a build without sabotage tags, want none", got)
	}
	if AckBeforeFsync || DropDelta || IDTwice || BoundsNoRights {
		t.Fatal("a sabotage constant is true in a build without sabotage tags")
	}
}
