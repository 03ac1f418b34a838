package main

import (
	"context"
	"crypto/tls"
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
	"github.com/countmesh/countmesh/internal/sabotage"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/peerrpc"
	"github.com/countmesh/countmesh/ratelimit"
	"github.com/countmesh/countmesh/resp"
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
	respAddr      string
	gossipAddr    string
	advertiseAddr string
	join          string
	cacheCounters int
	durability    string
	logLevel      string
	logFormat     string

	peerAddr        string
	adminAddr       string
	tlsCA           string
	tlsCert         string
	tlsKey          string
	gossipKeyFile   string
	apiTokensFile   string
	apiTLSCert      string
	apiTLSKey       string
	insecure        bool
	httpMaxConns    int
	httpReadTimeout time.Duration
	version         bool
}

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// parseFlags reads flags, then COUNTMESH_<FLAG> environment variables for
// the flags not given on the command line.
func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	def := node.DefaultConfig()
	var o options
	fs := flag.NewFlagSet("countd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usage(fs, stderr)
	fs.StringVar(&o.nodeName, "node-name", def.Name, "unique name of this node in the mesh")
	fs.StringVar(&o.region, "region", def.Region, "region (data center) this node belongs to")
	fs.StringVar(&o.dataDir, "data-dir", def.Store.Dir, "Pebble directory; created if missing")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7070", "HTTP/JSON API address")
	fs.StringVar(&o.respAddr, "resp-addr", "", "Redis protocol (RESP) listener (default: the --http-addr host, port 6380); off disables it")
	fs.StringVar(&o.gossipAddr, "gossip-addr", "127.0.0.1:7946", "memberlist bind address (TCP and UDP); off runs a single node")
	fs.StringVar(&o.advertiseAddr, "advertise-addr", "", "address other nodes use to reach this one (default: from gossip-addr)")
	fs.StringVar(&o.join, "join", "", "comma-separated gossip addresses of nodes already in the mesh")
	fs.IntVar(&o.cacheCounters, "cache-counters", def.CacheCounters, "counters kept in memory; the rest are read through from Pebble")
	fs.StringVar(&o.durability, "durability", def.DefaultDurability, "default durability of new namespaces: sync or async")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "", "log format: json or console (default: console on a terminal, json otherwise)")
	fs.StringVar(&o.peerAddr, "peer-addr", "", "the one listener for node-to-node traffic (default: the gossip host, gossip port + 1)")
	fs.StringVar(&o.adminAddr, "admin-addr", "off", "operator-only listener for /debug/pprof; off disables it")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM CA certificate: peers must present a certificate it signed (mutual TLS on the peer listener)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate of this node for the peer listener (countctl certs create-node)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.gossipKeyFile, "gossip-key-file", "", "memberlist keyring: one base64 key per line, the first encrypts; re-read on SIGHUP")
	fs.StringVar(&o.apiTokensFile, "api-tokens-file", "", "tokens of the HTTP API and the RESP listener (docs/security.md); re-read on SIGHUP")
	fs.StringVar(&o.apiTLSCert, "api-tls-cert", "", "PEM certificate: HTTPS on the HTTP listener and TLS on the RESP listener")
	fs.StringVar(&o.apiTLSKey, "api-tls-key", "", "PEM private key of --api-tls-cert")
	fs.BoolVar(&o.insecure, "insecure", false, "allow a listener on a non-loopback address without its security (tokens, TLS, gossip key)")
	fs.IntVar(&o.httpMaxConns, "http-max-conns", 4096, "connections the HTTP listener holds at once; more are closed on arrival")
	fs.DurationVar(&o.httpReadTimeout, "http-read-timeout", 30*time.Second, "time to read a whole request, body included")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
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
		// --version is an action, not a setting: no environment variable
		// may turn a server into a version printer.
		if set[f.Name] || f.Name == "version" {
			return
		}
		env := envName(f.Name)
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
	if format == "" {
		format = "json"
		if isTerminal(os.Stderr) {
			format = "console"
		}
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false // never panic on DPanic in a server
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		if isTerminal(os.Stderr) {
			cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		cfg.EncoderConfig.EncodeCaller = nil
		cfg.EncoderConfig.CallerKey = ""
	default:
		return nil, fmt.Errorf("--log-format must be json or console, got %q", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	// An error record names its cause; a stack trace of the daemon's own
	// frames helps nobody reading the log.
	cfg.DisableStacktrace = true
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
	if o.version {
		fmt.Printf("countd %s\n", version)
		return 0
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(stderr, "countd: %v\n", err)
		return 2
	}
	problems := protectedMode(o)
	if len(problems) > 0 && !o.insecure {
		fmt.Fprintf(stderr, "countd: refusing to start (protected mode):\n")
		for _, p := range problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		fmt.Fprintf(stderr, "Give the flags named above (docs/security.md), listen on 127.0.0.1, or pass --insecure to run without them.\n")
		return 2
	}
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "countd: %v\n", err)
		return 2
	}
	defer log.Sync()
	for _, p := range problems {
		log.Warn("insecure: "+p, zap.Bool("insecure", true))
	}
	if err := serve(o, log, stop); err != nil {
		var se *startupError
		if errors.As(err, &se) {
			log.Sync()
			fmt.Fprintf(stderr, "countd: %s\n", explain(se.err, o.dataDir))
			return 1
		}
		log.Error("countd stopped with an error", zap.Error(err))
		return 1
	}
	return 0
}

