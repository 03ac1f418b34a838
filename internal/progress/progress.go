package progress

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Unit says what a bar counts.
type Unit int

// Units of a bar.
const (
	Items Unit = iota // a count of things (counters, keys)
	Bytes             // bytes, shown as kB, MB...
)

// IsTerminal reports whether w is a terminal: an *os.File open on a tty.
// Whether to show a bar is decided by this alone.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && f != nil && term.IsTerminal(int(f.Fd()))
}

// Bar is a progress bar on a terminal; nil is no bar.
type Bar struct {
	b *progressbar.ProgressBar
}

// New returns a bar drawn on w when w is a terminal (IsTerminal), and nil
// otherwise. total is the count at completion; a negative total is
// unknown, and the bar then shows a spinner with the count and the rate.
func New(w io.Writer, total int64, desc string, unit Unit) *Bar {
	if !IsTerminal(w) {
		return nil
	}
	return draw(w, total, desc, unit)
}

// draw returns a bar drawn on w, whatever w is.
func draw(w io.Writer, total int64, desc string, unit Unit) *Bar {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(w, "\n") }),
		progressbar.OptionSpinnerType(14),
	}
	if unit == Bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("counters"))
	}
	return &Bar{b: progressbar.NewOptions64(total, opts...)}
}

// Add advances the bar by n.
func (b *Bar) Add(n int64) {
	if b != nil {
		_ = b.b.Add64(n)
	}
}

// Describe changes the text before the bar.
func (b *Bar) Describe(desc string) {
	if b != nil {
		b.b.Describe(desc)
	}
}

// Finish draws the bar complete and ends its line.
func (b *Bar) Finish() {
	if b != nil {
		_ = b.b.Finish()
	}
}

// Reader returns r, counting on the bar what is read from it.
func (b *Bar) Reader(r io.Reader) io.Reader {
	if b == nil {
		return r
	}
	return &counting{r: r, bar: b}
}

// Writer returns w, counting on the bar what is written to it.
func (b *Bar) Writer(w io.Writer) io.Writer {
	if b == nil {
		return w
	}
	return &counting{w: w, bar: b}
}

// counting counts the bytes that pass through it on a bar.
type counting struct {
	r   io.Reader
	w   io.Writer
	bar *Bar
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bar.Add(int64(n))
	return n, err
}

func (c *counting) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.bar.Add(int64(n))
	return n, err
}
