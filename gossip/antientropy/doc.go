// Package antientropy repairs whatever the replication streams missed:
// an Exchanger runs push-pull exchanges of version vectors and of the
// changes the other side lacks, as initiator (Exchange) and as responder
// (Serve, on the peer transport). Package gossip picks the peers and the
// times; this package owns the protocol.
//
// An exchange runs on a fresh connection:
//
//	initiator -> responder: hello, aeReq{vector, held, config digest, full}
//	responder -> initiator: chunks for each origin where its vector is ahead, aeResp{vector, held, digest, configs if the digests differ}
//	initiator -> responder: chunks for each origin where its vector is ahead, aeEnd{configs if the digests differ}
//	responder -> initiator: aeFin
//
// A side's chunks for an origin are its Replica.ScanSince(origin,
// theirs[origin]) in seq order, at most MaxFrameDeltas per chunk, each
// chunk with the range it completes, so that a transfer of a million
// counters advances the receiver's vector chunk by chunk and resumes where
// it stopped. Periodic exchanges cap each origin at the vector this node
// had AntiEntropyGrace ago: younger changes are still on the streams and
// sending them again would double the traffic under load; a full
// exchange (gossip's SyncOnce at start-up, a member back from a partition)
// sends everything past the other side's vector.
//
// "held" lists the single changes a side holds past a gap in its vector
// (Replica.HeldAhead). Each side also sends the held changes the other
// lists under neither its vector nor its held list: when an origin is gone
// for good, a gap in its sequence may never fill, and changes past it
// would otherwise stay on the nodes that happened to receive them.
//
// A side's first chunk vouches for every origin it holds data of (its
// vector's and its held changes' origins, change.Batch.Vouched) that the
// other side's vector lacks, and the
// receiver takes that vouch for every chunk and the config records of the
// session: a node that comes back empty has never heard of the nodes that
// left before, and a chunk may name one before, or without, that origin's
// range (a held change goes without one; a range may have no changes left
// to carry). Without the vouch the receiver refused such a chunk, and with
// it the whole exchange, on every retry from every peer that held it. The
// config records a side sends (AEResp, AEEnd) carry the same vouch, with
// the records' writers added: an exchange whose only news is a config
// written by a node that left before, and never wrote a counter, has no
// chunk to vouch for it.
//
// Two exchanges between the same pair of nodes never run at once (the
// second is refused with ErrBusy), and a node answers at most
// MaxConcurrent exchanges at a time.
package antientropy