// respListenAddr is the address of the RESP listener, "" when off. By
// default it is the --http-addr host with port 6380, or port 0 (any free
// port) when --http-addr asks for any free port, so that nodes started on
// free ports (tests) do not collide on 6380.
func (o options) respListenAddr() string {
	switch o.respAddr {
	case "off":
		return ""
	case "":
		host, port, err := net.SplitHostPort(o.httpAddr)
		if err != nil {
			return "127.0.0.1:6380"
		}
		if port != "0" {
			port = "6380"
		}
		return net.JoinHostPort(host, port)
	}
	return o.respAddr
}

// check refuses flag combinations that cannot work.
func (o options) check() error {
	tls := []string{o.tlsCA, o.tlsCert, o.tlsKey}
	if n := countSet(tls...); n != 0 && n != 3 {
		return errors.New("--tls-ca, --tls-cert and --tls-key go together: give all three or none")
	}
	if n := countSet(o.apiTLSCert, o.apiTLSKey); n == 1 {
		return errors.New("--api-tls-cert and --api-tls-key go together: give both or neither")
	}
	if o.gossipAddr == "off" && (o.gossipKeyFile != "" || countSet(tls...) > 0 || o.peerAddr != "") {
		return errors.New("--gossip-key-file, --tls-* and --peer-addr need the mesh, which is off (--gossip-addr off)")
	}
	if o.httpMaxConns < 1 {
		return fmt.Errorf("--http-max-conns must be at least 1, got %d", o.httpMaxConns)
	}
	if o.httpReadTimeout <= 0 {
		return fmt.Errorf("--http-read-timeout must be positive, got %v", o.httpReadTimeout)
	}
	return nil
}

func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}

