// Package exact owns the machinery of exact counters that reaches other
// nodes: the quorum and all consistency levels (Quorum). A write at such a
// level is pushed, once durable here, to the nodes the level asks for
// (Quorum.Replicate); a read first brings this node's copy up to what a
// majority holds and writes the merged state back where it is missing
// (Quorum.Gather), so a quorum read returns every write a quorum
// acknowledged before it started.
//
// It also holds the types the peer RPC speaks (Peer, Peers, PeerTransport,
// CounterState), which package node re-exports. It reaches the node's
// counters only through the function values of Config and does not import
// package node. Bounds and rights of exact namespaces are still in package
// node (node/bounds.go): they are checked inside the write path under the
// stripe locks.
package exact
