// Package ptytest gives tests a pseudo-terminal (github.com/creack/pty), to
// check what a command draws when its output is a terminal. Only tests
// import it.
package ptytest
