package series

import (
	"encoding/binary"
	"slices"
	"strings"
	"time"

	"github.com/countmesh/countmesh/node/keyspace"
)

// A Granularity is one of the time-bucket widths a namespace may keep.
type Granularity struct {
	Name string
	Idx  byte  // its byte in a bucket key
	Secs int64 // width in seconds; buckets start at multiples of it (UTC)
}

// Granularities lists the widths a namespace may keep, finest first.
var Granularities = []Granularity{
	{"1s", 0, 1}, {"10s", 1, 10}, {"1m", 2, 60}, {"5m", 3, 300}, {"1h", 4, 3600}, {"1d", 5, 86400},
}

// GranularityByName returns the granularity called name.
func GranularityByName(name string) (Granularity, bool) {
	for _, g := range Granularities {
		if g.Name == name {
			return g, true
		}
	}
	return Granularity{}, false
}

// Window is a granularity a namespace keeps, with its retention.
type Window struct {
	G         Granularity
	Retention time.Duration // 0 keeps buckets forever
}

// ExpiredBefore returns the start of the oldest bucket retention still
// keeps at now: a bucket starting before it ended more than retention ago.
// With no retention it returns the smallest start.
func (w Window) ExpiredBefore(now time.Time) int64 {
	if w.Retention <= 0 {
		return 0
	}
	edge := now.Add(-w.Retention).Unix()
	if edge <= 0 {
		return 0
	}
	return edge / w.G.Secs * w.G.Secs
}

// Start returns the start of w's bucket holding sec (unix seconds).
func (w Window) Start(sec int64) int64 { return sec / w.G.Secs * w.G.Secs }

// Find returns the window of granularity name among ws.
func Find(ws []Window, name string) (Window, bool) {
	for _, w := range ws {
		if w.G.Name == name {
			return w, true
		}
	}
	return Window{}, false
}

// Sort orders ws finest first.
func Sort(ws []Window) {
	slices.SortFunc(ws, func(a, b Window) int { return int(a.G.Secs - b.G.Secs) })
}

// BucketKey appends the internal key of the bucket of series (a user key or
// a label series key) of granularity g starting at start (unix seconds).
func BucketKey(buf []byte, g Granularity, start int64, series string) []byte {
	buf = append(buf, keyspace.KindBucket, g.Idx)
	buf = binary.BigEndian.AppendUint64(buf, uint64(start))
	return append(buf, series...)
}

// ParseBucketKey undoes BucketKey.
func ParseBucketKey(key string) (g Granularity, start int64, series string, ok bool) {
	if len(key) < 10 || key[0] != keyspace.KindBucket || int(key[1]) >= len(Granularities) {
		return g, 0, "", false
	}
	g = Granularities[key[1]]
	start = int64(binary.BigEndian.Uint64([]byte(key[2:10])))
	return g, start, key[10:], true
}

// BucketExpired reports whether key is a time bucket that the retention of
// the windows ws has already dropped at now.
func BucketExpired(ws []Window, key string, now time.Time) bool {
	if len(key) == 0 || key[0] != keyspace.KindBucket {
		return false
	}
	g, start, _, ok := ParseBucketKey(key)
	if !ok {
		return false
	}
	w, kept := Find(ws, g.Name)
	return kept && start < w.ExpiredBefore(now)
}

// Key returns the internal key of the label series labels of key:
// keyspace.KindSeries, key, then for each label in name order 0x00 name 0x1f value.
// Keys and label values hold no control characters, so it parses back.
func Key(key string, labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteByte(keyspace.KindSeries)
	b.WriteString(key)
	for _, name := range names {
		b.WriteByte(0)
		b.WriteString(name)
		b.WriteByte(0x1f)
		b.WriteString(labels[name])
	}
	return b.String()
}

// ParseKey undoes Key.
func ParseKey(s string) (key string, labels map[string]string, ok bool) {
	if len(s) < 2 || s[0] != keyspace.KindSeries {
		return "", nil, false
	}
	parts := strings.Split(s[1:], "\x00")
	labels = make(map[string]string, len(parts)-1)
	for _, p := range parts[1:] {
		name, value, found := strings.Cut(p, "\x1f")
		if !found {
			return "", nil, false
		}
		labels[name] = value
	}
	return parts[0], labels, true
}

// KindJump starts, inside a bucket key, the series of a key's jumps (resets
// and deletes). It appears only after a bucket key's start, never as the
// first byte of a key, so the checks of replicated keys need not know it;
// top-K and aggregates skip it as an internal series.
const KindJump = 0x06

// JumpSeries returns the bucket series of the jumps of key.
func JumpSeries(key string) string { return string([]byte{KindJump}) + key }

// JumpOf returns after-before, or 0 when it leaves int64 (a jump that large
// cannot be kept; the point-in-time reads before it are then off).
func JumpOf(before, after int64) int64 {
	d := after - before
	if (before > 0 && d > after) || (before < 0 && d < after) {
		return 0
	}
	return d
}
