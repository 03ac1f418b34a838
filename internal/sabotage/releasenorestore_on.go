//go:build sabotage_release_no_restore

package sabotage

// ReleaseNoRestore is true: built with the sabotage_release_no_restore tag.
// A write of a sharded counter this node released starts its slot from 0
// instead of bringing it back from an owner first.
const ReleaseNoRestore = true
