// Package gossiptest holds an in-memory gossip.Replica for tests of package
// gossip and of its users.
package gossiptest
