package resp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/internal/errtext"
	"github.com/countmesh/countmesh/node"
)

// kind groups the commands by how they run.
type kind uint8

const (
	kindOther kind = iota
	kindIncr       // INCR, INCRBY, DECR, DECRBY: batched with their neighbours
)

// command describes one command as COMMAND reports it, and how it runs.
type command struct {
	name string // lower case
	// arity as Redis counts it: the arguments with the name; negative: at
	// least that many.
	arity             int
	flags             []string
	first, last, step int
	open              bool // allowed before AUTH
	kind              kind
	index             int   // position in commandList, for the metrics
	sign              int64 // INCR family: 1 or -1
	takesBy           bool  // INCRBY, DECRBY
	// run serves the command (kindOther); errReply, when not empty, is
	// written as its reply.
	run func(s *Server, ctx context.Context, sess *session, args [][]byte, w *redcon.Writer) (errReply string, quit bool)
}

// commandTable holds every command, by lower-case name, and commandList
// the same commands in a fixed order. They are filled in init (the run
// functions refer back to the table through COMMAND).
var (
	commandTable map[string]*command
	commandList  []*command
)

func init() {
	write := []string{"write", "denyoom", "fast"}
	read := []string{"readonly", "fast"}
	conn := []string{"noscript", "loading", "stale", "fast"}
	cmds := []*command{
		{name: "ping", arity: -1, flags: conn, open: true, run: (*Server).ping},
		{name: "echo", arity: 2, flags: conn, run: (*Server).echo},
		{name: "auth", arity: -2, flags: append(slices.Clone(conn), "no-auth"), open: true, run: (*Server).auth},
		{name: "hello", arity: -1, flags: append(slices.Clone(conn), "no-auth"), open: true, run: (*Server).hello},
		{name: "select", arity: 2, flags: conn, run: (*Server).selectDB},
		{name: "quit", arity: -1, flags: append(slices.Clone(conn), "no-auth"), open: true, run: (*Server).quit},
		{name: "command", arity: -1, flags: []string{"loading", "stale"}, run: (*Server).command},
		{name: "info", arity: -1, flags: []string{"loading", "stale"}, run: (*Server).info},
		{name: "client", arity: -2, flags: []string{"loading", "stale"}, run: (*Server).client},
		{name: "config", arity: -2, flags: []string{"admin", "loading", "stale"}, run: (*Server).config},
		{name: "incr", arity: 2, flags: write, first: 1, last: 1, step: 1, kind: kindIncr, sign: 1},
		{name: "decr", arity: 2, flags: write, first: 1, last: 1, step: 1, kind: kindIncr, sign: -1},
		{name: "incrby", arity: 3, flags: write, first: 1, last: 1, step: 1, kind: kindIncr, sign: 1, takesBy: true},
		{name: "decrby", arity: 3, flags: write, first: 1, last: 1, step: 1, kind: kindIncr, sign: -1, takesBy: true},
		{name: "get", arity: 2, flags: read, first: 1, last: 1, step: 1, run: (*Server).get},
		{name: "mget", arity: -2, flags: read, first: 1, last: -1, step: 1, run: (*Server).mget},
		{name: "set", arity: -3, flags: []string{"write", "denyoom"}, first: 1, last: 1, step: 1, run: (*Server).set},
		{name: "del", arity: -2, flags: []string{"write"}, first: 1, last: -1, step: 1, run: (*Server).del},
	}
	commandTable = make(map[string]*command, len(cmds))
	for i, c := range cmds {
		c.index = i
		commandTable[c.name] = c
	}
	commandList = cmds
	cmdIncr = commandTable["incr"]
}

// cmdIncr is INCR, which lookup finds without the table.
var cmdIncr *command

// maxNameLen is the longest command name (and subcommand) looked up.
const maxNameLen = 16

