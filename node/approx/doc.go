// Package approx owns the approximate namespaces' sketches
// (docs/approximate.md). A namespace of type approximate keeps no counter
// per key: it keeps one Count-Min Sketch of w×d cells, and each cell is an
// internal counter (keyspace.KindSketch) with one slot per node, stored,
// group-committed, replicated and repaired exactly like a user's counter.
// An increment of key k by `by` adds `by` to this node's slot of the d cells
// (r, h_r(k)) and of the namespace's total (Sketches.Add); a read is the
// smallest of k's d cells, with the error bound ⌈ε·total⌉
// (Sketches.Estimate). Merging the cells (per-slot maximum, sum over slots)
// yields the sketch of the union of every node's increments, so
// replication and partitions behave as they do for the exact types, and the
// memory of a namespace is w×d+1 counters whatever the number of keys.
//
// Top-K (Sketches.Top) comes from a Space-Saving summary per namespace, in
// memory, fed by this node's own increments: it names the candidate keys
// (those heavy in what this node counted), and their counts are read from
// the merged, mesh-wide sketch.
//
// The node's increments and reads of an approximate namespace go through
// Sketches.Incr and Sketches.Get, which refuse what a sketch cannot honour
// (Refused: decrements, ids, labels, event times, reads at a time, the
// quorum levels) before they touch a cell.
//
// The package holds the cell layout, the heavy hitters and those refusals;
// it reaches the cells only through the function values of Config, and
// does not import package node, which decides (through its namespace table,
// package node/nsconfig) which namespaces are approximate.
package approx
