// Package nsconfig holds the namespaces of a node: their configs (Config,
// the PUT patch, Normalize, the sketch parameters of an approximate
// namespace), the record the store keeps for each (Record: the config, its
// hybrid logical clock and origin, the bank of an exact namespace's rights)
// with its parsed form (Runtime) and its counter type (CounterType:
// eventual, exact, approximate), and the table of them (Table).
//
// The Table loads the records from the store at start, creates a namespace
// on its first write, persists and installs a new record, and replicates
// them last-writer-wins by hybrid logical clock: it is the replica's view of
// the namespaces (replica.Namespaces: Records, Check, Install), and the
// import of an export file installs through InstallNewer.
//
// # Guarantees
//
//   - A record is immutable once installed; a change of config installs a
//     new one, durably (the store's batch is synced) before it is visible.
//   - A new namespace past TableConfig.MaxNamespaces is refused, whoever
//     creates it (a first write, PUT, or a config record from a peer).
//   - A config record from a peer is installed only when it decodes,
//     normalizes, names known origins and carries a clock at most
//     MaxClockOffset ahead; a bad one is refused with ErrInvalidPeerData.
//
// Package node re-exports the public types (node.NamespaceConfig is
// Config, node.NamespacePatch is Patch). A Table is safe for concurrent
// use; its lock is taken before a stripe lock of the hot set, never under
// one.
package nsconfig
