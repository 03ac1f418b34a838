// Command countd is the countmesh server: one peer of the counter mesh,
// serving the HTTP/JSON API of spec/API.md. With no flags it runs a single
// node on 127.0.0.1:7070 with its data in ./data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/httpapi"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr, nil))
}

// options are the daemon's flags.
type options struct {
	nodeName      string
	region        string
	dataDir       string
	httpAddr      string
	gossipAddr    string
	advertiseAddr string
	join          string
	cacheCounters int
	durability    string
	logLevel      string
	logFormat     string
}

// parseFlags reads flags, then COUNTMESH_<FLAG> environment variables for
// the flags not given on the command line.
func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	def := node.DefaultConfig()
	var o options
	fs := flag.NewFlagSet("countd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.nodeName, "node-name", def.Name, "unique name of this node in the mesh")
	fs.StringVar(&o.region, "region", def.Region, "region (data center) this node belongs to")
	fs.StringVar(&o.dataDir, "data-dir", def.Store.Dir, "Pebble directory; created if missing")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7070", "HTTP/JSON API address")
	fs.StringVar(&o.gossipAddr, "gossip-addr", "127.0.0.1:7946", "memberlist bind address (TCP and UDP); off runs a single node")
	fs.StringVar(&o.advertiseAddr, "advertise-addr", "", "address other nodes use to reach this one (default: from gossip-addr)")
	fs.StringVar(&o.join, "join", "", "comma-separated gossip addresses of nodes already in the mesh")
	fs.IntVar(&o.cacheCounters, "cache-counters", def.CacheCounters, "counters kept in memory; the rest are read through from Pebble")
	fs.StringVar(&o.durability, "durability", def.DefaultDurability, "default durability of new namespaces: sync or async")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or console")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q; countd takes only flags", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "COUNTMESH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return o, errors.Join(errs...)
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("log-format must be json or console, got %q", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return cfg.Build()
}

// run starts the daemon and blocks until a signal (or stop, in tests) asks
// it to shut down. It returns the process exit code.
func run(args []string, stderr io.Writer, stop <-chan struct{}) int {
	o, err := parseFlags(args, stderr, os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "countd: %v\n", err)
		return 2
	}
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "countd: %v\n", err)
		return 2
	}
	defer log.Sync()
	if err := serve(o, log, stop); err != nil {
		log.Error("countd stopped with an error", zap.Error(err))
		return 1
	}
	return 0
}

func serve(o options, log *zap.Logger, stop <-chan struct{}) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	cfg := node.DefaultConfig()
	cfg.Name = o.nodeName
	cfg.Region = o.region
	cfg.Store.Dir = o.dataDir
	cfg.CacheCounters = o.cacheCounters
	cfg.DefaultDurability = o.durability
	cfg.Registerer = reg
	cfg.Logger = log
	meshOn := o.gossipAddr != "off"
	if !meshOn && o.join != "" {
		return fmt.Errorf("--join needs the mesh; it is off (--gossip-addr off)")
	}
	// With the mesh, /readyz waits until the node has asked its peers for
	// the changes it may have lost (its own slot after a restart).
	cfg.StartUnready = meshOn
	// The quorum and all consistency levels reach the peers the mesh lists
	// over the internal HTTP routes; until the mesh starts, none.
	peers, peerClient := new(httpapi.ClusterPeers), httpapi.NewPeerClient()
	defer peerClient.Close()
	cfg.Peers, cfg.PeerTransport, cfg.Rights = peers, peerClient, peerClient

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on http-addr %s: %w", o.httpAddr, err)
	}
	n, err := node.Open(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	var mesh *gossip.Mesh
	if meshOn {
		mesh, err = startMesh(o, ln.Addr().String(), n, log)
		if err != nil {
			ln.Close()
			n.Close()
			return err
		}
	}
	apiCfg := httpapi.Config{Node: n, Registerer: reg, Gatherer: reg, Logger: log}
	if mesh != nil {
		apiCfg.Cluster = mesh
		peers.Set(mesh)
	}
	// Rate limits: one owner per limit among the mesh's live members (this
	// node alone without the mesh); leases travel over the internal route.
	rlCfg := ratelimit.DefaultConfig()
	rlCfg.Membership, rlCfg.Transport, rlCfg.Logger = ratelimit.Single(cfg.Name), ratelimit.NewHTTPTransport(nil), log.Named("ratelimit")
	if mesh != nil {
		rlCfg.Membership = ratelimit.MeshMembership(mesh)
	}
	if apiCfg.RateLimit, err = ratelimit.New(rlCfg); err != nil {
		ln.Close()
		if mesh != nil {
			mesh.Close()
		}
		n.Close()
		return err
	}
	defer apiCfg.RateLimit.Close()
	api, err := httpapi.New(apiCfg)
	if err != nil {
		ln.Close()
		if mesh != nil {
			mesh.Close()
		}
		n.Close()
		return err
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	srv.RegisterOnShutdown(api.CloseStreams) // watch streams would hold Shutdown
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	catchUpCtx, stopCatchUp := context.WithCancel(context.Background())
	defer stopCatchUp()
	if mesh != nil {
		go catchUp(catchUpCtx, mesh, n, log)
	}
	log.Info("countd serving", zap.String("http_addr", ln.Addr().String()), zap.String("node", cfg.Name),
		zap.String("region", cfg.Region), zap.String("data_dir", cfg.Store.Dir),
		zap.String("durability", cfg.DefaultDurability), zap.String("cache_counters", strconv.Itoa(cfg.CacheCounters)))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var serveErr error
	select {
	case s := <-sigs:
		log.Info("shutting down", zap.String("signal", s.String()))
	case <-stop:
		log.Info("shutting down")
	case serveErr = <-served:
		log.Error("HTTP server failed", zap.Error(serveErr))
	}

	// Stop accepting, let requests in flight finish, then flush and close
	// the node, all within 10 s.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	shutErr := srv.Shutdown(ctx)
	if mesh != nil {
		// Commit and stream what is pending, then leave the mesh.
		if err := n.Flush(ctx); err != nil {
			log.Warn("flush before leaving the mesh", zap.Error(err))
		}
		// Leaving is best effort: when the whole mesh stops at once nobody
		// is left to hear the leave broadcast, which is not a failure of
		// this node (the others will see it fail and forget it later).
		if err := mesh.Close(); err != nil {
			log.Warn("leaving the mesh", zap.Error(err))
		}
	}
	closeErr := n.Close()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, shutErr, closeErr)
}

