// Package transport is the one peer transport of a countmesh node: the
// peer listener, the connections it dials, the hello every connection
// starts with, mutual TLS, the frame format and its msgpack messages, and
// the peer calls (Call, Handle) that the node's services ride on. Package
// gossip owns a Transport and serves replication streams and anti-entropy
// exchanges over it; package peerrpc binds the calls.
//
// # Connections
//
// Every connection starts with a hello {proto, kind (1 stream, 2
// anti-entropy, 3 probe, 4 calls), name, region}; a version other than
// ProtoVersion is refused. The listener holds at most MaxInboundConns
// connections (more are closed on arrival), reads at most 4 KiB before the
// hello, and reads a frame's body as it arrives, in chunks of 1 MiB, so
// that a peer announcing a 64 MiB frame and sending nothing costs one
// chunk. Streams and exchanges are answered by the ServeFunc registered
// for their kind; a probe is closed at once.
//
// # Security
//
// With Config.TLS every connection runs mutual TLS: a peer without a
// certificate signed by the CA gets nothing but a closed connection, and a
// hello must name the node its certificate was issued to. Without TLS a
// hello must still name a member this node knows (Members.IsMember, any
// state) for streams, exchanges and calls.
//
// # Peer calls
//
// Call sends a request to a member and waits for its answer; Handle
// registers the answering side of a Method (quorum state reads and
// writes, rights, rate-limit leases). A call runs on a pooled connection of
// kind 4 (at most MaxIdleRPCConns idle per member), one request at a time
// per connection; the handler learns the caller's name from the
// connection, and a handler that panics answers with an error.
//
// # Wire format
//
// A frame is a 4-byte big-endian length n and n bytes: a type byte and a
// msgpack body (structs as arrays, compact integers). Frame types:
//
//	1 hello    {proto, kind, name, region}
//	2 batch    {id, relay, batch}                 stream, sender to receiver
//	3 ack      {id}                               stream, receiver to sender, after Apply
//	4 aeReq    {vector, held, config digest, full}
//	5 aeChunk  batch
//	6 aeResp   {vector, held, config digest, configs}
//	7 aeEnd    {configs}
//	8 aeFin    (empty)
//	9 aeBusy   (empty: the responder runs MaxConcurrentAntiEntropy exchanges already)
//	10 rpcReq  {method, body}                      caller to callee
//	11 rpcResp {err, body}                         callee to caller
//
// A batch is {ranges [[origin, after, upto]], groups [[ns, origin, items]],
// configs [[ns, hlc, origin, payload]]}, an item [key, seq, slots [[node,
// p, n]], reset [epoch, node, value, deleted, floor] or nil]: grouping by
// namespace and origin keeps them out of every item. A vector is a list of
// [origin, seq] pairs; held is such a list too, of single changes held past
// a gap in the vector (at most MaxHeld). Frames larger than MaxFrameBytes are refused, and a
// batch whose slots are not sorted by node is refused before any merge.
package transport