// lookup returns the command named arg (any case), or nil.
func lookup(arg []byte) *command {
	if len(arg) == 4 && arg[0]|0x20 == 'i' && arg[1]|0x20 == 'n' && arg[2]|0x20 == 'c' && arg[3]|0x20 == 'r' {
		return cmdIncr
	}
	if len(arg) > maxNameLen {
		return nil
	}
	var buf [maxNameLen]byte
	lower := buf[:len(arg)]
	for i, c := range arg {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return commandTable[string(lower)]
}

// Redis's own wording for the errors Redis has.
const (
	errNotInteger = "ERR value is not an integer or out of range"
	errOverflow   = "ERR increment or decrement would overflow"
	errNoAuth     = "NOAUTH Authentication required."
	errWrongPass  = "WRONGPASS invalid username-password pair or user is disabled."
	errSyntax     = "ERR syntax error"
	errNoPassword = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errHelloAuth  = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
)

// exec runs a pipeline's commands in order, writing one reply each to w.
// Consecutive increments are applied as one node batch, so one commit
// covers them; any other command first completes the increments before it
// (a GET after an INCR reads the incremented value). It reports whether the
// client asked to QUIT.
func (s *Server) exec(ctx context.Context, sess *session, cmds [][][]byte, w *redcon.Writer) (quit bool) {
	g := &sess.group
	for _, args := range cmds {
		if len(args) == 0 {
			continue
		}
		cmd := lookup(args[0])
		var reply string
		switch {
		case cmd == nil:
			reply = unknownCommand(args)
		case !arityOK(cmd.arity, len(args)):
			reply = fmt.Sprintf("ERR wrong number of arguments for '%s' command", cmd.name)
		case !cmd.open:
			reply = s.checkAuth(sess)
		}
		if reply == "" && cmd.kind == kindIncr {
			op, errReply := s.parseIncr(sess, cmd, args)
			g.add(cmd, op, errReply)
			if len(g.ops) == node.MaxBatchOps {
				s.flushWrites(ctx, g, w)
			}
			continue
		}
		s.flushWrites(ctx, g, w)
		if reply == "" {
			reply, quit = cmd.run(s, ctx, sess, args, w)
		}
		if reply != "" {
			w.WriteError(reply)
		}
		if cmd == nil {
			s.metrics.other.Inc()
		} else {
			s.metrics.count(cmd, reply == "", 1)
		}
		if quit {
			return true
		}
	}
	s.flushWrites(ctx, g, w)
	return false
}

func arityOK(arity, n int) bool {
	if arity >= 0 {
		return n == arity
	}
	return n >= -arity
}

// unknownCommand is Redis's reply to a command it does not know.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ERR unknown command '%s', with args beginning with: ", printable(args[0]))
	for _, a := range args[1:] {
		if b.Len() > 256 {
			break
		}
		fmt.Fprintf(&b, "'%s' ", printable(a))
	}
	return b.String()
}

// printable is arg as it may appear in an error reply: at most 128 bytes,
// control characters (which would end the reply) as spaces.
func printable(arg []byte) string {
	if len(arg) > 128 {
		arg = arg[:128]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(arg))
}

// errorReply is the reply to a node error.
func errorReply(err error) string {
	switch {
	case errors.Is(err, node.ErrOverflow):
		return errOverflow
	case errors.Is(err, auth.ErrPermissionDenied):
		return "NOPERM " + oneLine(errtext.Message(err))
	default:
		return "ERR " + oneLine(errtext.Message(err))
	}
}

// oneLine keeps a reply on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// checkAuth returns "" when the session may run commands that need a token,
// and the NOAUTH reply otherwise. A token removed from the tokens file
// (reloaded on SIGHUP) stops working on open connections too.
func (s *Server) checkAuth(sess *session) string {
	if s.cfg.Tokens == nil {
		return ""
	}
	if sess.token == "" {
		return errNoAuth
	}
	if cur := s.cfg.Tokens.Current(); cur != sess.tokens {
		g, err := cur.Authenticate(sess.token)
		if err != nil {
			sess.token, sess.grant, sess.tokens = "", nil, nil
			return errNoAuth
		}
		sess.grant, sess.tokens = g, cur
	}
	return ""
}

// allow returns "" when the session's token has scope need on namespace
// ns, and the NOPERM reply otherwise (checkAuth has passed).
func (s *Server) allow(sess *session, need auth.Scope, ns string) string {
	if s.cfg.Tokens == nil || sess.grant == nil {
		return ""
	}
	if err := sess.grant.Allow(need, ns); err != nil {
		return errorReply(err)
	}
	return ""
}

