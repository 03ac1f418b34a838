// Package auth holds countmesh's API tokens: the tokens file given to
// countd --api-tokens-file, parsed into an immutable *Tokens, and a Store
// that swaps in a re-read file on SIGHUP.
//
// # The tokens file
//
// One token a line:
//
//	<token> <scope> [<namespace-pattern> ...]
//
// The scope is read, write (includes read) or admin (includes write, and
// namespace configs). A pattern is a namespace name, a namespace prefix
// followed by "*" (pages* covers pages, pages-eu, ...), or "*" alone; no
// pattern covers every namespace. "#" starts a comment, so a token cannot
// hold "#"; blank lines are ignored. Example:
//
//	# dashboards read everything, the ingester writes its own namespaces
//	Yq3cR0m5u1pV9xHk2sTn8wLb4eJd7gAa6fZi0oUcM1Q read
//	h8Wc2kQ5vN1tR7yB3mX9pL4sD6fJ0gZa2eUi5oTq8rE write pages clicks-*
//
// A token is 16 to 1024 characters of A-Z a-z 0-9 - . _ ~ + / = (what an
// HTTP Bearer header can carry); shorter tokens are refused because they can
// be guessed. `countctl token` makes 43-character random tokens. A token may
// appear once. The file is at most MaxFileBytes and holds 1 to MaxTokens
// tokens. Parse errors name the line and what is wrong with it, and never
// quote a token.
//
// # Guarantees
//
// Tokens keeps only the SHA-256 digests of the tokens. Authenticate compares
// the digest of the presented token with every configured digest using
// crypto/subtle, without stopping at a match, so the time it takes does not
// depend on which token (if any) matched or on how much of it was right.
//
// A *Tokens is immutable and safe for concurrent use; so is a *Store, whose
// Reload replaces the tokens atomically and keeps the old ones when the file
// is not valid.
//
// # Use
//
//	store, err := auth.LoadFile(path) // at start-up
//	...
//	grant, err := store.Current().Authenticate(bearer)    // ErrUnauthenticated
//	err = grant.Allow(auth.ScopeWrite, "pages")             // ErrPermissionDenied
//	...
//	if err := store.Reload(); err != nil { log it }         // on SIGHUP
package auth
