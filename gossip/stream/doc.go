// Package stream carries a node's own changes to its peers and receives
// theirs: per peer, a bounded queue that coalesces (per namespace, key and
// origin one delta, the join of every state queued for it, under the
// highest seq; ranges of an origin merge when they touch; configs
// last-writer-wins), and a Stream that sends the queue every
// FlushInterval as frames of at most MaxFrameDeltas deltas, keeping at
// most MaxInflightFrames unacknowledged, and puts frames still
// unacknowledged when a connection fails back in the queue. Env.Receive
// is the receiving side: it applies each frame durably, relays it into
// the region when asked (a bridge), and acknowledges it.
//
// Guarantees: a batch's ranges never go out before every delta queued
// with them (a receiver never advances its version vector past a change it
// has not received); publishing never blocks (a batch that does not fit
// the queue is dropped, counted, and left to anti-entropy); memory per
// peer is bounded by MaxQueueBytes plus the in-flight frames.
//
// Package gossip owns the streams: it picks the peers (routes, bridges),
// starts one Stream per target and stops it when the peer goes.
package stream
