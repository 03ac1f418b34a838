package benchplot

import (
	"errors"
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Curve is one line of a Curves chart: Y[i] at X[i], with X ascending.
type Curve struct {
	Name string
	X, Y []float64
}

// curveColours are the lines' colours, in order.
var curveColours = []color.Color{colP50, colP99, colOps, colMax,
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}}

// Curves writes a PNG chart of curves over a shared linear x axis (for
// example a measure against the number of nodes), with a point marked at
// each value, to w. The y axis starts at 0 and leaves room above the
// highest value for the legend.
func Curves(w io.Writer, title, xLabel, yLabel string, curves []Curve, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	if len(curves) == 0 {
		return errors.New("benchplot: no curves to draw")
	}
	p := newPlot(o, title, yLabel)
	p.X.Label.Text = xLabel
	p.Y.Min = 0
	top := 0.0
	for i, c := range curves {
		if len(c.X) == 0 || len(c.X) != len(c.Y) {
			return fmt.Errorf("benchplot: curve %q has %d x and %d y values; want the same number, at least 1", c.Name, len(c.X), len(c.Y))
		}
		xys := make(plotter.XYs, len(c.X))
		for j := range c.X {
			xys[j] = plotter.XY{X: c.X[j], Y: c.Y[j]}
			top = max(top, c.Y[j])
		}
		col := curveColours[i%len(curveColours)]
		if err := addLine(p, c.Name, col, nil, xys); err != nil {
			return err
		}
		pts, err := plotter.NewScatter(xys)
		if err != nil {
			return fmt.Errorf("benchplot: %s: %w", c.Name, err)
		}
		pts.Color = col
		pts.Radius = vg.Points(2.5)
		p.Add(pts)
	}
	if top > 0 {
		p.Y.Max = 1.35 * top
	}
	return writePNG(w, p, o)
}
