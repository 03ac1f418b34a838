// Package wait polls a condition until it holds or a deadline passes: how
// the tests wait for something (a mesh to form, a value to arrive, a page
// to show it) without sleeping for a fixed time. The condition describes
// what it saw, so that a timeout says what was last seen.
//
//	wait.For(t, d, what, cond)   // cond func() (bool, string); fails t after d
//	wait.Until(t, d, what, cond) // cond func() bool
//	wait.Poll(ctx, d, every, cond) (took, err) // without a testing.T; err wraps ErrTimeout
//
// It is the tests' one waiting helper: no package keeps a copy.
package wait
