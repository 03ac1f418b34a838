// Command countctl is the command-line client of countd. It speaks only the
// public HTTP API (through package client).
//
//	countctl [--addr http://127.0.0.1:7070] [--json] [--timeout 10s] <command>
//
// The address comes from --addr, else the COUNTMESH_ADDR environment
// variable, else http://127.0.0.1:7070. Output is human-readable by default;
// --json prints the server's JSON answer as sent, one document per line.
//
// Exit status: 0 on success; 1 when the request was refused or failed (the
// error's message is printed on stderr) and when a rate limit refuses the
// request; 2 on bad usage (the usage is printed on stderr).
//
// Run countctl --help for the commands.
package main
