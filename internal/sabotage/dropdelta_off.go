//go:build !sabotage_drop_delta

package sabotage

// DropDelta is false: built without the sabotage_drop_delta tag.
const DropDelta = false
