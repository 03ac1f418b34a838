// Package peerrpc binds the node's peer services to the mesh's one peer
// transport (gossip.Mesh.Call and Handle): the quorum and all consistency
// levels' state reads and writes, the rights of bounded counters, and
// rate-limit leases. Nodes talk to each other over nothing else; the
// public HTTP listener serves clients only.
//
// Client is the calling side: it is node.Peers, node.PeerTransport,
// node.RightsTransport and ratelimit.Transport at once, over a mesh
// attached with Attach after the node has opened (the mesh needs the
// node first). Serve registers the answering side on a mesh.
//
// Every request is bounded by the transport (gossip.Config.MaxFrameBytes)
// and here (MaxStates per push), and validated by the node or the limiter
// before use: a peer is trusted to be a member, never to be well-formed.
// The caller's name comes from the transport (with TLS, the name its
// certificate was issued to), never from the request body.
package peerrpc
