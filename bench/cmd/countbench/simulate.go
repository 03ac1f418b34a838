package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/countmesh/countmesh/bench/benchplot"
	"github.com/countmesh/countmesh/bench/simulate"
)

// isSimulate reports whether args ask for --mode simulate, which has flags
// of its own (no server is contacted).
func isSimulate(args []string) bool {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "mode" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		return value == "simulate"
	}
	return false
}

// runSimulate is countbench --mode simulate: the scale-out simulation of
// package bench/simulate for each mesh size of --nodes, then a table and
// one JSON line per size on stdout.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("countbench --mode simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		mode    string
		nodes   string
		cfg     simulate.Config
		seed    uint64
		verbose bool
		plotTo  string
	)
	fs.StringVar(&mode, "mode", "simulate", "simulate")
	fs.StringVar(&nodes, "nodes", "10,25,50,100", "mesh sizes to simulate, comma-separated (each at least 2)")
	fs.IntVar(&cfg.Replicas, "replicas", 0, "nodes per region holding each counter (the namespace is sharded over them); 0 = every node")
	fs.IntVar(&cfg.Regions, "regions", 5, "regions the nodes are spread over, round-robin")
	fs.Float64Var(&cfg.Rate, "rate", 2000, "changes per second over the whole mesh, whatever its size")
	fs.IntVar(&cfg.Keys, "keys", 100_000, "distinct counters of the cold share of the load")
	fs.IntVar(&cfg.HotKeys, "hot-keys", 100, "counters of the hot share")
	fs.Float64Var(&cfg.HotShare, "hot-share", 0.5, "share of the changes that go to the hot counters")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured load time per mesh size")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "load time before the measured one (streams open, the join's membership traffic settles)")
	fs.DurationVar(&cfg.ProbeEvery, "probe-every", 100*time.Millisecond, "interval of the convergence probes")
	fs.DurationVar(&cfg.Settle, "settle", 10*time.Second, "how long to wait for the last probes after the load")
	fs.Uint64Var(&seed, "seed", 1, "random seed")
	fs.BoolVar(&verbose, "v", false, "log the meshes' warnings to stderr")
	fs.StringVar(&plotTo, "plot", "", "after the runs, write `PREFIX`-applied.png (changes made and applied per node per second, against the mesh size) and PREFIX-convergence.png (p50 and p99)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "countbench: %v\n", err)
		return 2
	}
	var sizes []int
	for _, s := range strings.Split(nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(stderr, "countbench: --nodes %q: want sizes of at least 2, comma-separated, such as 10,25,50,100\n", nodes)
			return 2
		}
		sizes = append(sizes, n)
	}
	switch {
	case cfg.Replicas < 0:
		fmt.Fprintf(stderr, "countbench: --replicas %d: want 0 (every node) or more\n", cfg.Replicas)
		return 2
	case mode != "simulate":
		fmt.Fprintf(stderr, "countbench: --mode %q given twice with different values\n", mode)
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "countbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if verbose {
		cfg.Logger = stderrLogger(stderr)
	}
	var results []simulate.Result
	for i, n := range sizes {
		c := cfg
		c.Nodes = n
		c.Regions = min(cfg.Regions, n)
		c.Seed = seed + uint64(i)
		fmt.Fprintf(stderr, "simulate: %d nodes in %d regions, %d replicas, %.0f changes/s for %v after %v of warm-up\n", n, c.Regions, c.Replicas, c.Rate, c.Duration, c.Warmup)
		res, err := simulate.Run(ctx, c)
		if err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
		results = append(results, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\treplicas\tchanges/s\tapplied/node/s\towner share\tbytes/node/s\tconv p50 ms\tconv p99 ms\tcounters/node\tprobes\tunconverged\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.3f\t%.0f\t%.1f\t%.1f\t%.0f\t%d\t%d\t\n", r.Nodes, r.Replicas, r.ChangesPerS, r.AppliedPerNodePerS,
			r.OwnerShare, r.BytesPerNodePerS, r.ConvergenceP50Ms, r.ConvergenceP99Ms, r.CountersPerNode, r.Probes, r.Unconverged)
	}
	tw.Flush()
	enc := json.NewEncoder(stdout)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
	}
	if plotTo != "" {
		paths, err := plotSimulation(plotTo, results)
		if err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "simulate: wrote %s\n", strings.Join(paths, " and "))
	}
	return 0
}

// plotSimulation draws the runs' curves against the mesh size.
func plotSimulation(prefix string, results []simulate.Result) ([]string, error) {
	var x, made, applied, ideal, p50, p99 []float64
	for _, r := range results {
		x = append(x, float64(r.Nodes))
		made = append(made, r.ChangesPerS)
		applied = append(applied, r.AppliedPerNodePerS)
		ideal = append(ideal, r.ChangesPerS*r.OwnerShare)
		p50 = append(p50, r.ConvergenceP50Ms)
		p99 = append(p99, r.ConvergenceP99Ms)
	}
	label := fmt.Sprintf("replicas %d", results[0].Replicas)
	if results[0].Replicas == 0 {
		label = "full replication"
	}
	o := benchplot.DefaultOptions()
	charts := []struct {
		path, title, y string
		curves         []benchplot.Curve
	}{
		{prefix + "-applied.png", "changes per second", "changes/s", []benchplot.Curve{
			{Name: "made in the whole mesh", X: x, Y: made},
			{Name: "applied per node, " + label, X: x, Y: applied},
			{Name: "made x owner share", X: x, Y: ideal},
		}},
		{prefix + "-convergence.png", "time for a change to reach every owner, " + label, "ms", []benchplot.Curve{
			{Name: "p50", X: x, Y: p50},
			{Name: "p99", X: x, Y: p99},
		}},
	}
	var paths []string
	for _, c := range charts {
		f, err := os.Create(c.path)
		if err != nil {
			return paths, err
		}
		err = benchplot.Curves(f, c.title, "nodes", c.y, c.curves, o)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("%s: %w", c.path, err)
		}
		paths = append(paths, c.path)
	}
	return paths, nil
}

// stderrLogger logs warnings and errors to w.
func stderrLogger(w io.Writer) *zap.Logger {
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zapcore.WarnLevel))
}
