// Package campaign runs countmesh's chaos campaign: real countd processes,
// each in a network namespace of its own with its data on a tmpfs, a
// nemesis that injects faults chosen from a seed (partitions, kills,
// pauses, wipes, joins, leaves, clock skew, a full disk, failing fsyncs)
// and heals them, clients that record every operation into a
// chaos.History, and, once every fault is healed and the mesh settled, the
// final reads that chaos.Check judges.
//
// Run starts a campaign from a Config and returns its Result. It needs
// Linux, root, iproute2 and iptables; its tests carry the build tag chaos
// and run only through make chaos and make chaos-sabotage (docs/chaos.md).
package campaign
