//go:build sabotage_id_twice

package sabotage

// IDTwice is true: built with the sabotage_id_twice tag.
// A retried increment whose id this node has seen is counted again.
const IDTwice = true
