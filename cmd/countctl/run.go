package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/countmesh/countmesh/client"
)

// Exit statuses.
const (
	exitOK      = 0
	exitRefused = 1
	exitUsage   = 2
)

const usage = `usage: countctl [--addr URL] [--token T] [--ca FILE] [--json] [--timeout D] <command> [args]

Counters:
  incr NS KEY [BY]            add BY (default 1); flags: --id ID --consistency C
                              --label k=v (repeatable) --at TIME
  decr NS KEY [BY]            subtract BY (default 1); same flags as incr
  get NS KEY                  read a counter; flags: --consistency C --at TIME
  reset NS KEY VALUE          set a counter to VALUE
  delete NS KEY               delete a counter
  list NS [PREFIX]            list counters; flags: --limit N --cursor C --all
  series NS KEY               time series; flags: --from TIME --to TIME --step 1m
  watch NS [KEY]              print changes until interrupted; flags:
                              --interval 100ms --prefix P --count N (stop after N)
Namespaces:
  top NS [K]                  the K largest counters; flags: --window 1h --prefix P
  aggregate NS                count/sum/avg/min/max; flags: --prefix P --window W
                              --group-by LABEL
  ns get NS                   show a namespace's config
  ns set NS key=value...      change config keys, keeping the others; keys: type,
                              durability, windows (1m,1h or none), retention
                              (1m:48h,1h:90d), ttl, min, max (N or none),
                              idempotency_window, replicas (when creating)
  ns list                     list namespaces
Other:
  ratelimit NS KEY LIMIT WINDOW   take one unit (--cost N) from a rate limit;
                              exit status 1 when refused
  export [NS] > FILE          every namespace config and counter's full state
                              (of NS only when given), as JSON lines on stdout;
                              a progress bar on stderr when it is a terminal
  import FILE                 merge an export into the node (FILE - for stdin);
                              importing twice changes nothing; newer state is kept
  cluster                     this node, the members and replication lag
  cluster forget [--gone] NODE
                              forget a node gone for good: its slots fold into
                              one (admin); --gone while the mesh lists it
  health                      liveness and readiness
  version                     print countctl's version
Security (local, no node needed):
  certs create-ca DIR         write a new CA: DIR/ca.crt and DIR/ca.key
  certs init-mesh DIR NAME=HOST[,HOST...]...
                              the CA, node certificates, a gossip key and an admin
                              token in DIR, keeping what exists (prints the token)
  certs create-node DIR NAME HOST...
                              write DIR/NAME.crt and DIR/NAME.key signed by the CA
                              in DIR; NAME is the node's --node-name, each HOST an
                              IP address or DNS name it is reached at
  keygen                      print a random gossip key (for --gossip-key-file)
  token                       print a random API token (for --api-tokens-file)

Global flags (anywhere on the line):
  --addr URL     node address (default $COUNTMESH_ADDR, else http://127.0.0.1:7070);
                 https://HOST:PORT for a node with --api-tls-cert
  --token T      API token sent as Authorization: Bearer (default $COUNTMESH_TOKEN)
  --ca FILE      trust this CA (PEM) for an https:// address
  --json         print the server's JSON answers
  --timeout D    per-request timeout (default 10s)
TIME is RFC 3339 (2024-05-06T07:08:09Z) or a duration ago (15m).
Exit status: 0 success, 1 refused or failed request, 2 bad usage.
`

// usageError is bad usage: exit status 2 with the usage text.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// flagSpec says which flags exist and whether they take a value.
var flagSpec = map[string]bool{
	"addr": true, "json": false, "timeout": true, "help": false, "h": false,
	"id": true, "consistency": true, "label": true, "at": true,
	"limit": true, "cursor": true, "all": false,
	"window": true, "prefix": true, "group-by": true,
	"from": true, "to": true, "step": true,
	"interval": true, "count": true, "n": true,
	"cost": true, "gone": false,
	"token": true, "ca": true,
}

// globalFlags are allowed with every command.
var globalFlags = []string{"addr", "json", "timeout", "help", "h", "token", "ca"}

