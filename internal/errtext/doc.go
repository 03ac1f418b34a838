// Package errtext turns the errors of package node and package auth into
// the text a client reads: the message without the sentinel prefixes
// ("node: invalid argument: key must be ..." reads "key must be ..."),
// since the status code of the HTTP API, or the error prefix of the Redis
// protocol, already says the category. Both listeners use it, so that a
// client reads the same explanation over either.
package errtext
