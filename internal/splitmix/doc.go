// Package splitmix holds splitmix64's finaliser, the one 64-bit mixer of
// the tree: the count-min sketch's second hash (crdt), rendezvous scores
// (gossip) and rate-limit key hashes (ratelimit) all finish with it.
package splitmix