// splitKey splits a Redis key "ns:key" at its first ':' and checks both
// parts and the token's scope need on the namespace. errReply is the reply
// when it fails.
func (s *Server) splitKey(sess *session, arg []byte, need auth.Scope) (ns, key, errReply string) {
	i := bytes.IndexByte(arg, ':')
	if i < 0 {
		return "", "", fmt.Sprintf("ERR key '%s' has no namespace: countmesh keys are namespace:key (e.g. pages:home)", printable(arg))
	}
	// Pipelines mostly name one namespace: reuse its string, checked once,
	// rather than allocate and check one per command (the key string is
	// kept by the node).
	if !sess.lastNSValid || string(arg[:i]) != sess.lastNS {
		ns := string(arg[:i])
		if err := node.ValidateNamespace(ns); err != nil {
			return "", "", errorReply(err)
		}
		sess.lastNS, sess.lastNSValid = ns, true
	}
	ns, key = sess.lastNS, string(arg[i+1:])
	if err := node.ValidateKey(key); err != nil {
		return "", "", errorReply(err)
	}
	if r := s.allow(sess, need, ns); r != "" {
		return "", "", r
	}
	return ns, key, ""
}

// parseInt parses a Redis integer argument: an optional '-' and decimal
// digits that fit in int64.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// writeGroup collects consecutive increments of a pipeline.
type writeGroup struct {
	ops   []node.BatchOp
	items []pendingWrite
	// values and errs are flushWrites's scratch space.
	values []int64
	errs   []error
}

// pendingWrite is one increment command waiting for its reply: its op in
// writeGroup.ops, or the error reply it already has.
type pendingWrite struct {
	cmd      *command
	op       int
	errReply string
}

func (g *writeGroup) add(cmd *command, op node.BatchOp, errReply string) {
	if errReply != "" {
		g.items = append(g.items, pendingWrite{cmd: cmd, op: -1, errReply: errReply})
		return
	}
	g.items = append(g.items, pendingWrite{cmd: cmd, op: len(g.ops)})
	g.ops = append(g.ops, op)
}

// parseIncr parses an INCR-family command into its op, or the error reply.
func (s *Server) parseIncr(sess *session, cmd *command, args [][]byte) (node.BatchOp, string) {
	by := int64(1)
	if cmd.takesBy {
		v, ok := parseInt(args[2])
		if !ok {
			return node.BatchOp{}, errNotInteger
		}
		if err := node.ValidateBy(v); err != nil {
			return node.BatchOp{}, errorReply(err)
		}
		by = v
	}
	ns, key, reply := s.splitKey(sess, args[1], auth.ScopeWrite)
	if reply != "" {
		return node.BatchOp{}, reply
	}
	return node.BatchOp{NS: ns, Key: key, By: cmd.sign * by}, ""
}

