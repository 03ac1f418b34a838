// Package write is the one write path of a countmesh node: Incr is a batch
// of one, so an increment and a batch both go through Writer.Apply.
//
// Apply resolves each op's namespace (a first write creates it), reserves
// its label series, and applies the ops under the stripe locks of the hot
// set: it locks the ops' increment ids and checks that none counted in
// another key (package node/idem), brings every counter into memory, locks
// the touched stripes in index order, decides which ops are duplicates,
// checks int64 overflow and the bounds of exact namespaces (package
// node/exact's rights, collected from peers when this node lacks them, and
// then tried again), adds each op to this node's slot and marks the counter
// dirty. After the stripes unlock it counts the label series and window
// buckets (package node/series), waits for the durability the strictest
// namespace asks, and replicates to the nodes the consistency level asks
// for (exact.Quorum).
//
// # Guarantees
//
//   - A write is all or nothing: bad input, an overflow, a crossed bound or
//     a duplicate id with another body refuses the whole request, and
//     nothing is applied.
//   - An id counts at most once, within a request too; a duplicate answers
//     the current value and waits for durability like the first attempt.
//   - Values answered are clamped to the namespace's bounds, as reads are.
//
// The node builds a Writer in node.Open from its subsystems and function
// values (its change feed, its recent ids, its durability wait). A Writer
// is safe for concurrent use.
package write
