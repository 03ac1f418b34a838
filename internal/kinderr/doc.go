// Package kinderr builds errors that belong to a kind (a package's sentinel
// error, such as node.ErrUnavailable) and keep their cause: errors.Is finds
// the kind, and errors.Is and errors.As see through to the cause, while the
// message reads as one sentence ("node: unavailable: read counter: <cause>").
// It is how the tree wraps twice without writing "%w: ...: %v", which keeps
// the kind but loses the cause.
package kinderr
