package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/countmesh/countmesh/client"
)

func (c *cli) incr(ctx context.Context) error {
	if err := c.nargs(2, 3, "NS KEY [BY]"); err != nil {
		return err
	}
	by := int64(1)
	if len(c.args) == 3 {
		v, err := parseInt("BY", c.args[2])
		if err != nil {
			return err
		}
		by = v
	}
	opts := client.IncrOptions{ID: c.fl.get("id")}
	var err error
	if opts.Consistency, err = c.consistency(); err != nil {
		return err
	}
	for _, l := range c.fl["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return usagef("--label %q: want key=value", l)
		}
		if opts.Labels == nil {
			opts.Labels = map[string]string{}
		}
		opts.Labels[k] = v
	}
	if c.fl.has("at") {
		if opts.At, err = parseTime("at", c.fl.get("at")); err != nil {
			return err
		}
	}
	var v client.CounterValue
	if c.cmd == "incr" {
		v, err = c.c.Incr(ctx, c.args[0], c.args[1], by, opts)
	} else {
		v, err = c.c.Decr(ctx, c.args[0], c.args[1], by, opts)
	}
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(v.Raw)
		return nil
	}
	if v.Duplicate {
		fmt.Fprintf(c.out, "%d (duplicate: id %q was already counted)\n", v.Value, opts.ID)
		return nil
	}
	fmt.Fprintln(c.out, v.Value)
	return nil
}

func (c *cli) get(ctx context.Context) error {
	if err := c.nargs(2, 2, "NS KEY"); err != nil {
		return err
	}
	var opts client.GetOptions
	var err error
	if opts.Consistency, err = c.consistency(); err != nil {
		return err
	}
	if c.fl.has("at") {
		if opts.At, err = parseTime("at", c.fl.get("at")); err != nil {
			return err
		}
	}
	v, err := c.c.Get(ctx, c.args[0], c.args[1], opts)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(v.Raw)
		return nil
	}
	fmt.Fprintln(c.out, v.Value)
	return nil
}

func (c *cli) reset(ctx context.Context) error {
	if err := c.nargs(3, 3, "NS KEY VALUE"); err != nil {
		return err
	}
	value, err := parseInt("VALUE", c.args[2])
	if err != nil {
		return err
	}
	v, err := c.c.Reset(ctx, c.args[0], c.args[1], value)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(v.Raw)
		return nil
	}
	if len(v.Raw) == 0 {
		v.Value = value
	}
	fmt.Fprintln(c.out, v.Value)
	return nil
}

func (c *cli) del(ctx context.Context) error {
	if err := c.nargs(2, 2, "NS KEY"); err != nil {
		return err
	}
	raw, err := c.c.Delete(ctx, c.args[0], c.args[1])
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(raw)
		return nil
	}
	fmt.Fprintf(c.out, "deleted %s/%s\n", c.args[0], c.args[1])
	return nil
}

func (c *cli) list(ctx context.Context) error {
	if err := c.nargs(1, 2, "NS [PREFIX]"); err != nil {
		return err
	}
	prefix := ""
	if len(c.args) == 2 {
		prefix = c.args[1]
	}
	limit := 0
	if c.fl.has("limit") {
		v, err := strconv.Atoi(c.fl.get("limit"))
		if err != nil || v <= 0 {
			return usagef("--limit %q: want a positive integer", c.fl.get("limit"))
		}
		limit = v
	}
	cursor := c.fl.get("cursor")
	all := c.fl.has("all")
	var items []client.KeyValue
	for {
		p, err := c.c.List(ctx, c.args[0], prefix, cursor, limit)
		if err != nil {
			return err
		}
		if c.json && !all {
			c.printJSON(p.Raw)
			return nil
		}
		items = append(items, p.Items...)
		cursor = p.NextCursor
		if !all || cursor == "" {
			break
		}
	}
	if c.json {
		b, err := json.Marshal(struct {
			Items      []client.KeyValue `json:"items"`
			NextCursor string            `json:"next_cursor"`
		}{items, ""})
		if err != nil {
			return fmt.Errorf("encoding the listing: %w", err)
		}
		c.printJSON(b)
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%d\n", it.Key, it.Value)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	if cursor != "" {
		fmt.Fprintf(c.out, "(more: --cursor %s, or --all)\n", cursor)
	}
	return nil
}