// serve runs the node until stop or a signal. An error before it serves
// is a *startupError.
func serve(o options, log *zap.Logger, stop <-chan struct{}) (err error) {
	serving := false
	defer func() {
		if err != nil && !serving {
			err = &startupError{err}
		}
	}()
	if tags := sabotage.Active(); len(tags) > 0 {
		log.Warn("THIS IS A SABOTAGED TEST BUILD: it has bugs on purpose (for the chaos campaign); never run it in production", zap.Strings("sabotage", tags))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	sec, err := loadSecurity(o)
	if err != nil {
		return err
	}
	cfg := node.DefaultConfig()
	cfg.Name = o.nodeName
	cfg.Region = o.region
	cfg.Store.Dir = o.dataDir
	cfg.CacheCounters = o.cacheCounters
	cfg.DefaultDurability = o.durability
	cfg.Registerer = reg
	cfg.Logger = log
	if cfg.Now, err = testClock(os.Getenv, log); err != nil {
		return err
	}
	fs, stopFaults := fsyncFaults(os.Getenv, log)
	defer stopFaults()
	cfg.Store.FS = fs
	meshOn := o.gossipAddr != "off"
	if !meshOn && o.join != "" {
		return fmt.Errorf("--join needs the mesh; it is off (--gossip-addr off)")
	}
	// A mesh node whose data directory is new takes a new slot (see
	// node.LoadIncarnation): its disk may have been lost.
	if cfg.Incarnation, err = node.LoadIncarnation(o.dataDir, meshOn); err != nil {
		return err
	}
	// With the mesh, /readyz waits until the node has asked its peers for
	// the changes it may have lost (its own slot after a restart).
	cfg.StartUnready = meshOn
	// The quorum and all consistency levels, rights and rate-limit leases
	// reach the peers over the mesh's peer transport; until the mesh
	// starts, there are none.
	peers := new(peerrpc.Client)
	cfg.Peers, cfg.PeerTransport, cfg.Rights = peers, peers, peers

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on http-addr %s: %w", o.httpAddr, err)
	}
	httpLn := newLimitListener(ln, o.httpMaxConns, func() {
		log.Warn("HTTP connection limit reached; closing new connections until some close", zap.Int("http_max_conns", o.httpMaxConns))
	})
	var served net.Listener = httpLn
	if sec.apiCert != nil {
		served = tls.NewListener(httpLn, sec.apiCert.TLSConfig())
	}
	var respLn net.Listener
	if addr := o.respListenAddr(); addr != "" {
		if respLn, err = net.Listen("tcp", addr); err != nil {
			ln.Close()
			return fmt.Errorf("listen on resp-addr %s (another countd or Redis may hold it; give --resp-addr HOST:PORT, or --resp-addr off): %w", addr, err)
		}
		// Closing an unused listener twice is harmless; Serve owns it
		// once it runs.
		defer respLn.Close()
	}
	n, err := node.Open(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	var mesh *gossip.Mesh
	if meshOn {
		mesh, err = startMesh(o, ln.Addr().String(), n, sec, log)
		if err != nil {
			ln.Close()
			n.Close()
			return err
		}
		peers.Attach(mesh)
		reg.MustRegister(gossip.NewCollector(mesh))
	}
	apiCfg := httpapi.Config{Node: n, Registerer: reg, Gatherer: reg, Logger: log, Tokens: sec.tokens}
	if mesh != nil {
		apiCfg.Cluster = mesh
		apiCfg.Forget = func(ctx context.Context, name string, gone bool) (httpapi.ForgetResult, error) {
			e, index, err := peerrpc.Forget(ctx, peers, n, name, gone)
			if err != nil {
				return httpapi.ForgetResult{}, err
			}
			res := httpapi.ForgetResult{Node: e.Name, Index: index}
			for i, got := range n.Retired() {
				res.Generation += uint64(len(got.IDs))
				if i == index {
					break
				}
			}
			for _, id := range e.IDs {
				res.IDs = append(res.IDs, strconv.FormatUint(uint64(id), 10))
			}
			return res, nil
		}
		syncDone := make(chan struct{})
		defer close(syncDone)
		go peerrpc.SyncRetired(syncDone, peers, n)
	}
	// Rate limits: one owner per limit among the mesh's live members (this
	// node alone without the mesh); leases travel over the peer transport.
	rlCfg := ratelimit.DefaultConfig()
	rlCfg.Membership, rlCfg.Transport, rlCfg.Logger = ratelimit.Single(cfg.Name), peers, log.Named("ratelimit")
	rlCfg.Now = cfg.Now // nil: time.Now (a test-only offset otherwise)
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
	if mesh != nil {
		peerrpc.Serve(mesh, peerrpc.Services{Node: n, Limiter: apiCfg.RateLimit})
	}
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
		// A whole request, body included, within the read timeout: a body
		// trickled byte by byte is cut off. Watch streams lift the write
		// timeout for themselves.
		ReadTimeout:    o.httpReadTimeout,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       zap.NewStdLog(log.Named("http")),
	}
	srv.RegisterOnShutdown(api.CloseStreams) // watch streams would hold Shutdown
	servedErr := make(chan error, 1)
	go func() { servedErr <- srv.Serve(served) }()
	var respSrv *resp.Server
	if respLn != nil {
		respCfg := resp.DefaultConfig()
		respCfg.Node, respCfg.Tokens, respCfg.Registerer, respCfg.Version = n, sec.tokens, reg, version
		respCfg.Logger = log.Named("resp")
		if sec.apiCert != nil {
			respCfg.TLS = sec.apiCert.TLSConfig()
		}
		if respSrv, err = resp.New(respCfg); err != nil {
			srv.Close()
			if mesh != nil {
				mesh.Close()
			}
			n.Close()
			return err
		}
		go func() {
			if err := respSrv.Serve(respLn); err != nil {
				log.Error("RESP listener failed", zap.Error(err))
			}
		}()
		log.Info("RESP (Redis protocol) listener", zap.String("resp_addr", respLn.Addr().String()),
			zap.Bool("tls", respCfg.TLS != nil), zap.Bool("tokens", sec.tokens != nil))
	}
	var admin *http.Server
	if o.adminAddr != "off" && o.adminAddr != "" {
		if admin, err = startAdmin(o.adminAddr, log); err != nil {
			srv.Close()
			if mesh != nil {
				mesh.Close()
			}
			n.Close()
			return err
		}
	}
	catchUpCtx, stopCatchUp := context.WithCancel(context.Background())
	defer stopCatchUp()
	if mesh != nil {
		go catchUp(catchUpCtx, mesh, n, log)
	}
	scheme := "http"
	if sec.apiCert != nil {
		scheme = "https"
	}
	log.Info("countd serving", zap.String("http_addr", ln.Addr().String()), zap.String("scheme", scheme), zap.String("node", cfg.Name),
		zap.String("region", cfg.Region), zap.String("data_dir", cfg.Store.Dir),
		zap.String("durability", cfg.DefaultDurability), zap.String("cache_counters", strconv.Itoa(cfg.CacheCounters)),
		zap.Bool("tokens", sec.tokens != nil), zap.Bool("peer_tls", sec.peerTLS != nil), zap.Bool("gossip_encryption", len(sec.gossipKeys) > 0),
		zap.String("url", scheme+"://"+ln.Addr().String()), zap.String("stop", "press Ctrl-C or send SIGTERM"))
	serving = true

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var serveErr error
wait:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				sec.reload(o, mesh, log)
				continue
			}
			log.Info("shutting down", zap.String("signal", s.String()))
		case <-stop:
			log.Info("shutting down")
		case serveErr = <-servedErr:
			log.Error("HTTP server failed", zap.Error(serveErr))
		}
		break wait
	}

	// Stop accepting, let requests in flight finish, then flush and close
	// the node, all within 10 s.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	shutErr := srv.Shutdown(ctx)
	if respSrv != nil {
		// Stop accepting and answer the pipelines in flight before the
		// node flushes and closes.
		shutErr = errors.Join(shutErr, respSrv.Shutdown(ctx))
	}
	if admin != nil {
		admin.Close()
	}
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

