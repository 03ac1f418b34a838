// Package sabotage holds deliberately broken builds, for tests only.
//
// The chaos campaign proves that its checker catches real bugs by running it
// against builds that have them. Each sabotage is an untyped bool constant,
// false unless the binary is built with its build tag:
//
//	tag                          constant        bug
//	sabotage_ack_before_fsync    AckBeforeFsync  store: a sync commit is acknowledged before its
//	                                             write, which then goes out without an fsync
//	sabotage_drop_delta          DropDelta       node: about one replicated delta in 50 is dropped,
//	                                             and the version vector still moves over it
//	sabotage_id_twice            IDTwice         node: a retry whose id this node has seen counts again
//	sabotage_bounds_no_rights    BoundsNoRights  node: a bounded write in an exact namespace goes
//	                                             through without the rights it needs
//	sabotage_release_no_restore  ReleaseNoRestore node: a write of a sharded counter the node
//	                                             released starts its slot from 0, without
//	                                             bringing it back from an owner
//
// The hooks are written `if sabotage.X { ... }`. A production build (no tags)
// compiles every one of them out, because the constants are false; Active
// then returns nothing, which a normal test asserts.
//
// Build a broken countd without make, one tag (or several, comma-separated)
// at a time:
//
//	go build -tags sabotage_id_twice -o bin/countd-sabotage_id_twice ./cmd/countd
//
// countd logs a warning at start listing the sabotages compiled in. Each
// sabotage has a test in the package it breaks, built only with its tag, that
// shows the bug happens:
//
//	go test -tags sabotage_ack_before_fsync -run Sabotage ./store/
//	go test -tags sabotage_id_twice -run Sabotage ./node/
//
// What a campaign sees: under sabotage_ack_before_fsync each sync commit
// is acknowledged, then written CommitMaxDelay later (10ms by default) and
// only replicated after its fsync, so a SIGKILL under write load loses
// acknowledged increments that no peer holds. Under
// sabotage_bounds_no_rights reads still clamp to the bounds; the merged
// state crosses them, and more decrements are acknowledged than the value
// allowed.
//
// Never ship such a build.
package sabotage

// Active returns the tags of the sabotages compiled into this binary, in a
// fixed order; nil in a production build.
func Active() []string {
	var out []string
	if AckBeforeFsync {
		out = append(out, "sabotage_ack_before_fsync")
	}
	if DropDelta {
		out = append(out, "sabotage_drop_delta")
	}
	if IDTwice {
		out = append(out, "sabotage_id_twice")
	}
	if BoundsNoRights {
		out = append(out, "sabotage_bounds_no_rights")
	}
	if ReleaseNoRestore {
		out = append(out, "sabotage_release_no_restore")
	}
	return out
}
