package splitmix

// Mix is the splitmix64 finaliser: a bijection that spreads every input
// bit over the whole word (FNV's low bits, for one, mix poorly for inputs
// that differ in their last bytes).
func Mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
