package benchplot

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/countmesh/countmesh/bench"
)

// synthetic is a 20 s run with 2 s of warm-up: latency climbing from 0.2 ms,
// about 10,000 ops/s, and a few errors in second 12.
func synthetic() []bench.Sample {
	var tl []bench.Sample
	for i := range 20 {
		s := bench.Sample{From: time.Duration(i) * time.Second, To: time.Duration(i+1) * time.Second, Warmup: i < 2}
		s.Ops = 10_000 + int64(i%5)*500
		s.Requests = s.Ops
		s.Latency = bench.Latency{P50: 0.2 + 0.01*float64(i), P99: 2 + 0.3*float64(i), Max: 10 + float64(i)}
		if i == 12 {
			s.Errors = map[string]int64{"503": 40}
			s.Requests += 40
		}
		tl = append(tl, s)
	}
	return tl
}

// pixels counts the pixels of img that are not white, and of those the ones
// with a hue (the data lines; axes, text and grid are grey).
func pixels(img image.Image) (inked, coloured int) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r != 0xffff || g != 0xffff || bl != 0xffff {
				inked++
			}
			if r != g || g != bl {
				coloured++
			}
		}
	}
	return inked, coloured
}

// decodeSized decodes a PNG of the size o asks for, or fails the test.
func decodeSized(t *testing.T, r io.Reader, o Options) image.Image {
	t.Helper()
	img, err := png.Decode(r)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != o.Width || b.Dy() != o.Height {
		t.Fatalf("size %dx%d, want %dx%d", b.Dx(), b.Dy(), o.Width, o.Height)
	}
	return img
}

func TestChartsArePNGsOfTheAskedSizeWithData(t *testing.T) {
	o := Options{Width: 640, Height: 320, Title: "incr"}
	for _, tc := range []struct {
		name string
		draw func(io.Writer, []bench.Sample, Options) error
	}{{"latency", Latency}, {"throughput", Throughput}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.draw(&buf, synthetic(), o); err != nil {
				t.Fatal(err)
			}
			img := decodeSized(t, &buf, o)
			inked, coloured := pixels(img)
			total := o.Width * o.Height
			// Axes, labels and grid alone ink a few percent; a blank or
			// all-black canvas fails either bound.
			if inked < total/50 || inked > total/2 {
				t.Errorf("%d of %d pixels inked, want between 2%% and 50%%", inked, total)
			}
			// The data lines are the only coloured ink: at least their
			// length across the plot.
			if coloured < o.Width/2 {
				t.Errorf("%d coloured pixels, want at least %d (the data lines are missing)", coloured, o.Width/2)
			}
		})
	}
}

// A chart's data lines follow the data: the same axes without any successful
// request draw no latency line at all.
func TestLatencyWithoutSuccessHasNoLines(t *testing.T) {
	tl := synthetic()
	for i := range tl {
		tl[i].Latency = bench.Latency{}
		tl[i].Ops = 0
	}
	var buf bytes.Buffer
	if err := Latency(&buf, tl, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, coloured := pixels(img); coloured != 0 {
		t.Errorf("%d coloured pixels, want none (no latency to draw)", coloured)
	}
}

func TestRejectsEmptyTimelineAndBadSize(t *testing.T) {
	if err := Latency(io.Discard, nil, DefaultOptions()); !errors.Is(err, ErrNoSamples) {
		t.Errorf("empty timeline: %v, want ErrNoSamples", err)
	}
	if err := Throughput(io.Discard, synthetic(), Options{Width: 0, Height: 400}); err == nil {
		t.Error("width 0 accepted")
	}
}

func TestWriteFiles(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "run")
	paths, err := WriteFiles(prefix, synthetic(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{prefix + "-latency.png", prefix + "-throughput.png"}
	if len(paths) != 2 || paths[0] != want[0] || paths[1] != want[1] {
		t.Fatalf("paths %v, want %v", paths, want)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != 800 || cfg.Height != 400 {
			t.Errorf("%s: %dx%d, %v; want an 800x400 PNG", p, cfg.Width, cfg.Height, err)
		}
	}
}

func TestCurves(t *testing.T) {
	o := Options{Width: 640, Height: 320}
	curves := []Curve{
		{Name: "full replication", X: []float64{10, 25, 50, 100}, Y: []float64{2000, 1990, 1995, 1980}},
		{Name: "3 per region", X: []float64{10, 25, 50, 100}, Y: []float64{600, 240, 120, 60}},
	}
	var buf bytes.Buffer
	if err := Curves(&buf, "changes applied per node", "nodes", "changes/s", curves, o); err != nil {
		t.Fatal(err)
	}
	if _, coloured := pixels(decodeSized(t, &buf, o)); coloured < o.Width {
		t.Errorf("%d coloured pixels, want at least %d (two data lines)", coloured, o.Width)
	}
	if err := Curves(io.Discard, "t", "x", "y", []Curve{{Name: "bad", X: []float64{1}, Y: nil}}, o); err == nil {
		t.Error("a curve with fewer y than x values was drawn")
	}
	if err := Curves(io.Discard, "t", "x", "y", nil, o); err == nil {
		t.Error("no curves: no error")
	}
}