func (c *cli) top(ctx context.Context) error {
	if err := c.nargs(1, 2, "NS [K]"); err != nil {
		return err
	}
	opts := client.TopOptions{Window: c.fl.get("window"), Prefix: c.fl.get("prefix")}
	if len(c.args) == 2 {
		k, err := strconv.Atoi(c.args[1])
		if err != nil || k <= 0 {
			return usagef("K %q: want a positive integer", c.args[1])
		}
		opts.K = k
	}
	r, err := c.c.Top(ctx, c.args[0], opts)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(r.Raw)
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tKEY\tVALUE")
	for i, it := range r.Items {
		fmt.Fprintf(tw, "%d\t%s\t%d\n", i+1, it.Key, it.Value)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	if !r.Exact {
		fmt.Fprintln(c.out, "(approximate ranking)")
	}
	return nil
}

func (c *cli) series(ctx context.Context) error {
	if err := c.nargs(2, 2, "NS KEY"); err != nil {
		return err
	}
	opts := client.SeriesOptions{Step: c.fl.get("step")}
	var err error
	if c.fl.has("from") {
		if opts.From, err = parseTime("from", c.fl.get("from")); err != nil {
			return err
		}
	}
	if c.fl.has("to") {
		if opts.To, err = parseTime("to", c.fl.get("to")); err != nil {
			return err
		}
	}
	s, err := c.c.Series(ctx, c.args[0], c.args[1], opts)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(s.Raw)
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TIME (step %s)\tDELTA\n", s.Step)
	for _, p := range s.Points {
		fmt.Fprintf(tw, "%s\t%d\n", p.T.UTC().Format(time.RFC3339), p.Delta)
	}
	fmt.Fprintf(tw, "total\t%d\n", s.Total)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

func (c *cli) watch(ctx context.Context) error {
	if err := c.nargs(1, 2, "NS [KEY]"); err != nil {
		return err
	}
	key := ""
	if len(c.args) == 2 {
		key = c.args[1]
	}
	opts := client.WatchOptions{Prefix: c.fl.get("prefix")}
	if key != "" && opts.Prefix != "" {
		return usagef("--prefix applies to a namespace watch (no KEY)")
	}
	if c.fl.has("interval") {
		d, err := time.ParseDuration(c.fl.get("interval"))
		if err != nil || d <= 0 {
			return usagef("--interval %q: want a duration such as 100ms", c.fl.get("interval"))
		}
		opts.Interval = d
	}
	count := -1
	for _, name := range []string{"count", "n"} {
		if c.fl.has(name) {
			n, err := strconv.Atoi(c.fl.get(name))
			if err != nil || n <= 0 {
				return usagef("--%s %q: want a positive integer", name, c.fl.get(name))
			}
			count = n
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.c.Watch(ctx, c.args[0], key, opts)
	if err != nil {
		return err
	}
	for ev := range events {
		if ev.Err != nil {
			return ev.Err
		}
		if c.json {
			c.printJSON(ev.Data)
		} else if ev.Type == "value" {
			ts := ev.TS.Time
			if ts.IsZero() {
				ts = time.Now()
			}
			fmt.Fprintf(c.out, "%s  %s/%s = %d\n", ts.UTC().Format(time.RFC3339Nano), ev.NS, ev.Key, ev.Value)
		} else {
			fmt.Fprintf(c.out, "%s: %s\n", ev.Type, ev.Data)
		}
		if count > 0 {
			count--
			if count == 0 {
				return nil
			}
		}
	}
	return nil // ctx done: interrupted
}

func (c *cli) aggregate(ctx context.Context) error {
	if err := c.nargs(1, 1, "NS"); err != nil {
		return err
	}
	a, err := c.c.Aggregate(ctx, c.args[0], client.AggregateOptions{
		Prefix: c.fl.get("prefix"), Window: c.fl.get("window"), GroupBy: c.fl.get("group-by"),
	})
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(a.Raw)
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tCOUNT\tSUM\tAVG\tMIN\tMAX")
	row := func(name string, s client.Stats) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%g\t%d\t%d\n", name, s.Count, s.Sum, s.Avg, s.Min, s.Max)
	}
	if a.Groups == nil || a.Count != 0 {
		row("(all)", a.Stats)
	}
	names := make([]string, 0, len(a.Groups))
	for name := range a.Groups {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		row(name, a.Groups[name])
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

func (c *cli) ratelimit(ctx context.Context) error {
	if err := c.nargs(4, 4, "NS KEY LIMIT WINDOW"); err != nil {
		return err
	}
	limit, err := parseInt("LIMIT", c.args[2])
	if err != nil {
		return err
	}
	cost := int64(0)
	if c.fl.has("cost") {
		if cost, err = parseInt("--cost", c.fl.get("cost")); err != nil {
			return err
		}
	}
	r, err := c.c.RateLimit(ctx, c.args[0], c.args[1], limit, c.args[3], cost)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(r.Raw)
	} else {
		verdict := "allowed"
		if !r.Allowed {
			verdict = "refused"
		}
		fmt.Fprintf(c.out, "%s: %d of %d remaining, window resets in %dms\n", verdict, r.Remaining, r.Limit, r.ResetMS)
	}
	if !r.Allowed {
		return &deniedError{}
	}
	return nil
}

func (c *cli) cluster(ctx context.Context) error {
	if len(c.args) > 0 && c.args[0] == "forget" {
		return c.forget(ctx)
	}
	if c.fl.has("gone") {
		return usagef("--gone goes with cluster forget")
	}
	if err := c.nargs(0, 0, "no arguments, or forget NODE"); err != nil {
		return err
	}
	ci, err := c.c.Cluster(ctx)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(ci.Raw)
		return nil
	}
	n := ci.Node
	fmt.Fprintf(c.out, "node %s  region %s  http %s  gossip %s\n\n", n.Name, n.Region, n.HTTPAddr, n.GossipAddr)
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tREGION\tSTATE\tHTTP")
	for _, m := range ci.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Region, m.State, m.HTTPAddr)
	}
	if len(ci.Replication) > 0 {
		fmt.Fprintln(tw, "\nPEER\tREGION\tLAG")
		for _, r := range ci.Replication {
			fmt.Fprintf(tw, "%s\t%s\t%gms\n", r.Peer, r.Region, r.LagMS)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

// forget runs "cluster forget NODE".
func (c *cli) forget(ctx context.Context) error {
	if len(c.args) != 2 {
		return usagef("cluster forget takes NODE, the name of a node that left for good")
	}
	f, err := c.c.Forget(ctx, c.args[1], c.fl.has("gone"))
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(f.Raw)
		return nil
	}
	fmt.Fprintf(c.out, "forgot %s (entry %d of the retired list, %d slot id(s)); every node folds its slots once it has caught up (retired generation %d)\n",
		f.Node, f.Index, len(f.IDs), f.Generation)
	return nil
}

func (c *cli) health(ctx context.Context) error {
	if err := c.nargs(0, 0, "no arguments"); err != nil {
		return err
	}
	if err := c.c.Healthz(ctx); err != nil {
		return err
	}
	if err := c.c.Readyz(ctx); err != nil {
		if !c.json {
			fmt.Fprintln(c.out, "alive, not ready")
		}
		return err
	}
	if c.json {
		fmt.Fprintln(c.out, `{"alive":true,"ready":true}`)
	} else {
		fmt.Fprintln(c.out, "alive, ready")
	}
	return nil
}

func (c *cli) ns(ctx context.Context) error {
	if len(c.args) == 0 {
		return usagef("ns takes get NS, set NS key=value..., or list")
	}
	sub, rest := c.args[0], c.args[1:]
	switch sub {
	case "list":
		if len(rest) != 0 {
			return usagef("ns list takes no arguments")
		}
		l, err := c.c.ListNamespaces(ctx)
		if err != nil {
			return err
		}
		if c.json {
			c.printJSON(l.Raw)
			return nil
		}
		for _, it := range l.Items {
			if it.Config.Type != "" {
				fmt.Fprintf(c.out, "%s\t%s\n", it.Name, it.Config.Type)
			} else {
				fmt.Fprintln(c.out, it.Name)
			}
		}
		return nil
	case "get":
		if len(rest) != 1 {
			return usagef("ns get takes NS")
		}
		cfg, err := c.c.GetNamespace(ctx, rest[0])
		if err != nil {
			return err
		}
		if c.json {
			c.printJSON(cfg.Raw)
			return nil
		}
		return c.printNamespace(rest[0], cfg)
	case "set":
		if len(rest) < 2 {
			return usagef("ns set takes NS key=value...")
		}
		patch, err := namespacePatch(rest[1:])
		if err != nil {
			return err
		}
		out, err := c.c.PutNamespace(ctx, rest[0], patch)
		if err != nil {
			return err
		}
		if c.json {
			c.printJSON(out.Raw)
			return nil
		}
		return c.printNamespace(rest[0], out)
	}
	return usagef("unknown ns command %q: want get, set or list", sub)
}

// namespacePatch turns key=value assignments into a patch: the keys not
// named keep their value on the server.
func namespacePatch(settings []string) (client.NamespacePatch, error) {
	var p client.NamespacePatch
	for _, s := range settings {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return p, usagef("ns set: %q is not key=value", s)
		}
		none := v == "" || v == "none" || v == "null"
		switch strings.ReplaceAll(k, "-", "_") {
		case "type":
			if v != "eventual" && v != "exact" && v != "approximate" {
				return p, usagef("ns set: type %q: want eventual, exact or approximate", v)
			}
			p.Type = client.Ptr(v)
		case "durability":
			if v != "sync" && v != "async" {
				return p, usagef("ns set: durability %q: want sync or async", v)
			}
			p.Durability = client.Ptr(v)
		case "windows":
			w := []string{}
			if !none {
				w = strings.Split(v, ",")
			}
			p.Windows = &w
		case "retention":
			r := map[string]string{}
			if !none {
				for _, pair := range strings.Split(v, ",") {
					g, keep, ok := strings.Cut(pair, ":")
					if !ok || g == "" || keep == "" {
						return p, usagef("ns set: retention %q: want granularity:duration,... such as 1m:48h,1h:90d", v)
					}
					r[g] = keep
				}
			}
			p.Retention = &r
		case "ttl":
			p.TTL = client.Ptr(v)
		case "idempotency_window":
			p.IdempotencyWindow = client.Ptr(v)
		case "replicas":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return p, usagef("ns set: replicas %q: want 0 (every node) or a number of nodes per region", v)
			}
			p.Replicas = client.Ptr(n)
		case "min", "max":
			b := client.NoBound()
			if !none {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return p, usagef("ns set: %s %q: want an integer or none", k, v)
				}
				b = client.BoundAt(n)
			}
			if k == "min" {
				p.Min = b
			} else {
				p.Max = b
			}
		default:
			return p, usagef("ns set: unknown key %q: want type, durability, windows, retention, ttl, min, max, idempotency_window or replicas", k)
		}
	}
	return p, nil
}