// startAdmin serves the operator-only routes (the profiler) on addr.
func startAdmin(addr string, log *zap.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on admin-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: httpapi.AdminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log.Named("admin"))}
	go srv.Serve(ln)
	log.Info("admin listener (profiling)", zap.String("admin_addr", ln.Addr().String()))
	return srv, nil
}

// startMesh joins the node to the mesh.
func startMesh(o options, httpAddr string, n *node.Node, sec *security, log *zap.Logger) (*gossip.Mesh, error) {
	gcfg := gossip.DefaultConfig()
	gcfg.Name = o.nodeName
	gcfg.NodeID = n.ID()
	gcfg.Region = o.region
	gcfg.HTTPAddr = advertisedHTTP(httpAddr, o.advertiseAddr, o.gossipAddr)
	gcfg.GossipAddr = o.gossipAddr
	gcfg.AdvertiseAddr = o.advertiseAddr
	gcfg.ReplAddr = o.peerAddr
	gcfg.GossipKeys = sec.gossipKeys
	if sec.peerTLS != nil {
		gcfg.TLS = &gossip.PeerTLS{Server: sec.peerTLS.ServerConfig(), Client: sec.peerTLS.ClientConfig}
	}
	gcfg.Logger = log.Named("gossip")
	gcfg.Replicas = n.ReplicasOf // sharded namespaces (docs/scale.md)
	mesh, err := gossip.New(gcfg, n.Replica())
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
		// Peers found through a join are members only once they have
		// proved their name (with TLS), a moment later: retry soon, then
		// every second.
		wait := min(time.Duration(attempt)*100*time.Millisecond, time.Second)
		if attempt > 3 {
			log.Warn("not ready: could not sync with peers yet; retrying", zap.Int("attempt", attempt), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
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
