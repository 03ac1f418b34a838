// Package resp serves countmesh's counters over the Redis protocol (RESP2
// and RESP3), so that redis-cli, redis-benchmark and Redis client libraries
// work against countd --resp-addr. The listener runs its own connection
// loop: it parses the RESP form of commands in place (no copy per command;
// the inline form with github.com/tidwall/redcon's parser) and accepts and
// refuses exactly what redcon's reader does, with redcon's errors; replies
// are formatted by redcon's Writer and a pipeline's go out in one write.
//
// # Keys and commands
//
// A Redis key "ns:key" is counter key of namespace ns, split at the first
// ':'; a key without one is refused. The commands are PING, ECHO, AUTH,
// HELLO, SELECT 0, QUIT, COMMAND (COUNT, LIST, INFO, DOCS), INFO, CLIENT
// (SETNAME, GETNAME, ID, SETINFO), CONFIG GET (answers no parameters), INCR,
// INCRBY, DECR, DECRBY, GET, MGET, SET key <integer> (a reset) and DEL. GET
// of a counter never written answers "0", not nil: every counter exists and
// reads 0 until written, as over HTTP. DEL answers the number of keys named.
//
// # Guarantees
//
// A write is answered once it is as durable as its namespace asks (sync:
// its WAL record is fsynced), as over HTTP. The commands of one pipeline
// (what one read from the connection returned) run in order, and
// consecutive INCR-family commands among them are applied as one node batch,
// so one group commit covers them; replies keep the commands' order. A batch
// that one op refuses (an overflow) is applied op by op, so each command
// gets its own answer.
//
// Errors use Redis's wording where Redis has one (ERR value is not an
// integer or out of range, ERR increment or decrement would overflow,
// NOAUTH, WRONGPASS, NOPERM, ERR unknown command ...).
//
// With tokens (Config.Tokens), every command but PING, AUTH, HELLO and QUIT
// needs AUTH <token> (or AUTH default <token>, or HELLO 3 AUTH default
// <token>), and each key is checked against the token's scope and namespace
// patterns.
//
// Every input is bounded: connections (Config.MaxConns), the bytes of one
// command (Config.MaxCommandBytes), the commands handled before their
// replies are written (Config.MaxPipeline), keys per MGET or DEL (10,000),
// and the time to write replies (Config.WriteTimeout). No lock is held
// while a connection is read or written.
//
// # Use
//
//	srv, err := resp.New(resp.Config{Node: n})
//	go srv.Serve(ln)
//	...
//	srv.Shutdown(ctx) // stop accepting, finish the pipelines in flight
package resp