// startMesh joins the node to the mesh.
func startMesh(o options, httpAddr string, n *node.Node, log *zap.Logger) (*gossip.Mesh, error) {
	gcfg := gossip.DefaultConfig()
	gcfg.Name = o.nodeName
	gcfg.Region = o.region
	gcfg.HTTPAddr = advertisedHTTP(httpAddr, o.advertiseAddr, o.gossipAddr)
	gcfg.GossipAddr = o.gossipAddr
	gcfg.AdvertiseAddr = o.advertiseAddr
	gcfg.Logger = log.Named("gossip")
	mesh, err := gossip.New(gcfg, n)
	if err != nil {
		return nil, err
	}
	if err := mesh.Start(); err != nil {
		return nil, fmt.Errorf("start the mesh on %s: %w", o.gossipAddr, err)
	}
	n.SetPublisher(mesh)
	if o.join != "" {
		addrs := strings.Split(o.join, ",")
		if got, err := mesh.Join(addrs); err != nil {
			// The mesh keeps retrying the join addresses in the background.
			log.Warn("no join address answered yet; retrying in the background", zap.Strings("join", addrs), zap.Error(err))
		} else {
			log.Info("joined the mesh", zap.Int("answered", got), zap.Strings("join", addrs))
		}
	}
	return mesh, nil
}

// catchUp runs an anti-entropy round with the peers, recovering this node's
// own slot as max(own disk, peers' copies), then reports ready. When join
// addresses were given it retries until a round succeeds: a node whose disk
// was lost must not count from zero while its peers hold its slot (its new
// increments would be masked by the higher copies). Without join
// addresses it is the first node of a new mesh and is ready at once.
func catchUp(ctx context.Context, mesh *gossip.Mesh, n *node.Node, log *zap.Logger) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := mesh.SyncOnce(syncCtx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("not ready: could not sync with peers yet; retrying", zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	n.MarkReady()
	log.Info("ready", zap.Duration("catch_up", time.Since(start)))
}

// advertisedHTTP is the HTTP address other nodes and /v1/cluster show: the
// listen address, with an unspecified host (0.0.0.0, ::) replaced by the
// host of --advertise-addr, or else of --gossip-addr when that is specific.
func advertisedHTTP(listen, advertise, gossipAddr string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen
	}
	for _, a := range []string{advertise, gossipAddr} {
		h, _, err := net.SplitHostPort(a)
		if err != nil || h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			continue
		}
		return net.JoinHostPort(h, port)
	}
	return listen
}
