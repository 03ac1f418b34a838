package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/countmesh/countmesh/client"
	"github.com/countmesh/countmesh/internal/progress"
)

// export writes the node's export stream (of NS, or of every namespace) to
// stdout, with a progress bar on stderr when stderr is a terminal.
func (c *cli) export(ctx context.Context) error {
	if err := c.nargs(0, 1, "at most one argument: [NS]"); err != nil {
		return err
	}
	ns := ""
	if len(c.args) == 1 {
		ns = c.args[0]
	}
	if progress.IsTerminal(c.out) {
		return usagef("export writes the data to stdout: redirect it to a file (countctl export > backup.ndjson)")
	}
	bar := progress.New(c.errOut, -1, "exporting", progress.Bytes)
	sum, err := c.c.Export(ctx, ns, bar.Writer(c.out))
	if err != nil {
		return err
	}
	bar.Describe(fmt.Sprintf("exported %d namespaces, %d counters", sum.Namespaces, sum.Counters))
	bar.Finish()
	return nil
}

// importFile sends FILE (- for stdin) to the node's import, with a progress
// bar on stderr when stderr is a terminal, and prints what was applied.
func (c *cli) importFile(ctx context.Context) error {
	if err := c.nargs(1, 1, "one argument: FILE (- for stdin)"); err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	size := int64(-1)
	if name := c.args[0]; name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		in = f
	}
	bar := progress.New(c.errOut, size, "importing", progress.Bytes)
	sum, err := c.c.Import(ctx, bar.Reader(in))
	if err != nil {
		return err
	}
	bar.Finish()
	if c.json {
		return c.printSummary(sum)
	}
	fmt.Fprintf(c.out, "imported %d namespaces, %d counters\n", sum.Namespaces, sum.Counters)
	return nil
}

func (c *cli) printSummary(sum client.ImportSummary) error {
	_, err := fmt.Fprintf(c.out, "{\"namespaces\":%d,\"counters\":%d}\n", sum.Namespaces, sum.Counters)
	return err
}
