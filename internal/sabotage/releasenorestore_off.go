//go:build !sabotage_release_no_restore

package sabotage

// ReleaseNoRestore is false: built without the sabotage_release_no_restore tag.
const ReleaseNoRestore = false
