//go:build !sabotage_ack_before_fsync

package sabotage

// AckBeforeFsync is false: built without the sabotage_ack_before_fsync tag.
const AckBeforeFsync = false
