package benchplot

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/countmesh/countmesh/bench"
)

// ErrNoSamples is returned for an empty timeline.
var ErrNoSamples = errors.New("benchplot: the timeline has no samples (run with RunConfig.SampleEvery > 0)")

// Options sets the size and titles of the charts.
type Options struct {
	// Width and Height are the size of each PNG in pixels.
	Width, Height int
	// Title, when set, starts each chart's title (e.g. the mode and rate).
	Title string
}

// DefaultOptions gives 800x400 pixel charts without a title prefix.
func DefaultOptions() Options { return Options{Width: 800, Height: 400} }

func (o Options) validate() error {
	if o.Width < 100 || o.Height < 100 || o.Width > 10000 || o.Height > 10000 {
		return fmt.Errorf("benchplot: size %dx%d: want 100 to 10000 pixels each way", o.Width, o.Height)
	}
	return nil
}

// dpi sets how large the text is against the pixels.
const dpi = 96

var (
	colP50    = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff} // blue
	colP99    = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff} // orange
	colMax    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff} // red
	colOps    = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff} // green
	colErrors = colMax
	colMarker = color.Gray{Y: 0x99}
)

// Latency writes the latency chart of tl to w as a PNG.
func Latency(w io.Writer, tl []bench.Sample, o Options) error {
	if err := check(tl, o); err != nil {
		return err
	}
	p := newPlot(o, "latency per second", "latency (ms, log scale)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = decadeTicks{}

	series := []struct {
		name  string
		col   color.Color
		dash  []vg.Length
		value func(bench.Latency) float64
	}{
		{"max", colMax, []vg.Length{vg.Points(2), vg.Points(2)}, func(l bench.Latency) float64 { return l.Max }},
		{"p99", colP99, nil, func(l bench.Latency) float64 { return l.P99 }},
		{"p50", colP50, nil, func(l bench.Latency) float64 { return l.P50 }},
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		var xys plotter.XYs
		for _, smp := range tl {
			// An interval without a successful request has no latency
			// (and a log scale no zero): it is left out.
			if v := s.value(smp.Latency); v > 0 {
				xys = append(xys, plotter.XY{X: smp.To.Seconds(), Y: v})
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		if len(xys) == 0 {
			continue
		}
		if err := addLine(p, s.name, s.col, s.dash, xys); err != nil {
			return err
		}
	}
	if math.IsInf(lo, 1) {
		p.Title.Text += " (no successful request)"
		lo, hi = 1, 1
	}
	// Whole decades, and one more on top for the legend.
	p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
	p.Y.Max = math.Pow(10, math.Ceil(math.Log10(hi))+1)
	setX(p, tl)
	if err := addMeasureMarker(p, tl); err != nil {
		return err
	}
	return writePNG(w, p, o)
}

// Throughput writes the throughput chart of tl to w as a PNG.
func Throughput(w io.Writer, tl []bench.Sample, o Options) error {
	if err := check(tl, o); err != nil {
		return err
	}
	p := newPlot(o, "throughput per second", "operations/s")
	p.Y.Tick.Marker = plot.DefaultTicks{}
	var ops, errs plotter.XYs
	var anyErrors bool
	top := 0.0
	for _, s := range tl {
		x := s.To.Seconds()
		ops = append(ops, plotter.XY{X: x, Y: s.OpsPerS()})
		errs = append(errs, plotter.XY{X: x, Y: s.ErrorsPerS()})
		anyErrors = anyErrors || s.ErrorCount() > 0
		top = max(top, s.OpsPerS(), s.ErrorsPerS())
	}
	if err := addLine(p, "operations/s", colOps, nil, ops); err != nil {
		return err
	}
	if anyErrors {
		if err := addLine(p, "failed requests/s", colErrors, []vg.Length{vg.Points(2), vg.Points(2)}, errs); err != nil {
			return err
		}
	}
	p.Y.Min = 0
	p.Y.Max = max(top*1.25, 1) // room for the legend
	setX(p, tl)
	if err := addMeasureMarker(p, tl); err != nil {
		return err
	}
	return writePNG(w, p, o)
}

// WriteFiles writes prefix+"-latency.png" and prefix+"-throughput.png" and
// returns their paths.
func WriteFiles(prefix string, tl []bench.Sample, o Options) ([]string, error) {
	charts := []struct {
		suffix string
		draw   func(io.Writer, []bench.Sample, Options) error
	}{{"-latency.png", Latency}, {"-throughput.png", Throughput}}
	var paths []string
	for _, c := range charts {
		path := prefix + c.suffix
		if err := writeFile(path, func(w io.Writer) error { return c.draw(w, tl, o) }); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeFile(path string, draw func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("benchplot: %w", err)
	}
	bw := bufio.NewWriter(f)
	err = draw(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("benchplot: %w", cerr)
	}
	return err
}

func check(tl []bench.Sample, o Options) error {
	if len(tl) == 0 {
		return ErrNoSamples
	}
	return o.validate()
}

func newPlot(o Options, title, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	if o.Title != "" {
		p.Title.Text = o.Title + ": " + title
	}
	p.X.Label.Text = "time since start (s)"
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(6)
	p.Title.Padding = vg.Points(6)
	p.Add(plotter.NewGrid())
	return p
}

func addLine(p *plot.Plot, name string, col color.Color, dash []vg.Length, xys plotter.XYs) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("benchplot: %s: %w", name, err)
	}
	l.Color = col
	l.Width = vg.Points(1.5)
	l.Dashes = dash
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// decadeTicks labels each power of ten and marks 2 to 9 times it between,
// for a log axis whose ends are powers of ten. (plot.LogTicks can lose the
// label of the lowest decade to rounding.)
type decadeTicks struct{}

func (decadeTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Round(math.Log10(lo)); e <= math.Round(math.Log10(hi)); e++ {
		d := math.Pow(10, e)
		ticks = append(ticks, plot.Tick{Value: d, Label: strconv.FormatFloat(d, 'g', -1, 64)})
		if e < math.Round(math.Log10(hi)) {
			for m := 2.0; m < 10; m++ {
				ticks = append(ticks, plot.Tick{Value: m * d})
			}
		}
	}
	return ticks
}

// setX spans the whole run.
func setX(p *plot.Plot, tl []bench.Sample) {
	p.X.Min = 0
	p.X.Max = tl[len(tl)-1].To.Seconds()
}

// addMeasureMarker draws a vertical line where the measurement began, when
// the timeline has a warm-up.
func addMeasureMarker(p *plot.Plot, tl []bench.Sample) error {
	if !tl[0].Warmup {
		return nil
	}
	for _, s := range tl {
		if s.Warmup {
			continue
		}
		x := s.From.Seconds()
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
		if err != nil {
			return fmt.Errorf("benchplot: warm-up marker: %w", err)
		}
		l.Color = colMarker
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add("end of warm-up", l)
		return nil
	}
	return nil
}

func writePNG(w io.Writer, p *plot.Plot, o Options) error {
	c := vgimg.NewWith(vgimg.UseImage(image.NewRGBA(image.Rect(0, 0, o.Width, o.Height))), vgimg.UseDPI(dpi))
	p.Draw(draw.New(c))
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(w); err != nil {
		return fmt.Errorf("benchplot: writing the PNG: %w", err)
	}
	return nil
}
