//go:build linux

package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/countmesh/countmesh/chaos"
)

// client is one client goroutine: it owns its rng and its ops.
type client struct {
	id  int
	c   *campaign
	rng *rand.Rand
	ops []chaos.Op
	seq int
}

// loop runs operations until stop is set, with a short think time between
// them so that a long campaign's history stays checkable.
func (cl *client) loop(stop *atomic.Bool) {
	works := make([]Work, 0, len(cl.c.cfg.Workload))
	total := 0
	for w, n := range cl.c.cfg.Workload {
		if n > 0 {
			works = append(works, w)
			total += n
		}
	}
	slices.Sort(works)
	if total == 0 {
		return
	}
	for !stop.Load() {
		x := cl.rng.IntN(total)
		for _, w := range works {
			if x -= cl.c.cfg.Workload[w]; x < 0 {
				cl.do(w)
				break
			}
		}
		time.Sleep(time.Duration(5+cl.rng.IntN(20)) * time.Millisecond)
	}
}

func (cl *client) pick(not *member) *member {
	ms := cl.c.m.members()
	if not != nil && len(ms) > 1 {
		ms = slices.DeleteFunc(ms, func(n *member) bool { return n == not })
	}
	return ms[cl.rng.IntN(len(ms))]
}

// pickIn returns a random member of region, nil when it has none.
func (cl *client) pickIn(region string) *member {
	ms := slices.DeleteFunc(cl.c.m.members(), func(n *member) bool { return n.region != region })
	if len(ms) == 0 {
		return nil
	}
	return ms[cl.rng.IntN(len(ms))]
}

// linKey picks a linearizable key and the region it lives in. Keys are
// fresh every linEpoch (lin-<epoch>-<i>), so that each key's history stays
// short enough for porcupine: a quorum write left unknown by a partition
// stays concurrent with everything after it, and the search grows
// exponentially with their number. Key i lives in region r(i%3+1).
func (cl *client) linKey() (key, region string) {
	epoch := int(time.Since(cl.c.start) / linEpoch)
	i := cl.rng.IntN(linKeysPerEpoch)
	return fmt.Sprintf("lin-%d-%d", epoch, i), fmt.Sprintf("r%d", i%3+1)
}

// linEpoch is how long a set of linearizable keys is used.
const linEpoch = 10 * time.Second

// linKeysPerEpoch is how many linearizable keys each epoch uses: two per
// region.
const linKeysPerEpoch = 6

func (cl *client) key(ks []string) string { return ks[cl.rng.IntN(len(ks))] }

func (cl *client) newID() string {
	cl.seq++
	return fmt.Sprintf("s%d-c%d-%d", cl.c.cfg.Seed, cl.id, cl.seq)
}

func (cl *client) do(w Work) {
	switch w {
	case WorkEventual:
		by := int64(cl.rng.IntN(6)) - 2
		if by == 0 {
			by = 1
		}
		id := ""
		if cl.rng.IntN(3) == 0 {
			id = cl.newID()
		}
		cl.write(nsEventual, cl.key(keysEventual), by, id, "local")
	case WorkVotes:
		cl.write(nsVotes, cl.key(keysVotes), 1, cl.newID(), "")
	case WorkLikesIncr:
		cl.write(nsLikes, cl.key(keysLikes), 1, cl.newID(), "")
	case WorkLikesDecr:
		id := ""
		if cl.rng.IntN(2) == 0 {
			id = cl.newID()
		}
		cl.write(nsLikes, cl.key(keysLikes), -1, id, "")
	case WorkLinIncr:
		// Quorum is a majority of one region, so each linearizable key
		// lives in one region: its writes and reads go to that region's
		// nodes only.
		k, region := cl.linKey()
		if n := cl.pickIn(region); n != nil {
			cl.ops = append(cl.ops, cl.writeOnce(n, nsLin, k, 1, "", "quorum"))
		}
	case WorkLinRead:
		cons := "quorum"
		if cl.rng.IntN(2) == 0 {
			cons = "all"
		}
		k, region := cl.linKey()
		if n := cl.pickIn(region); n != nil {
			cl.readOp(n, nsLin, k, cons)
		}
	case WorkLocalRead:
		switch cl.rng.IntN(3) {
		case 0:
			cl.readOp(cl.pick(nil), nsEventual, cl.key(keysEventual), "local")
		case 1:
			cl.readOp(cl.pick(nil), nsLikes, cl.key(keysLikes), "local")
		default:
			cl.readOp(cl.pick(nil), nsSharded, cl.key(keysSharded), "local")
		}
	case WorkWindow:
		cl.write(nsWindow, cl.key(keysWindow), 1, "", "local")
	case WorkSharded:
		by := int64(cl.rng.IntN(6)) - 2
		if by == 0 {
			by = 1
		}
		cl.write(nsSharded, cl.key(keysSharded), by, "", "local")
	case WorkRateLimit:
		cl.rateLimit(cl.pick(nil), cl.key(keysRate))
	}
}

