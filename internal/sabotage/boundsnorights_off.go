//go:build !sabotage_bounds_no_rights

package sabotage

// BoundsNoRights is false: built without the sabotage_bounds_no_rights tag.
const BoundsNoRights = false
