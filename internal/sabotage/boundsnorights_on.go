//go:build sabotage_bounds_no_rights

package sabotage

// BoundsNoRights is true: built with the sabotage_bounds_no_rights tag.
// A bounded increment or decrement in an exact namespace goes through without rights.
const BoundsNoRights = true
