// Package crdt holds countmesh's replicated data types: pure values with a
// merge that forms a join-semilattice, so that replicas which receive the same
// updates in any order, any number of times, end in the same state.
//
// The central type is Counter, a PN-counter with one slot per node and an
// observed-reset record. Each node only ever changes its own slot (P grows on
// increments, N grows on decrements); Merge takes the per-slot maximum.
//
// Reset to V is "observed": the resetting node records, as the reset's floor,
// the slot values it had seen, and the counter's value becomes
//
//	V + Σ_i (P_i − floorP_i) − (N_i − floorN_i)
//
// so increments the resetting node had not yet seen survive the reset, and
// two concurrent resets that saw the same increments subtract them once (the
// floors merge by maximum). Concurrent resets to different values are ordered
// by a Lamport epoch, ties broken by node id: the later reset's value wins.
// A delete is a reset to 0 that also hides the counter from listings until a
// later increment arrives.
//
// A state received from elsewhere is checked with Counter.Validate before it
// is merged: slots sorted without duplicates, totals within MaxSlotTotal,
// the reset's epoch within MaxEpoch and its floor dominated by the slots.
// Merging valid states yields a valid state, and Add and SetReset never
// leave those bounds, so every state a replica holds validates.
//
// # Retirement
//
// A counter keeps a slot for every node that ever wrote it, and a node that
// lost its disk comes back under a new slot (NodeIDOf), so slots pile up.
// Retirement folds the slots of nodes that have left for good into one
// retired slot. The cluster agrees on an append-only list of forgotten ids;
// a state's generation (Counter.Gen) says how many of them it has folded,
// and is the id of its retired slot (RetiredID: the ids 1..MaxRetiredGen are
// reserved for retired slots, and no node has one), so the generation
// travels with the slots in every encoding. Counter.Fold removes their
// slots and floor entries and adds
// them, per component, into the retired slot and its floor entry, so the
// value formula and the value stay as they were. Counter.MergeRetired folds
// the lower-generation side up first and then merges as Merge does (Merge
// itself requires equal generations): a late delta of a forgotten node is
// folded on its side and lies below the retired slot, so it counts once.
// That holds under Fold's precondition: a node's slot is final everywhere
// from its cut (the moment it is appended to the list) on, and a replica
// folds it only once it holds every reset made before the cut. Folded
// floors are sums, and sums built from different resets would merge by
// maximum below the per-node maxima. Counter.ValidateRetired checks a state
// against the list. A state of generation 0 (no retired slot) behaves as
// before.
//
// Nothing in this package does I/O, starts goroutines or locks. Values are not
// safe for concurrent use: callers (package node) serialise access.
package crdt
