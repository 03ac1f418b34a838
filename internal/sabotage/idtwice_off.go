//go:build !sabotage_id_twice

package sabotage

// IDTwice is false: built without the sabotage_id_twice tag.
const IDTwice = false
