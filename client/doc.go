// Package client is a Go client for countd, the countmesh server. It speaks
// only the public HTTP API described in docs/api.md and is what countctl and
// the countbench load generator are built on.
//
// # Usage
//
//	c, err := client.New(client.DefaultConfig()) // http://127.0.0.1:7070
//	if err != nil { ... }
//	v, err := c.Incr(ctx, "likes", "post:42", 1, client.IncrOptions{ID: reqID})
//
// A Client is safe for concurrent use by many goroutines and should be
// reused: its http.Client keeps a large pool of keep-alive connections
// (MaxIdleConnsPerHost is raised well above net/http's default of 2), so many
// concurrent requests do not each pay for a new TCP connection.
//
// Every call takes a context. Config.Timeout bounds each request except the
// Server-Sent Events stream of Watch, which lasts until its context is done.
//
// # Errors
//
// A request the server refuses returns a *Error carrying the HTTP status and
// the server's {"error":{"code","message"}} body. Test for a class of refusal
// with errors.Is and the package's sentinels, and read the details with
// errors.As:
//
//	_, err := c.Decr(ctx, "likes", "post:42", 1, client.IncrOptions{})
//	if errors.Is(err, client.ErrConflict) {
//		// the namespace's bound (e.g. min=0) would be crossed
//	}
//	var apiErr *client.Error
//	if errors.As(err, &apiErr) {
//		log.Printf("status %d code %s: %s", apiErr.Status, apiErr.Code, apiErr.Message)
//	}
//
// Failures that never reached an answer (connection refused, timeouts,
// cancelled contexts) are returned wrapped with %w, so errors.Is(err,
// context.DeadlineExceeded) works as usual.
//
// A node that requires tokens answers 401 (ErrUnauthenticated) to a request
// without a known token and 403 (ErrPermissionDenied) when the token's scope
// or namespaces do not cover it.
//
// # Security
//
// Set Config.Token to send "Authorization: Bearer <token>" with every
// request. For a node serving HTTPS with a certificate from a private CA
// (countctl certs create-ca), trust that CA with Config.TLSConfig:
//
//	cfg := client.DefaultConfig()
//	cfg.BaseURL = "https://node-1.internal:7070"
//	cfg.Token = os.Getenv("COUNTMESH_TOKEN")
//	if cfg.TLSConfig, err = client.TLSConfigForCA("certs/ca.crt"); err != nil { ... }
//	c, err := client.New(cfg)
//
// # Raw answers
//
// Each result type carries the server's answer undecoded in its Raw field, so
// tools such as countctl --json can print exactly what the server sent, and
// fields this package does not know yet are not lost.
//
// # Load generation
//
// EncodeBatch, BatchRaw and Send let a load generator encode request bodies
// once, before the timed run, and replay them with little CPU per request.
package client
