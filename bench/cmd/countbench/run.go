package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/countmesh/countmesh/bench"
	"github.com/countmesh/countmesh/bench/benchplot"
	"github.com/countmesh/countmesh/client"
	"github.com/countmesh/countmesh/internal/progress"
)

// options are the command-line flags.
type options struct {
	clientKind     string
	rawClient      bool
	addr           string
	mode           string
	concurrency    int
	rate           float64
	duration       time.Duration
	warmup         time.Duration
	batchSize      int
	format         string
	pool           int
	keys           uint64
	dist           string
	zipfS          float64
	ns             string
	consistency    string
	prefill        uint64
	prefillTimeout time.Duration
	timeout        time.Duration
	seed           uint64
	progress       time.Duration
	waitReady      time.Duration
	plot           string
	plotSize       string
	plotW, plotH   int
}

// defaultRate is the open-loop rate of the modes that have one, used when
// --rate is not given.
var defaultRate = map[string]float64{"batch": 0, "batchget": 0, "incr": 5000, "read": 5000, "prefill": 0}

func parseFlags(args []string, stderr io.Writer) (options, *flag.FlagSet, error) {
	var o options
	fs := flag.NewFlagSet("countbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", client.DefaultBaseURL, "node to drive (the only address contacted)")
	fs.StringVar(&o.mode, "mode", "batch", "batch, batchget, incr, read, prefill, or simulate (in-process meshes, no server; --mode simulate -h lists its flags)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "closed loop: workers; open loop: most requests in flight (0: 4 for batch and prefill, 32 for closed incr/read, 512 open)")
	fs.Float64Var(&o.rate, "rate", 0, "open-loop requests/s (default 5000 for incr and read, 0 for batch); 0 runs a closed loop")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before it")
	fs.IntVar(&o.batchSize, "batch-size", client.MaxBatchOps, "increments per batch (batch and prefill)")
	fs.StringVar(&o.format, "format", "msgpack", "batch body encoding: msgpack or json")
	fs.IntVar(&o.pool, "pool", 64, "distinct batch bodies encoded before the run and cycled")
	fs.Uint64Var(&o.keys, "keys", 1_000_000, "key space k00000000..; prefill mode writes this many")
	fs.StringVar(&o.dist, "dist", "uniform", "key distribution: uniform or zipf")
	fs.Float64Var(&o.zipfS, "zipf-s", 1.1, "zipf exponent (> 1)")
	fs.StringVar(&o.ns, "ns", "bench", "namespace")
	fs.StringVar(&o.clientKind, "client", "raw", "incr and read modes: raw (a minimal keep-alive HTTP/1.1 client that costs the shared CPU little) or nethttp (Go's net/http client)")
	fs.StringVar(&o.consistency, "consistency", "", "local, quorum or all (default: the server's)")
	fs.Uint64Var(&o.prefill, "prefill", 0, "write this many distinct keys by batches before the run")
	fs.DurationVar(&o.prefillTimeout, "prefill-timeout", 30*time.Minute, "bound on a prefill")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout; also how long an open loop waits for late answers")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed of the key draws")
	fs.DurationVar(&o.progress, "progress", time.Second, "progress line interval on stderr (0: none)")
	fs.DurationVar(&o.waitReady, "wait-ready", 0, "wait up to this long for /readyz before starting")
	fs.StringVar(&o.plot, "plot", "", "after the run, write `PREFIX`-latency.png (p50, p99, max per second, ms, log scale) and PREFIX-throughput.png (ops/s per second), warm-up included; not with prefill")
	fs.StringVar(&o.plotSize, "plot-size", "800x400", "size of each --plot PNG in pixels, `WIDTHxHEIGHT`")
	if err := fs.Parse(args); err != nil {
		return o, fs, err
	}
	if fs.NArg() > 0 {
		return o, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	rateSet := false
	fs.Visit(func(f *flag.Flag) { rateSet = rateSet || f.Name == "rate" })
	rate, ok := defaultRate[o.mode]
	if !ok {
		return o, fs, fmt.Errorf("--mode %q: want batch, batchget, incr, read, prefill or simulate", o.mode)
	}
	if !rateSet {
		o.rate = rate
	}
	if o.concurrency == 0 {
		switch {
		case o.mode == "batch" || o.mode == "batchget" || o.mode == "prefill":
			o.concurrency = 4
		case o.rate > 0:
			o.concurrency = 512
		default:
			o.concurrency = 32
		}
	}
	switch {
	case o.concurrency < 0:
		return o, fs, fmt.Errorf("--concurrency %d is negative", o.concurrency)
	case o.rate < 0:
		return o, fs, fmt.Errorf("--rate %v is negative", o.rate)
	case o.duration <= 0:
		return o, fs, fmt.Errorf("--duration %v: want more than 0", o.duration)
	case o.warmup < 0:
		return o, fs, fmt.Errorf("--warmup %v is negative", o.warmup)
	case o.batchSize <= 0 || o.batchSize > client.MaxBatchOps:
		return o, fs, fmt.Errorf("--batch-size %d: want 1 to %d", o.batchSize, client.MaxBatchOps)
	case o.format != "msgpack" && o.format != "json":
		return o, fs, fmt.Errorf("--format %q: want msgpack or json", o.format)
	case o.pool <= 0:
		return o, fs, fmt.Errorf("--pool %d: want at least 1", o.pool)
	case o.keys == 0:
		return o, fs, errors.New("--keys 0: want at least 1")
	case o.consistency != "" && o.consistency != "local" && o.consistency != "quorum" && o.consistency != "all":
		return o, fs, fmt.Errorf("--consistency %q: want local, quorum or all", o.consistency)
	case o.timeout <= 0:
		return o, fs, fmt.Errorf("--timeout %v: want more than 0", o.timeout)
	}
	if _, err := fmt.Sscanf(o.plotSize, "%dx%d", &o.plotW, &o.plotH); err != nil ||
		fmt.Sprintf("%dx%d", o.plotW, o.plotH) != o.plotSize || o.plotW < 100 || o.plotH < 100 || o.plotW > 10000 || o.plotH > 10000 {
		return o, fs, fmt.Errorf("--plot-size %q: want WIDTHxHEIGHT in pixels, 100 to 10000 each, such as 800x400", o.plotSize)
	}
	if o.plot != "" && o.mode == "prefill" {
		return o, fs, errors.New("--plot: prefill mode has no timeline to plot; plot a batch, batchget, incr or read run")
	}
	if _, err := bench.NewKeyGen(bench.Dist(o.dist), o.keys, o.zipfS, o.seed); err != nil {
		return o, fs, err
	}
	switch o.clientKind {
	case "raw":
		o.rawClient = true
	case "nethttp":
	default:
		return o, fs, fmt.Errorf("--client must be raw or nethttp, got %q", o.clientKind)
	}
	return o, fs, nil
}

// configOf lists every flag's value for the summary.
func configOf(fs *flag.FlagSet, o options) map[string]any {
	cfg := map[string]any{}
	fs.VisitAll(func(f *flag.Flag) {
		v := any(f.Value.String())
		if g, ok := f.Value.(flag.Getter); ok {
			v = g.Get()
		}
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		cfg[f.Name] = v
	})
	// The effective values of the flags that have mode-dependent defaults.
	cfg["rate"] = o.rate
	cfg["concurrency"] = o.concurrency
	cfg["open_loop"] = o.rate > 0 && o.mode != "prefill"
	return cfg
}

// run is countbench; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if isSimulate(args) {
		return runSimulate(ctx, args, stdout, stderr)
	}
	o, fs, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "countbench: %v\n", err)
		if fs != nil {
			fs.Usage()
		}
		return 2
	}
	ccfg := client.DefaultConfig()
	ccfg.BaseURL = o.addr
	ccfg.Timeout = o.timeout
	ccfg.HTTPClient = client.NewHTTPClient(o.concurrency + 16)
	c, err := client.New(ccfg)
	if err != nil {
		fmt.Fprintf(stderr, "countbench: %v\n", err)
		return 2
	}
	var progressLines io.Writer
	if o.progress > 0 {
		progressLines = stderr
	}
	enc := client.EncodingMsgpack
	if o.format == "json" {
		enc = client.EncodingJSON
	}
	cfg := configOf(fs, o)

	if o.waitReady > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.waitReady)
		err := c.WaitReady(wctx, 100*time.Millisecond)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
	}

	prefill := func(keys uint64) (bench.Result, error) {
		pctx, cancel := context.WithTimeout(ctx, o.prefillTimeout)
		defer cancel()
		pcfg := bench.PrefillConfig{NS: o.ns, Keys: keys, BatchSize: o.batchSize, Workers: o.concurrency,
			Encoding: enc, Consistency: client.Consistency(o.consistency), Retries: 5, Progress: progressLines}
		if o.mode != "prefill" {
			pcfg.Workers = 4
		}
		// On a terminal a bar replaces the progress lines, as countctl
		// export and import show theirs.
		bar := progress.New(stderr, int64(keys), "prefill", progress.Items)
		if bar != nil {
			pcfg.Progress = nil
			pcfg.Written = func(n int) { bar.Add(int64(n)) }
		}
		res, err := bench.Prefill(pctx, c, pcfg)
		if err == nil {
			bar.Finish()
		}
		return res, err
	}

	if o.mode == "prefill" {
		res, err := prefill(o.keys)
		code := finish(stdout, stderr, bench.NewSummary("prefill", res, cfg))
		if err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
		return code
	}
	if o.prefill > 0 {
		res, err := prefill(o.prefill)
		if err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "prefill: %d keys in %.1fs (%.0f keys/s)\n", res.Ops, res.Duration.Seconds(),
			float64(res.Ops)/res.Duration.Seconds())
	}

	newGen := func(worker int) bench.KeyGen {
		// Validated in parseFlags, so this cannot fail.
		g, _ := bench.NewKeyGen(bench.Dist(o.dist), o.keys, o.zipfS, o.seed*1_000_003+uint64(worker))
		return g
	}
	var newOp func(worker int) bench.Op
	consistency := client.Consistency(o.consistency)
	switch o.mode {
	case "batch":
		fmt.Fprintf(stderr, "encoding %d %s bodies of %d ops...\n", o.pool, o.format, o.batchSize)
		bodies, err := bench.BuildBatchBodies(o.ns, o.pool, o.batchSize, newGen(-1), enc, consistency)
		if err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
		newOp = func(w int) bench.Op { return bench.BatchOp(c, bodies, w*o.pool/o.concurrency) }
	case "batchget":
		bodies, err := bench.BuildGetManyBodies(o.ns, o.pool, o.batchSize, newGen(-1), consistency)
		if err != nil {
			fmt.Fprintf(stderr, "countbench: %v\n", err)
			return 1
		}
		newOp = func(w int) bench.Op { return bench.BatchOp(c, bodies, w*o.pool/o.concurrency) }
	case "incr":
		body := bench.IncrBody(consistency)
		newOp = func(w int) bench.Op { return bench.IncrOp(c, o.ns, newGen(w), body) }
		if o.rawClient {
			newOp = func(w int) bench.Op {
				op, _ := bench.RawIncrOp(c.BaseURL(), o.ns, newGen(w), body) // address checked below
				return op
			}
		}
	case "read":
		newOp = func(w int) bench.Op { return bench.ReadOp(c, o.ns, newGen(w), consistency) }
		if o.rawClient {
			newOp = func(w int) bench.Op {
				op, _ := bench.RawReadOp(c.BaseURL(), o.ns, newGen(w), consistency)
				return op
			}
		}
	}
	if o.rawClient && o.mode != "batch" && o.mode != "batchget" {
		if _, err := bench.RawReadOp(c.BaseURL(), o.ns, newGen(0), consistency); err != nil {
			fmt.Fprintf(stderr, "countbench: --client raw: %v\n", err)
			return 2
		}
	}
	rcfg := bench.RunConfig{
		Rate: o.rate, Workers: o.concurrency, Warmup: o.warmup, Duration: o.duration,
		Grace: o.timeout, Progress: progressLines, ProgressEvery: o.progress, Label: o.mode + " ",
	}
	if o.plot != "" {
		rcfg.SampleEvery = time.Second
	}
	res, err := bench.Run(ctx, rcfg, newOp)
	if err != nil {
		fmt.Fprintf(stderr, "countbench: %v\n", err)
		return 2
	}
	plotted := writePlots(stderr, o, res)
	code := finish(stdout, stderr, bench.NewSummary(o.mode, res, cfg))
	if code == 0 && !plotted {
		code = 1
	}
	return code
}

// writePlots writes the --plot PNGs, if asked, and says where on stderr; it
// reports whether it succeeded.
func writePlots(stderr io.Writer, o options, res bench.Result) bool {
	if o.plot == "" {
		return true
	}
	title := fmt.Sprintf("%s, %d workers", o.mode, o.concurrency)
	if o.rate > 0 {
		title = fmt.Sprintf("%s at %g req/s", o.mode, o.rate)
	}
	paths, err := benchplot.WriteFiles(o.plot, res.Timeline, benchplot.Options{Width: o.plotW, Height: o.plotH, Title: title})
	for _, p := range paths {
		fmt.Fprintf(stderr, "wrote %s\n", p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "countbench: --plot: %v\n", err)
		return false
	}
	return true
}

// finish prints the summary as the last line on stdout.
func finish(stdout, stderr io.Writer, s bench.Summary) int {
	if err := s.WriteLine(stdout); err != nil {
		fmt.Fprintf(stderr, "countbench: %v\n", err)
		return 1
	}
	if s.Ops == 0 && s.Requests > 0 {
		fmt.Fprintf(stderr, "countbench: no request succeeded; errors by code: %v\n", s.ErrorsByCode)
		return 1
	}
	return 0
}
