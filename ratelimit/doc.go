// Package ratelimit is countmesh's API rate limiter: sliding-window limits
// ("100 per minute for this key") decided on any node of the mesh, in
// agreement with the others, without a network round trip per decision.
//
// # Semantics
//
// A limit is identified by (namespace, key, window); the limit (units per
// window) and the cost come with each request. Windows are fixed intervals
// aligned to the Unix epoch; a request of cost c is admitted when
//
//	prev × (1 − elapsed/window) + curr + c <= limit
//
// where curr and prev are the units taken in the current and the previous
// window and elapsed is the time into the current one. A refused request
// takes nothing.
//
// # Across the mesh
//
// A lease request is checked against what its sender could have admitted
// before it counts: a want and a returned lease within the limit, reported
// counts of recent windows only, each within the limit. A member cannot
// make a refused key admit again or lock another key out.
//
// Each limit has one owner, chosen by rendezvous hashing over the live
// members (Membership), which holds the authoritative window counts. The
// owner decides its own requests directly. Another node asks the owner for
// a lease (Transport; countd uses the mesh's peer transport, package
// peerrpc, which names the caller from the connection, not from the body):
// a chunk of the remaining budget,
// max(cost, remaining / (2 × members)), counted as taken at once and valid
// until the owner's window ends. The node admits from its lease locally and
// asks again only when it runs out; as the budget runs low the chunks shrink
// to single units, so the last units go where the requests are. The unused
// rest of a lease goes back to the owner after Config.ReturnIdle without
// use, or with the next lease request. While the owner can reach everyone,
// the units admitted in a window never exceed the limit: every unit
// admitted anywhere was counted by the owner first.
//
// When the owner cannot be reached, a node decides on its share of the
// limit, limit / members, against everything it admitted itself in the
// window, and does not ask the owner again for Config.OwnerDownHold. When
// it next reaches an owner it has not reported to (after a partition heals,
// or when the owner changed because a member died, left or joined), it
// reports what it admitted in the current and previous windows, and that
// owner adds it to its counts. A node that becomes an owner starts from
// what it admitted itself.
//
// Bounds, per window: limit while the nodes reach each other; limit +
// (limit / members) × (nodes cut off from the owner) while a partition is
// not yet noticed by the membership; limit × (number of sides) once each
// side has its own owner; after an owner dies, at most 2 × limit (limit +
// what the dead owner admitted itself + what the survivors admitted before
// they first reach the new owner). docs/ratelimit.md derives them.
//
// # Expiry
//
// A limit's state is dropped two windows after its last use, when its
// counts no longer weigh on any estimate; Config.MaxKeys bounds the limits
// held at once.
//
// # Use
//
//	l, err := ratelimit.New(cfg) // cfg := DefaultConfig(); cfg.Membership = ...
//	defer l.Close()
//	d, err := l.Decide(ctx, ratelimit.Request{NS: "api", Key: "user:1", Limit: 100, Window: time.Minute, Cost: 1})
//
// and serve HandleLease to the other nodes.
package ratelimit
