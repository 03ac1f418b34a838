// Package msgpackguard checks msgpack input from the network before it is
// decoded, for the two ways the msgpack decoder (vmihailenco/msgpack v5)
// can be made to use far more than the input's size:
//
//   - it recurses once per level of nesting when it skips a value (an
//     unknown map key's value, say), so a body of a few MiB of nested
//     one-element arrays overflows the goroutine stack, which Go cannot
//     recover from: the process dies;
//   - it allocates up to 1 MiB for a string or byte slice whose declared
//     length the input does not hold, and its pooled decoders keep what
//     they allocated: a stream of small frames each declaring a huge
//     string grew a process by about 1 MiB per frame, without bound.
//
// Check walks the input once, without recursion, and refuses nesting
// deeper than a bound and any declared length (of a string, a byte slice,
// an extension or a container's elements) that the rest of the input
// cannot hold.
package msgpackguard
