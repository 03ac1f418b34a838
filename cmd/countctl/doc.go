// Command countctl is the command-line client of countd. It speaks only the
// public HTTP API (through package client), and issues the certificates and
// secrets that secure a mesh (through package internal/pki).
//
//	countctl [--addr http://127.0.0.1:7070] [--token T] [--ca FILE] [--json] [--timeout 10s] <command>
//
// The address comes from --addr, else the COUNTMESH_ADDR environment
// variable, else http://127.0.0.1:7070. The API token comes from --token,
// else COUNTMESH_TOKEN, and is sent as "Authorization: Bearer <token>". For
// a node serving HTTPS (--addr https://...), --ca names the PEM file of the
// CA that signed its certificate. Output is human-readable by default;
// --json prints the server's JSON answer as sent, one document per line.
//
// The local commands certs create-ca, certs create-node, keygen, token and
// version need no node. keygen and token print the secret alone on one line,
// so that "countctl keygen >> gossip.key" works (mind the file's mode).
//
// export and import (backup and restore) stream every counter's full state
// to stdout and from a file; they draw a progress bar on stderr only when
// stderr is a terminal (package internal/progress).
//
// Exit status: 0 on success; 1 when the request was refused or failed (the
// error's message is printed on stderr) and when a rate limit refuses the
// request; 2 on bad usage (the usage is printed on stderr).
//
// Run countctl --help for the commands.
package main
