package series

import (
	"math"
	"testing"
	"time"
)

func TestBucketKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		g      Granularity
		start  int64
		series string
	}{
		{"user key", Granularities[2], 1_700_000_040, "page/home"},
		{"label series", Granularities[5], 86400 * 20000, Key("page", map[string]string{"country": "nl", "device": "ios"})},
		{"jumps", Granularities[0], 0, JumpSeries("k")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, start, series, ok := ParseBucketKey(string(BucketKey(nil, tc.g, tc.start, tc.series)))
			if !ok || g != tc.g || start != tc.start || series != tc.series {
				t.Fatalf("parse = %v %d %q %v, want %v %d %q", g, start, series, ok, tc.g, tc.start, tc.series)
			}
		})
	}
	if _, _, _, ok := ParseBucketKey("k"); ok {
		t.Fatal("a user key parsed as a bucket key")
	}
}

func TestSeriesKeyRoundTrip(t *testing.T) {
	labels := map[string]string{"b": "2", "a": "1", "c": ""}
	sk := Key("page/home", labels)
	if sk != Key("page/home", map[string]string{"c": "", "a": "1", "b": "2"}) {
		t.Fatal("the series key depends on the labels' order")
	}
	key, got, ok := ParseKey(sk)
	if !ok || key != "page/home" || len(got) != len(labels) {
		t.Fatalf("parse = %q %v %v", key, got, ok)
	}
	for k, v := range labels {
		if got[k] != v {
			t.Fatalf("label %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestRetentionEdge(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 30, 15, 0, time.UTC)
	w := Window{G: Granularities[2], Retention: 48 * time.Hour}
	edge := w.ExpiredBefore(now)
	if want := now.Add(-48*time.Hour).Unix() / 60 * 60; edge != want {
		t.Fatalf("edge %d, want %d", edge, want)
	}
	kept := string(BucketKey(nil, w.G, edge, "k"))
	dropped := string(BucketKey(nil, w.G, edge-60, "k"))
	ws := []Window{w}
	if BucketExpired(ws, kept, now) || !BucketExpired(ws, dropped, now) {
		t.Fatalf("expired: kept %v, dropped %v", BucketExpired(ws, kept, now), BucketExpired(ws, dropped, now))
	}
	if (Window{G: w.G}).ExpiredBefore(now) != 0 {
		t.Fatal("a window without retention drops buckets")
	}
}

func TestJumpOf(t *testing.T) {
	for _, tc := range []struct{ before, after, want int64 }{
		{5, 0, -5}, {-3, 4, 7}, {0, 0, 0},
		{math.MinInt64, math.MaxInt64, 0}, // leaves int64: not kept
		{math.MaxInt64, -1, math.MinInt64}, {math.MaxInt64, -2, 0},
	} {
		if got := JumpOf(tc.before, tc.after); got != tc.want {
			t.Errorf("JumpOf(%d, %d) = %d, want %d", tc.before, tc.after, got, tc.want)
		}
	}
}
