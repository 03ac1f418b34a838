// Package wait polls a condition until it holds or a deadline passes: how
// the tests wait for something (a mesh to form, a value to arrive, a page
// to show it) without sleeping for a fixed time. The condition describes
// what it saw, so that a timeout says what was last seen.
package wait