// write is one logical increment (by < 0: a decrement through /decr). With
// an id, an unknown outcome (or a refused connection) is retried on another
// node with the same id, up to 3 attempts, each an Op of its own.
func (cl *client) write(ns, key string, by int64, id, consistency string) {
	var prev *member
	for attempt := 0; attempt < 3; attempt++ {
		n := cl.pick(prev)
		op := cl.writeOnce(n, ns, key, by, id, consistency)
		cl.ops = append(cl.ops, op)
		if id == "" || op.Outcome == chaos.OK || (op.Outcome == chaos.Fail && op.Error != "refused") {
			return
		}
		prev = n
	}
}

func (cl *client) writeOnce(n *member, ns, key string, by int64, id, consistency string) chaos.Op {
	op := chaos.Op{Client: cl.id, Kind: chaos.Incr, Node: n.name, NS: ns, Key: key, By: by, ID: id, Consistency: consistency}
	verb, abs := "incr", by
	if by < 0 {
		verb, abs = "decr", -by
	}
	body := map[string]any{"by": abs}
	if id != "" {
		body["id"] = id
	}
	if consistency != "" {
		body["consistency"] = consistency
	}
	b, _ := json.Marshal(body)
	op.Invoke = time.Now()
	resp, rb, err := cl.c.m.do(context.Background(), n, http.MethodPost, "/v1/counters/"+ns+"/"+url.PathEscape(key)+"/"+verb, b)
	op.Complete = time.Now()
	cl.outcome(&op, true, resp, rb, err)
	if op.Outcome == chaos.OK {
		var v struct {
			Value     int64
			Duplicate bool
		}
		if json.Unmarshal(rb, &v) == nil {
			op.Value, op.Duplicate = v.Value, v.Duplicate
		}
	}
	return op
}

func (cl *client) readOp(n *member, ns, key, consistency string) {
	op := chaos.Op{Client: cl.id, Kind: chaos.Read, Node: n.name, NS: ns, Key: key, Consistency: consistency}
	op.Invoke = time.Now()
	resp, rb, err := cl.c.m.do(context.Background(), n, http.MethodGet, "/v1/counters/"+ns+"/"+url.PathEscape(key)+"?consistency="+consistency, nil)
	op.Complete = time.Now()
	cl.outcome(&op, false, resp, rb, err)
	if op.Outcome == chaos.OK {
		var v struct{ Value int64 }
		if err := json.Unmarshal(rb, &v); err != nil {
			op.Outcome, op.Error = chaos.Fail, "bad answer: "+err.Error()
		}
		op.Value = v.Value
	}
	cl.ops = append(cl.ops, op)
}

func (cl *client) rateLimit(n *member, key string) {
	op := chaos.Op{Client: cl.id, Kind: chaos.RateLimit, Node: n.name, NS: nsRate, Key: key, Limit: rateLimit, Window: rateWindow, Cost: 1}
	b := fmt.Appendf(nil, `{"limit":%d,"window":"%s","cost":1}`, rateLimit, rateWindow)
	op.Invoke = time.Now()
	resp, rb, err := cl.c.m.do(context.Background(), n, http.MethodPost, "/v1/ratelimit/"+nsRate+"/"+url.PathEscape(key), b)
	op.Complete = time.Now()
	cl.outcome(&op, true, resp, rb, err)
	if op.Outcome == chaos.OK {
		var v struct{ Allowed bool }
		json.Unmarshal(rb, &v)
		op.Allowed = v.Allowed
	}
	cl.ops = append(cl.ops, op)
}

// outcome maps an answer to an Outcome: 2xx OK; for a write (or a rate
// limit, which takes units) 5xx, a timeout or a reset is Unknown (503 may
// still land), 4xx and a refused connection Fail; a read that does not
// answer 2xx is Fail (not checked).
func (cl *client) outcome(op *chaos.Op, write bool, resp *http.Response, body []byte, err error) {
	switch {
	case err != nil && errors.Is(err, syscall.ECONNREFUSED):
		op.Outcome, op.Error = chaos.Fail, "refused"
	case err != nil:
		op.Outcome, op.Error = chaos.Unknown, err.Error()
		if resp != nil {
			op.Status = resp.StatusCode
		}
	case resp.StatusCode/100 == 2:
		op.Outcome, op.Status = chaos.OK, resp.StatusCode
	default:
		op.Status = resp.StatusCode
		var e struct{ Error struct{ Code string } }
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			op.Error = e.Error.Code
		} else {
			op.Error = http.StatusText(resp.StatusCode)
		}
		op.Outcome = chaos.Fail
		if write && resp.StatusCode >= 500 {
			op.Outcome = chaos.Unknown
		}
	}
	if !write && op.Outcome == chaos.Unknown {
		op.Outcome = chaos.Fail
	}
}
