// Package progress draws a progress bar (github.com/schollz/progressbar) for
// the long jobs of the command-line tools (countctl export and import,
// countbench prefill) when their output goes to a terminal, and nothing
// otherwise: a redirected stderr, a pipe or a CI log gets no control
// characters.
//
// A nil *Bar is valid and does nothing, so callers need no branch:
//
//	bar := progress.New(os.Stderr, size, "importing", progress.Bytes)
//	_, err := io.Copy(dst, bar.Reader(src))
//	bar.Finish()
package progress
