// Package gossip is countmesh's membership and replication between nodes:
// hashicorp/memberlist for membership and failure detection, a persistent
// stream per peer for the node's own changes, and scuttlebutt anti-entropy
// to repair whatever the streams missed. It sees the node only through the
// Replica interface and never imports package node.
//
// # Using it
//
// The node creates a Mesh over its Replica, starts it, joins the mesh,
// catches up before it reports ready, publishes every durable change, and
// closes it on shutdown:
//
//	m, err := gossip.New(cfg, replica) // validates cfg; no I/O
//	err = m.Start()                    // replication listener, then memberlist, then loops
//	_, err = m.Join(joinAddrs)         // gossip addresses of any live members
//	err = m.SyncOnce(ctx)              // before /readyz turns 200, ctx bounded
//	m.Publish(batch)                   // after each group commit; never blocks
//	st, stats := m.Status(), m.Stats() // GET /v1/cluster, /metrics
//	err = m.Close()                    // flush, leave, stop; idempotent
//
// A node needs two addresses: Config.GossipAddr for memberlist (TCP and
// UDP, 7946 by default) and Config.ReplAddr for the peer listener (TCP; by
// default the gossip host with the gossip port + 1, so 7947), which
// carries every node-to-node exchange: replication streams, anti-entropy
// and the peer calls (Call, Handle: package peerrpc binds them; see
// gossip/transport). Both are advertised to the others (the peer address
// in the memberlist node meta), so only the gossip address is ever given
// to Join.
//
// # Security
//
// With Config.TLS every connection of the peer listener runs mutual TLS:
// a peer without a certificate signed by the CA gets nothing but a closed
// connection, and a hello must name the node its certificate was issued
// to. A member joins this node's view (Status, routes, calls) only once a
// probe of its peer listener proved its name; until then memberlist may
// gossip with it, but no counter data goes to or comes from it. With
// Config.GossipKeys memberlist encrypts with a keyring, rotated at run
// time by SetGossipKeys. Without TLS a hello must still name a member this
// node knows (any state), for streams, exchanges and calls.
//
// # What it guarantees
//
//   - Only durable data leaves a node: Publish takes changes after their
//     commit, anti-entropy reads the replica, and a receiver acknowledges a
//     frame only after Replica.Apply returned (durable).
//   - Eventual delivery: every change a node holds reaches every node it
//     stays connected to, directly or through others, whatever was lost on
//     the way (dropped batches, broken streams, partitions, restarts):
//     anti-entropy compares version vectors and sends the difference.
//     Applying anything twice is harmless (CRDT merge).
//   - A version vector never runs ahead of the data: a batch's Range
//     {Origin, After, Upto} is sent only with (or after, on the same
//     connection) every delta it covers, and a replica advances its vector
//     only over contiguous ranges. Superseded changes are never needed: a
//     later change of the same counter carries the whole slot.
//   - Publish never blocks on the network. Memory per peer is bounded
//     (MaxQueueBytes of queued changes plus MaxInflightFrames frames); a
//     batch that does not fit is dropped for that peer, counted
//     (Stats.Drops) and repaired by anti-entropy.
//   - With FanOutBridge, a change crosses each region boundary once when
//     the mesh is healthy: the origin streams to every node of its region
//     and to one bridge per remote region, which relays it to the rest of
//     its region. Every node picks the same bridge for an origin:
//     the highest rendezvous hash of (origin, member name) among the
//     region's alive members; when the bridge dies, that origin's traffic
//     moves to the next member.
//   - Healthy-case latency is one flush interval plus a round trip, plus
//     one more flush and a local round trip through a bridge (about 0.2 s
//     across continents with the defaults). A dropped change is repaired
//     once it is AntiEntropyGrace old, by the next exchange with a peer
//     that lacks it (about 1-2 s with the defaults and a few nodes).
//
// Nothing is ordered across counters, and nothing is transactional across
// nodes: replicas converge by merging.
//
// # Sharded namespaces
//
// With Config.Replicas answering R > 0 for a namespace, each of its keys
// lives on R members of each region, chosen per partition by ShardOwners
// (rendezvous with bounded loads). The replica numbers its changes of such
// a namespace per shard in a sequence space of its own
// (change.Shard.Space), which every mechanism below treats as an origin;
// Publish sends them straight to the shard's owners, bridges do not relay
// them, and anti-entropy gives a peer only the spaces of shards it owns
// (and a writer its own). A replica that drops what it holds of shards it
// does not own (node/replica's release marks) gives anti-entropy a floor
// below which it sends a space to no one, and advertises 0 for a space it
// released of a shard it owns again, so that a co-owner hands it all back.
// See shard.go and docs/scale.md.
//
// # Streams and anti-entropy
//
// Each node keeps one outgoing stream per peer it sends to (the peers of
// its region, and the bridges; every peer with FanOutDirect), coalescing
// what it queues, flushed every FlushInterval (package gossip/stream).
// Every AntiEntropyInterval (jittered) it runs a push-pull exchange of
// version vectors and missing changes with a random alive peer, from
// another region with probability AntiEntropyRemote (package
// gossip/antientropy, which documents the protocol). SyncOnce asks for
// everything (full) from one peer of every region.
//
// # Membership
//
// One memberlist pool spans the regions. memberlist has one set of timings
// per pool, so the defaults (Membership) keep LAN-like probing, 1 s, with a
// probe timeout of 600 ms that covers cross-region round trips and a
// WAN-like suspicion multiplier of 6, so that one lost packet across an
// ocean does not kill a healthy node; memberlist's own gossip carries
// membership only. The node meta (msgpack array: version, region, HTTP
// address, replication address, leaving) is well under memberlist's 512
// bytes. A graceful Leave first flushes the queues, then sets "leaving" in
// the meta and broadcasts it, then leaves memberlist, so that the others
// record the member as left (memberlist does not tell its event delegate
// left from failed) and stop retrying it.
//
// memberlist forgets a dead member; like serf, every ReconnectInterval
// (500 ms) a node probes the replication addresses of up to 4 random failed
// members (in the background, one probe per member at a time, each with the
// full dial timeout) and joins those that answer; it probes alive members
// whose replication has failed for over a second the same way; when it has failed members or no peers it also joins
// one of the addresses once given to Join. A healed partition therefore
// reconnects within a few intervals without an operator. Failed members are
// retried for ReconnectTimeout, members that left are listed for
// TombstoneTimeout. A node restarted under the same name rejoins as itself
// (memberlist refutes the old incarnation; DeadNodeReclaimTime lets it
// come back at a new address). Status reports a member memberlist still
// counts alive as "suspect" while this node cannot reach its replication
// address (memberlist does not expose its own suspicion).
//
// # Packages
//
// Package gossip is the facade and the membership glue (memberlist, node
// meta, verification, reconnects, routes and bridges). It is built from:
//
//   - gossip/transport: the peer listener, dials, the hello, mutual TLS,
//     the frame format and the peer calls (Call, Handle) with their wire
//     format;
//   - gossip/stream: the per-peer outgoing queue and stream of this node's
//     changes, and the receiving side;
//   - gossip/antientropy: the push-pull exchange of version vectors and
//     the changes the other side lacks;
//   - gossip/internal/stats: the counters behind Stats.
//
// The delta types (Delta, Range, Batch, ConfigRecord) are package
// change's, below node and gossip; gossip keeps their names as aliases.
//
// # Failure behaviour
//
//   - A slow or stalled peer: its queue coalesces, then fills; further
//     batches for it are dropped and counted, its lag grows; anti-entropy
//     repairs it. An unacknowledged frame older than IOTimeout resets the
//     connection.
//   - A peer or bridge that dies: its queue is discarded (anti-entropy
//     repairs it when it returns); the bridge choice moves on.
//   - A partition: both sides keep accepting writes and replicating among
//     themselves; after the heal, the reconnect loop rejoins the sides and
//     anti-entropy exchanges the difference.
//   - A restart with its data: the node rejoins as itself and SyncOnce
//     brings what it missed. A restart without its data: SyncOnce returns
//     the peers' copies of its own slot, with the vector to continue from.
//   - A replica that refuses a batch: the frame is not acknowledged and is
//     sent again after a reconnect.
//
// Stats count replication bytes by peer region, with the part that
// anti-entropy moved apart; memberlist's own traffic is not included.
package gossip
