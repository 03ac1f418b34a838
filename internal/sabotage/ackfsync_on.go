//go:build sabotage_ack_before_fsync

package sabotage

// AckBeforeFsync is true: built with the sabotage_ack_before_fsync tag.
// The store's group committer acknowledges a sync commit before its write and fsync.
const AckBeforeFsync = true