func (c *cli) printNamespace(ns string, cfg client.NamespaceConfig) error {
	orDefault := func(s string) string {
		if s == "" {
			return "(default)"
		}
		return s
	}
	bound := func(p *int64) string {
		if p == nil {
			return "none"
		}
		return strconv.FormatInt(*p, 10)
	}
	windows := "none"
	if len(cfg.Windows) > 0 {
		windows = strings.Join(cfg.Windows, ",")
	}
	retention := "(default)"
	if len(cfg.Retention) > 0 {
		keys := make([]string, 0, len(cfg.Retention))
		for k := range cfg.Retention {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + cfg.Retention[k]
		}
		retention = strings.Join(parts, ",")
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "namespace\t%s\n", ns)
	fmt.Fprintf(tw, "type\t%s\n", orDefault(cfg.Type))
	fmt.Fprintf(tw, "durability\t%s\n", orDefault(cfg.Durability))
	fmt.Fprintf(tw, "windows\t%s\n", windows)
	fmt.Fprintf(tw, "retention\t%s\n", retention)
	fmt.Fprintf(tw, "ttl\t%s\n", orDefault(cfg.TTL))
	fmt.Fprintf(tw, "min\t%s\n", bound(cfg.Min))
	fmt.Fprintf(tw, "max\t%s\n", bound(cfg.Max))
	fmt.Fprintf(tw, "idempotency_window\t%s\n", orDefault(cfg.IdempotencyWindow))
	replicas := "every node"
	if cfg.Replicas > 0 {
		replicas = fmt.Sprintf("%d per region", cfg.Replicas)
	}
	fmt.Fprintf(tw, "replicas\t%s\n", replicas)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
