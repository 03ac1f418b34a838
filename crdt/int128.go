package crdt

import "math/bits"

// Small helpers for the 128-bit accumulator in Counter.value.

func addU64(a, b uint64) (uint64, uint64) {
	return bits.Add64(a, b, 0)
}

// carryHi is the high word of v sign-extended to 128 bits.
func carryHi(v int64) int64 {
	if v < 0 {
		return -1
	}
	return 0
}

func addUnsigned(hi *int64, lo *uint64, v uint64) {
	var carry uint64
	*lo, carry = bits.Add64(*lo, v, 0)
	*hi += int64(carry)
}

func subUnsigned(hi *int64, lo *uint64, v uint64) {
	var borrow uint64
	*lo, borrow = bits.Sub64(*lo, v, 0)
	*hi -= int64(borrow)
}