// refusedWhole reports whether a batch error says that one op was refused
// and nothing was applied, so that applying the ops one by one gives each
// its own answer.
func refusedWhole(err error) bool {
	for _, e := range []error{node.ErrOverflow, node.ErrConflict, node.ErrInvalidArgument, node.ErrTooManyNamespaces, node.ErrTooManySeries} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// flushWrites applies the group's increments, as one node batch when there
// are several, and writes their replies in order once they are durable.
func (s *Server) flushWrites(ctx context.Context, g *writeGroup, w *redcon.Writer) {
	if len(g.items) == 0 {
		return
	}
	g.values = slices.Grow(g.values[:0], len(g.ops))[:len(g.ops)]
	g.errs = slices.Grow(g.errs[:0], len(g.ops))[:len(g.ops)]
	clear(g.errs)
	var groupErr error
	switch len(g.ops) {
	case 0:
	case 1:
		op := g.ops[0]
		r, err := s.node.Incr(ctx, op.NS, op.Key, op.By, node.WriteOptions{})
		g.values[0], g.errs[0] = r.Value, err
	default:
		res, err := s.node.Batch(ctx, g.ops, "", true)
		switch {
		case err == nil:
			copy(g.values, res.Values)
		case refusedWhole(err):
			// Nothing was applied: one by one, each op its own answer.
			for i, op := range g.ops {
				r, err := s.node.Incr(ctx, op.NS, op.Key, op.By, node.WriteOptions{})
				g.values[i], g.errs[i] = r.Value, err
			}
		default:
			groupErr = err
		}
	}
	// The metrics count runs of one command and result at once.
	var run *command
	runOK, runLen := false, 0
	for _, it := range g.items {
		reply := it.errReply
		if reply == "" {
			err := groupErr
			if err == nil {
				err = g.errs[it.op]
			}
			if err != nil {
				reply = errorReply(err)
			}
		}
		if reply != "" {
			w.WriteError(reply)
		} else {
			w.WriteInt64(g.values[it.op])
		}
		if ok := reply == ""; it.cmd != run || ok != runOK {
			if runLen > 0 {
				s.metrics.count(run, runOK, runLen)
			}
			run, runOK, runLen = it.cmd, ok, 0
		}
		runLen++
	}
	if runLen > 0 {
		s.metrics.count(run, runOK, runLen)
	}
	clear(g.ops) // drop the key strings
	g.ops, g.items = g.ops[:0], g.items[:0]
}

func (s *Server) ping(_ context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	switch len(args) {
	case 1:
		w.WriteString("PONG")
	case 2:
		w.WriteBulk(args[1])
	default:
		return "ERR wrong number of arguments for 'ping' command", false
	}
	return "", false
}

func (s *Server) echo(_ context.Context, _ *session, args [][]byte, w *redcon.Writer) (string, bool) {
	w.WriteBulk(args[1])
	return "", false
}

func (s *Server) quit(_ context.Context, _ *session, _ [][]byte, w *redcon.Writer) (string, bool) {
	w.WriteString("OK")
	return "", true
}

func (s *Server) selectDB(_ context.Context, _ *session, args [][]byte, w *redcon.Writer) (string, bool) {
	db, ok := parseInt(args[1])
	if !ok {
		return errNotInteger, false
	}
	if db != 0 {
		return "ERR DB index is out of range", false
	}
	w.WriteString("OK")
	return "", false
}

func (s *Server) auth(_ context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	var user, pass []byte
	switch len(args) {
	case 2:
		pass = args[1]
	case 3:
		user, pass = args[1], args[2]
	default:
		return errSyntax, false
	}
	if reply := s.authenticate(sess, user, pass); reply != "" {
		return reply, false
	}
	w.WriteString("OK")
	return "", false
}

// authenticate checks a user (nil, or "default": the tokens have no user
// names) and token, and on success makes the token the session's.
func (s *Server) authenticate(sess *session, user, pass []byte) string {
	if s.cfg.Tokens == nil {
		return errNoPassword
	}
	if user != nil && string(user) != "default" {
		return errWrongPass
	}
	cur := s.cfg.Tokens.Current()
	g, err := cur.Authenticate(string(pass))
	if err != nil {
		return errWrongPass
	}
	sess.token, sess.grant, sess.tokens = string(pass), g, cur
	return ""
}

// hello serves HELLO [protover [AUTH user pass] [SETNAME name]]. It speaks
// RESP2 and RESP3: the replies of countmesh's commands are the same in
// both, but for HELLO's own, COMMAND DOCS' and CONFIG GET's maps.
func (s *Server) hello(_ context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	proto := sess.proto
	if len(args) > 1 {
		v, ok := parseInt(args[1])
		if !ok {
			return "ERR Protocol version is not an integer or out of range", false
		}
		if v != 2 && v != 3 {
			return "NOPROTO unsupported protocol version", false
		}
		proto = int(v)
	}
	var name []byte
	setName := false
	for i := 2; i < len(args); i++ {
		switch opt := strings.ToLower(string(args[i])); {
		case opt == "auth" && i+2 < len(args):
			if reply := s.authenticate(sess, args[i+1], args[i+2]); reply != "" {
				return reply, false
			}
			i += 2
		case opt == "setname" && i+1 < len(args):
			name, setName = args[i+1], true
			i++
		default:
			return fmt.Sprintf("ERR Syntax error in HELLO option '%s'", printable(args[i])), false
		}
	}
	if reply := s.checkAuth(sess); reply != "" {
		return errHelloAuth, false
	}
	sess.proto = proto
	if setName {
		sess.name = string(name)
	}
	s.writeMapHeader(sess, w, 7)
	w.WriteBulkString("server")
	w.WriteBulkString("redis")
	w.WriteBulkString("version")
	w.WriteBulkString(redisVersion)
	w.WriteBulkString("proto")
	w.WriteInt(proto)
	w.WriteBulkString("id")
	w.WriteInt64(sess.id)
	w.WriteBulkString("mode")
	w.WriteBulkString("standalone")
	w.WriteBulkString("role")
	w.WriteBulkString("master")
	w.WriteBulkString("modules")
	w.WriteArray(0)
	return "", false
}

// redisVersion is the Redis version whose protocol this listener speaks,
// as HELLO and INFO report it (clients pick features by it).
const redisVersion = "7.2.0"

// writeMapHeader starts a map of n pairs: a RESP3 map, or in RESP2 an
// array of 2n elements, as Redis answers.
func (s *Server) writeMapHeader(sess *session, w *redcon.Writer, n int) {
	if sess.proto == 3 {
		w.WriteRaw(fmt.Appendf(nil, "%%%d\r\n", n))
		return
	}
	w.WriteArray(2 * n)
}

func (s *Server) command(_ context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	if len(args) == 1 {
		w.WriteArray(len(commandTable))
		for _, name := range commandNames() {
			writeCommandInfo(w, commandTable[name])
		}
		return "", false
	}
	switch sub := strings.ToLower(string(args[1])); sub {
	case "count":
		w.WriteInt(len(commandTable))
	case "list":
		names := commandNames()
		w.WriteArray(len(names))
		for _, n := range names {
			w.WriteBulkString(n)
		}
	case "info":
		w.WriteArray(len(args) - 2)
		for _, a := range args[2:] {
			if c := lookup(a); c != nil {
				writeCommandInfo(w, c)
			} else {
				w.WriteNull()
			}
		}
	case "docs":
		// No documentation: clients fall back to their own.
		s.writeMapHeader(sess, w, 0)
	default:
		return fmt.Sprintf("ERR unknown subcommand '%s'. Try COMMAND HELP.", printable(args[1])), false
	}
	return "", false
}

func commandNames() []string {
	names := make([]string, 0, len(commandTable))
	for n := range commandTable {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// writeCommandInfo writes one command as COMMAND INFO does (Redis 7's ten
// fields; the last four empty).
func writeCommandInfo(w *redcon.Writer, c *command) {
	w.WriteArray(10)
	w.WriteBulkString(c.name)
	w.WriteInt(c.arity)
	w.WriteArray(len(c.flags))
	for _, f := range c.flags {
		w.WriteString(f)
	}
	w.WriteInt(c.first)
	w.WriteInt(c.last)
	w.WriteInt(c.step)
	for range 4 {
		w.WriteArray(0)
	}
}

func (s *Server) info(_ context.Context, _ *session, _ [][]byte, w *redcon.Writer) (string, bool) {
	loading := 0
	if !s.node.Ready() {
		loading = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\ncountmesh_version:%s\r\n", redisVersion, s.cfg.Version)
	fmt.Fprintf(&b, "countmesh_node:%s\r\ncountmesh_region:%s\r\narch_bits:64\r\ngo_version:%s\r\n", s.node.Name(), s.node.Region(), runtime.Version())
	fmt.Fprintf(&b, "\r\n# Clients\r\nconnected_clients:%d\r\nmaxclients:%d\r\n", s.conns.Load(), s.cfg.MaxConns)
	fmt.Fprintf(&b, "\r\n# Persistence\r\nloading:%d\r\n", loading)
	fmt.Fprintf(&b, "\r\n# Replication\r\nrole:master\r\n")
	w.WriteBulkString(b.String())
	return "", false
}

func (s *Server) client(_ context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "setname" && len(args) == 3:
		if bytes.ContainsAny(args[2], " \r\n") {
			return "ERR Client names cannot contain spaces, newlines or special characters.", false
		}
		sess.name = string(args[2])
		w.WriteString("OK")
	case sub == "getname" && len(args) == 2:
		if sess.name == "" {
			w.WriteNull()
		} else {
			w.WriteBulkString(sess.name)
		}
	case sub == "id" && len(args) == 2:
		w.WriteInt64(sess.id)
	case sub == "setinfo" && len(args) == 4:
		w.WriteString("OK") // library name and version: not kept
	default:
		return fmt.Sprintf("ERR unknown subcommand or wrong number of arguments for '%s'. Try CLIENT HELP.", printable(args[1])), false
	}
	return "", false
}

// config answers CONFIG GET with no parameters (Redis's settings do not
// apply), which handshakes of tools such as redis-benchmark accept.
func (s *Server) config(_ context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	if strings.ToLower(string(args[1])) != "get" || len(args) < 3 {
		return fmt.Sprintf("ERR unknown subcommand or wrong number of arguments for '%s'. Try CONFIG HELP.", printable(args[1])), false
	}
	s.writeMapHeader(sess, w, 0)
	return "", false
}

func (s *Server) get(ctx context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	ns, key, reply := s.splitKey(sess, args[1], auth.ScopeRead)
	if reply != "" {
		return reply, false
	}
	c, err := s.node.Get(ctx, ns, key, node.ReadOptions{})
	if err != nil {
		return errorReply(err), false
	}
	sess.scratch = strconv.AppendInt(sess.scratch[:0], c.Value, 10)
	w.WriteBulk(sess.scratch)
	return "", false
}

func (s *Server) mget(ctx context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	keys, reply := s.keysOf(sess, "MGET reads", args[1:], auth.ScopeRead)
	if reply != "" {
		return reply, false
	}
	values, err := s.node.GetMany(ctx, keys, "")
	if err != nil {
		return errorReply(err), false
	}
	w.WriteArray(len(values))
	for _, v := range values {
		sess.scratch = strconv.AppendInt(sess.scratch[:0], v, 10)
		w.WriteBulk(sess.scratch)
	}
	return "", false
}

// keysOf splits and checks every key of a command (at most
// node.MaxGetMany; what names the command in the error) before anything
// runs, so that one bad or foreign key refuses the whole command.
func (s *Server) keysOf(sess *session, what string, args [][]byte, need auth.Scope) ([]node.KeyRef, string) {
	if len(args) > node.MaxGetMany {
		return nil, fmt.Sprintf("ERR %s at most %d keys, got %d; split it", what, node.MaxGetMany, len(args))
	}
	keys := make([]node.KeyRef, len(args))
	for i, a := range args {
		ns, key, reply := s.splitKey(sess, a, need)
		if reply != "" {
			return nil, reply
		}
		keys[i] = node.KeyRef{NS: ns, Key: key}
	}
	return keys, ""
}

// set serves SET key <integer>: a reset of the counter to that value.
// Redis's options (EX, NX, GET, ...) do not apply to counters.
func (s *Server) set(ctx context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	if len(args) > 3 {
		return errSyntax, false
	}
	v, ok := parseInt(args[2])
	if !ok {
		return errNotInteger, false
	}
	ns, key, reply := s.splitKey(sess, args[1], auth.ScopeWrite)
	if reply != "" {
		return reply, false
	}
	if _, err := s.node.Reset(ctx, ns, key, v); err != nil {
		return errorReply(err), false
	}
	w.WriteString("OK")
	return "", false
}

// del serves DEL key...: every key is checked before any is deleted. It
// answers the number of keys named, since every counter exists (reading 0
// once deleted).
func (s *Server) del(ctx context.Context, sess *session, args [][]byte, w *redcon.Writer) (string, bool) {
	keys, reply := s.keysOf(sess, "DEL deletes", args[1:], auth.ScopeWrite)
	if reply != "" {
		return reply, false
	}
	for _, k := range keys {
		if err := s.node.Delete(ctx, k.NS, k.Key); err != nil {
			return errorReply(err), false
		}
	}
	w.WriteInt(len(keys))
	return "", false
}
