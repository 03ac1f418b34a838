// Package hlc is a hybrid logical clock: timestamps that follow the wall
// clock in milliseconds but never go backwards and order causally related
// events even when clocks are skewed. A timestamp is the wall time in
// milliseconds shifted left 16 bits, plus a 16-bit logical counter.
package hlc
