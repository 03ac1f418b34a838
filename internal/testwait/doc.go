// Package testwait is how tests wait for a condition: poll it, with a
// deadline, instead of sleeping for a guessed time.
package testwait