// commandFlags are the flags each command accepts besides the global ones.
var commandFlags = map[string][]string{
	"incr":      {"id", "consistency", "label", "at"},
	"decr":      {"id", "consistency", "label", "at"},
	"get":       {"consistency", "at"},
	"reset":     nil,
	"delete":    nil,
	"list":      {"limit", "cursor", "all"},
	"top":       {"window", "prefix"},
	"series":    {"from", "to", "step"},
	"watch":     {"interval", "prefix", "count", "n"},
	"aggregate": {"prefix", "window", "group-by"},
	"ns":        nil,
	"ratelimit": {"cost"},
	"cluster":   {"gone"},
	"export":    nil,
	"import":    nil,
	"health":    nil,
	"certs":     nil,
	"keygen":    nil,
	"token":     nil,
	"version":   nil,
}

// flags holds parsed flags; a flag given twice keeps every value.
type flags map[string][]string

func (f flags) has(name string) bool { return len(f[name]) > 0 }

func (f flags) get(name string) string {
	if v := f[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// parseArgs splits args into positional arguments and flags (--name value,
// --name=value, -name). Negative numbers are positional, so "decr n k -1"
// works; "--" ends the flags.
func parseArgs(args []string) ([]string, flags, error) {
	var pos []string
	fl := flags{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		value, hasValue := "", false
		if n, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = n, v, true
		}
		takesValue, known := flagSpec[name]
		if !known {
			return nil, nil, usagef("unknown flag %s", a)
		}
		if !takesValue {
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return nil, nil, usagef("flag --%s takes no value", name)
				}
				if !b {
					delete(fl, name)
					continue
				}
			}
			fl[name] = append(fl[name], "true")
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, nil, usagef("flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		fl[name] = append(fl[name], value)
	}
	return pos, fl, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// run is the whole command line tool, on the process's environment.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr, os.Getenv)
}

// runContext runs one countctl command line and returns its exit status.
// Cancelling ctx ends a watch (with status 0).
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	pos, fl, err := parseArgs(args)
	if err == nil && (fl.has("help") || fl.has("h")) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	var c *cli
	if err == nil {
		c, err = newCLI(pos, fl, stdout, getenv)
	}
	if err == nil {
		c.errOut = stderr
		err = c.dispatch(ctx)
	}
	return report(err, stderr)
}

// report prints err and maps it to an exit status.
func report(err error, stderr io.Writer) int {
	var ue *usageError
	var apiErr *client.Error
	var denied *deniedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "countctl: %s\n\n%s", ue.msg, usage)
		return exitUsage
	case errors.As(err, &denied):
		return exitRefused
	case errors.As(err, &apiErr):
		fmt.Fprintf(stderr, "countctl: %s (%d %s)\n", apiErr.Message, apiErr.Status, apiErr.Code)
		if errors.Is(err, client.ErrUnauthenticated) {
			fmt.Fprintln(stderr, "(the node requires a token: set --token or COUNTMESH_TOKEN)")
		}
		return exitRefused
	case errors.As(err, new(x509.UnknownAuthorityError)):
		fmt.Fprintf(stderr, "countctl: %v\n(pass --ca FILE with the CA that signed the node's certificate)\n", err)
		return exitRefused
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Fprintf(stderr, "countctl: %v\n(is countd running there? set --addr or COUNTMESH_ADDR)\n", err)
		return exitRefused
	default:
		fmt.Fprintf(stderr, "countctl: %v\n", err)
		return exitRefused
	}
}

// deniedError is a rate limit that refused the request: exit status 1, the
// answer already printed.
type deniedError struct{}

func (*deniedError) Error() string { return "rate limit refused the request" }

// cli is one command line being run.
type cli struct {
	cmd  string
	args []string // positional arguments after the command
	fl   flags
	json bool
	out  io.Writer
	// errOut is stderr: progress bars go there when it is a terminal.
	errOut io.Writer
	c      *client.Client
}

