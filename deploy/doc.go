// Package deploy holds the files that run and watch countmesh outside this
// repository: Kubernetes manifests (kubernetes/), Prometheus alert rules
// (prometheus/) and a Grafana dashboard (grafana/). It has no Go code of
// its own; its test builds countd, runs two nodes with some traffic, and
// checks every file against them: each metric a dashboard panel or an alert
// uses is one the nodes export on /metrics, and the manifests' container
// arguments are flags countd accepts. docs/operations.md says how to apply
// them.
package deploy
