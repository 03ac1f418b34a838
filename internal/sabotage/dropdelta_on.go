//go:build sabotage_drop_delta

package sabotage

// DropDelta is true: built with the sabotage_drop_delta tag.
// A node drops about one replicated delta in 50 while advancing its version vector over it.
const DropDelta = true