func newCLI(pos []string, fl flags, stdout io.Writer, getenv func(string) string) (*cli, error) {
	if len(pos) == 0 {
		return nil, usagef("no command given")
	}
	cmd := pos[0]
	allowed, ok := commandFlags[cmd]
	if !ok {
		return nil, usagef("unknown command %q", cmd)
	}
	for name := range fl {
		if !contains(globalFlags, name) && !contains(allowed, name) {
			return nil, usagef("flag --%s does not apply to %s", name, cmd)
		}
	}
	if localCommands[cmd] {
		return &cli{cmd: cmd, args: pos[1:], fl: fl, json: fl.has("json"), out: stdout}, nil
	}
	cfg := client.DefaultConfig()
	cfg.BaseURL = client.DefaultBaseURL
	if env := getenv("COUNTMESH_ADDR"); env != "" {
		cfg.BaseURL = env
	}
	if fl.has("addr") {
		cfg.BaseURL = fl.get("addr")
	}
	if fl.has("timeout") {
		d, err := time.ParseDuration(fl.get("timeout"))
		if err != nil || d < 0 {
			return nil, usagef("bad --timeout %q: want a duration such as 5s", fl.get("timeout"))
		}
		cfg.Timeout = d
	}
	cfg.Token = getenv("COUNTMESH_TOKEN")
	if fl.has("token") {
		cfg.Token = fl.get("token")
	}
	if fl.has("ca") {
		if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(cfg.BaseURL)), "https://") {
			return nil, usagef("--ca applies to https:// addresses; use --addr https://HOST:PORT (the address is %s)", cfg.BaseURL)
		}
		tc, err := client.TLSConfigForCA(fl.get("ca"))
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		cfg.TLSConfig = tc
	}
	cfg.HTTPClient = client.NewHTTPClient(4)
	c, err := client.New(cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return &cli{cmd: cmd, args: pos[1:], fl: fl, json: fl.has("json"), out: stdout, c: c}, nil
}

func contains(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

// nargs checks the number of positional arguments.
func (c *cli) nargs(minN, maxN int, shape string) error {
	if len(c.args) < minN || len(c.args) > maxN {
		return usagef("%s takes %s", c.cmd, shape)
	}
	return nil
}

func (c *cli) dispatch(ctx context.Context) error {
	switch c.cmd {
	case "incr", "decr":
		return c.incr(ctx)
	case "get":
		return c.get(ctx)
	case "reset":
		return c.reset(ctx)
	case "delete":
		return c.del(ctx)
	case "list":
		return c.list(ctx)
	case "top":
		return c.top(ctx)
	case "series":
		return c.series(ctx)
	case "watch":
		return c.watch(ctx)
	case "aggregate":
		return c.aggregate(ctx)
	case "ns":
		return c.ns(ctx)
	case "ratelimit":
		return c.ratelimit(ctx)
	case "cluster":
		return c.cluster(ctx)
	case "export":
		return c.export(ctx)
	case "import":
		return c.importFile(ctx)
	case "health":
		return c.health(ctx)
	case "certs":
		return c.certs()
	case "keygen":
		return c.keygen()
	case "token":
		return c.token()
	case "version":
		return c.version()
	}
	return usagef("unknown command %q", c.cmd)
}

// printJSON prints a raw server answer on a line of its own ({} when the
// answer was empty).
func (c *cli) printJSON(raw []byte) {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		s = "{}"
	}
	fmt.Fprintln(c.out, s)
}

// parseInt parses a 64-bit integer argument.
func parseInt(what, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, usagef("%s %q is not an integer", what, s)
	}
	return v, nil
}

// parseTime reads RFC 3339, or a duration meaning that long ago.
func parseTime(what, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, usagef("--%s %q is neither RFC 3339 nor a duration ago such as 15m", what, s)
}

// consistency reads --consistency.
func (c *cli) consistency() (client.Consistency, error) {
	v := c.fl.get("consistency")
	switch client.Consistency(v) {
	case client.ConsistencyDefault, client.ConsistencyLocal, client.ConsistencyQuorum, client.ConsistencyAll:
		return client.Consistency(v), nil
	}
	return "", usagef("--consistency %q: want local, quorum or all", v)
}
