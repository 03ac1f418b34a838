// Package exact owns what makes exact counters exact: the quorum and all
// consistency levels (Quorum), and the rights that keep bounds (Rights).
//
// A write at the quorum or all level is pushed, once durable here, to the nodes the level asks for
// (Quorum.Replicate); a read first brings this node's copy up to what a
// majority holds and writes the merged state back where it is missing
// (Quorum.Gather), so a quorum read returns every write a quorum
// acknowledged before it started.
//
// It also holds the types the peer RPC speaks (Peer, Peers, PeerTransport,
// CounterState), which package node re-exports. It reaches the node's
// counters only through the function values of Config and does not import
// package node.
//
// Rights keep the bounds (min and max) of exact namespaces by per-node
// rights (escrow): the rights a node holds on a counter (HeldLocked), the
// check of a write against them under the counter's stripe lock
// (CheckLocked, which asks for more with *NeedRights), collecting rights
// from peers (Acquire) and giving them (Grant). Rights records are
// internal counters of the hot set (keyspace.KindRights, RightsKey), which
// Rights reads and writes through the *keyspace.Set it is given.
package exact
