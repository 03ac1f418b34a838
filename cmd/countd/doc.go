// Command countd is the countmesh server: one peer of the counter mesh,
// serving the HTTP/JSON API of docs/api.md. With no flags it runs a single
// node on 127.0.0.1:7070 with its data in ./data.
package main
