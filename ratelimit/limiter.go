package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const numShards = 64

// Limiter makes rate-limit decisions for this node, in agreement with the
// other nodes of the mesh. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	epoch uint64

	shards [numShards]shard
	nkeys  atomic.Int64

	view       atomic.Pointer[view]
	refreshing atomic.Bool

	// down guards the owners whose last lease call failed, until when they
	// are not asked again.
	down struct {
		sync.Mutex
		until map[string]time.Time
	}

	stats struct {
		owner, lease, fallback, leaseCalls, leaseErrors, returns atomic.Int64
	}

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool
}

type limKey struct {
	ns, key string
	window  time.Duration
}

type shard struct {
	mu sync.RWMutex // guards m
	m  map[limKey]*entry
}

// entry is one limit (ns, key, window) on this node.
type entry struct {
	k  limKey
	kh uint64

	mu sync.Mutex // guards the fields below
	// dead: dropped by the sweeper; look the limit up again.
	dead     bool
	lastUsed time.Time
	limit    int64 // of the last request
	// adm counts the units this node admitted, whatever the source.
	adm counts
	// lease is the budget the owner handed this node.
	lease lease
	// ownerRemaining is the owner's Remaining at the last lease call.
	ownerRemaining int64
	// syncedWith (and syncedEpoch) is the owner that knows adm; another
	// owner gets adm in the next lease request.
	syncedWith  string
	syncedEpoch uint64
	denied      denial
	// fetching is non-nil while a lease call is in flight; it is closed
	// when the call returns.
	fetching chan struct{}
	// own holds the authoritative counts while this node owns the limit.
	own *ownerState
}

type lease struct {
	owner   string
	id      uint64
	left    int64
	expires time.Time
	lastUse time.Time
}

type denial struct {
	until   time.Time // refuse locally until then
	retryAt time.Time // when the owner expects the cost to fit
	cost    int64     // for this cost or more
}

type ownerState struct {
	c      counts
	leases map[string]leaseRec // holder -> its last lease
	nextID uint64
}

type leaseRec struct {
	id    uint64
	win   int64
	units int64
}

// New returns a Limiter and starts its sweeper; Close stops it.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, epoch: rand.Uint64() | 1, done: make(chan struct{})}
	for i := range l.shards {
		l.shards[i].m = make(map[limKey]*entry)
	}
	l.down.until = make(map[string]time.Time)
	l.wg.Add(1)
	go l.sweepLoop()
	return l, nil
}

// Close stops the sweeper. Decisions after Close fail with ErrClosed. It is
// idempotent.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.done)
		l.wg.Wait()
	})
	return nil
}

// Stats are cumulative counts of decisions by source and of lease calls.
type Stats struct {
	Owner, Lease, Fallback           int64
	LeaseCalls, LeaseErrors, Returns int64
	Keys                             int64
}

// Stats returns the counts so far.
func (l *Limiter) Stats() Stats {
	return Stats{
		Owner: l.stats.owner.Load(), Lease: l.stats.lease.Load(), Fallback: l.stats.fallback.Load(),
		LeaseCalls: l.stats.leaseCalls.Load(), LeaseErrors: l.stats.leaseErrors.Load(),
		Returns: l.stats.returns.Load(), Keys: l.nkeys.Load(),
	}
}

func (l *Limiter) now() time.Time { return l.cfg.Now() }

// currentView returns the membership snapshot, refreshing it when it is
// older than MembersTTL (one caller refreshes; the others use the old one).
func (l *Limiter) currentView() *view {
	now := time.Now()
	v := l.view.Load()
	if v != nil && now.Before(v.expires) {
		return v
	}
	if v != nil && !l.refreshing.CompareAndSwap(false, true) {
		return v
	}
	nv := newView(l.cfg.Membership, now, l.cfg.MembersTTL)
	l.view.Store(nv)
	if v != nil {
		l.refreshing.Store(false)
	}
	return nv
}

// entry returns the limit k, creating it.
func (l *Limiter) entry(k limKey, kh uint64) (*entry, error) {
	sh := &l.shards[kh%numShards]
	sh.mu.RLock()
	e := sh.m[k]
	sh.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e = sh.m[k]; e != nil {
		return e, nil
	}
	if l.nkeys.Load() >= int64(l.cfg.MaxKeys) {
		return nil, fmt.Errorf("%w: %d rate limits are active on this node (each is dropped two windows after its last use); retry later", ErrOverloaded, l.cfg.MaxKeys)
	}
	e = &entry{k: k, kh: kh}
	sh.m[k] = e
	l.nkeys.Add(1)
	return e, nil
}

// Decide takes r.Cost units from the limit r.NS/r.Key (r.Limit per
// r.Window) if they fit, and says so. A refused request takes nothing.
func (l *Limiter) Decide(ctx context.Context, r Request) (Decision, error) {
	if err := r.validate(); err != nil {
		return Decision{}, err
	}
	if l.closed.Load() {
		return Decision{}, ErrClosed
	}
	k := limKey{r.NS, r.Key, r.Window}
	kh := keyHash(r.NS, r.Key, r.Window)
	for {
		e, err := l.entry(k, kh)
		if err != nil {
			return Decision{}, err
		}
		v := l.currentView()
		owner := v.owner(kh)
		e.mu.Lock()
		if e.dead {
			e.mu.Unlock()
			continue
		}
		e.limit = r.Limit
		var d Decision
		var retry bool
		if owner.Name == v.self {
			d = l.decideOwnerLocked(e, v, r)
			e.mu.Unlock()
		} else {
			d, retry, err = l.decideHolder(ctx, e, v, owner, r) // unlocks
		}
		if retry {
			continue
		}
		if err != nil {
			return Decision{}, err
		}
		switch d.Source {
		case SourceOwner:
			l.stats.owner.Add(1)
		case SourceLease:
			l.stats.lease.Add(1)
		case SourceFallback:
			l.stats.fallback.Add(1)
		}
		return d, nil
	}
}

// ownLocked returns the owner state, creating it from what this node
// admitted itself (the units it took under an earlier owner count here).
func (l *Limiter) ownLocked(e *entry, v *view, id int64) *ownerState {
	if e.own == nil {
		e.own = &ownerState{c: e.adm} // leases made on the first grant
		e.syncedWith, e.syncedEpoch = v.self, l.epoch
	}
	e.own.c.roll(id)
	return e.own
}

func (l *Limiter) decideOwnerLocked(e *entry, v *view, r Request) Decision {
	now := l.now()
	id, elapsed := windowAt(now, r.Window)
	e.lastUsed = now
	e.adm.roll(id)
	e.lease = lease{}
	o := l.ownLocked(e, v, id)
	est := estimate(o.c.prev, o.c.curr, elapsed, r.Window)
	d := Decision{Limit: r.Limit, Reset: r.Window - elapsed, Source: SourceOwner}
	if fits(est, r.Cost, r.Limit) {
		o.c.curr += r.Cost
		e.adm.curr += r.Cost
		d.Allowed = true
		d.Remaining = room(est+float64(r.Cost), r.Limit)
		return d
	}
	d.Remaining = room(est, r.Limit)
	d.RetryAfter = retryAfter(o.c.prev, o.c.curr, elapsed, r.Window, r.Cost, r.Limit)
	return d
}

// decideHolder decides on a limit owned by another node: from the lease,
// else by asking the owner, else on this node's share. It is called with
// e.mu held and returns with it released; retry means look e up again.
func (l *Limiter) decideHolder(ctx context.Context, e *entry, v *view, owner *viewMember, r Request) (d Decision, retry bool, err error) {
	e.own = nil // owned elsewhere now: leases this node granted are void
	for {
		now := l.now()
		id, elapsed := windowAt(now, r.Window)
		e.lastUsed = now
		e.adm.roll(id)
		if e.lease.owner != owner.Name {
			e.lease = lease{} // from another owner: void
		}
		d = Decision{Limit: r.Limit, Reset: r.Window - elapsed, Source: SourceLease}
		if e.lease.left >= r.Cost && now.Before(e.lease.expires) {
			e.lease.left -= r.Cost
			e.lease.lastUse = now
			e.adm.curr += r.Cost
			d.Allowed = true
			d.Remaining = min(e.lease.left+e.ownerRemaining, r.Limit)
			e.mu.Unlock()
			return d, false, nil
		}
		if now.Before(e.denied.until) && r.Cost >= e.denied.cost {
			d.RetryAfter = max(e.denied.retryAt.Sub(now), 0)
			d.Remaining = min(max(e.lease.left, 0)+e.ownerRemaining, r.Limit)
			e.mu.Unlock()
			return d, false, nil
		}
		if l.isDown(owner.Name, now) || l.cfg.Transport == nil {
			return l.fallbackLocked(e, v, r, now)
		}
		if ch := e.fetching; ch != nil {
			e.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return d, false, fmt.Errorf("%w: gave up waiting for the owner: %w", ErrUnavailable, ctx.Err())
			}
			e.mu.Lock()
			if e.dead {
				e.mu.Unlock()
				return d, true, nil
			}
			continue
		}

		// Ask the owner for a lease, giving back what is left of the last
		// one (too little for this cost, or expired).
		req := LeaseRequest{From: v.self, NS: r.NS, Key: r.Key, Window: r.Window, Limit: r.Limit, Want: r.Cost}
		if e.lease.left > 0 {
			req.Return = &LeaseReturn{ID: e.lease.id, Units: e.lease.left}
		}
		e.lease = lease{}
		if e.syncedWith != owner.Name {
			req.Sync = e.adm.report()
		}
		ch := make(chan struct{})
		e.fetching = ch
		e.mu.Unlock()

		sent := l.now()
		resp, err := l.call(ctx, owner, req)

		e.mu.Lock()
		e.fetching = nil
		close(ch)
		now = l.now()
		if err != nil {
			if ctx.Err() != nil {
				e.mu.Unlock()
				return d, false, fmt.Errorf("%w: gave up waiting for the owner: %w", ErrUnavailable, ctx.Err())
			}
			l.markDown(owner.Name, now)
			l.cfg.Logger.Debug("rate limit owner unreachable; deciding on the local share",
				zap.String("owner", owner.Name), zap.String("ns", r.NS), zap.Error(err))
			return l.fallbackLocked(e, v, r, now)
		}
		if req.Sync != nil || e.syncedWith != owner.Name {
			e.syncedWith, e.syncedEpoch = owner.Name, resp.Epoch
		} else if e.syncedEpoch != resp.Epoch {
			// The owner restarted and lost its counts: tell it ours next
			// time.
			e.syncedWith = ""
		}
		e.ownerRemaining = resp.Remaining
		id, elapsed = windowAt(now, r.Window)
		e.adm.roll(id)
		d = Decision{Limit: r.Limit, Reset: r.Window - elapsed, Source: SourceLease}
		if resp.Granted >= r.Cost {
			// The grant was made for this request: take it now, keep the
			// rest.
			e.denied = denial{}
			e.lease = lease{owner: owner.Name, id: resp.ID, left: resp.Granted - r.Cost,
				expires: sent.Add(resp.ValidFor), lastUse: now}
			e.adm.curr += r.Cost
			d.Allowed = true
			d.Remaining = min(e.lease.left+e.ownerRemaining, r.Limit)
			e.mu.Unlock()
			return d, false, nil
		}
		e.denied = denial{until: now.Add(min(resp.RetryAfter, l.cfg.DenyHold)), retryAt: now.Add(resp.RetryAfter), cost: r.Cost}
		d.RetryAfter = resp.RetryAfter
		d.Remaining = min(resp.Remaining, r.Limit)
		e.mu.Unlock()
		return d, false, nil
	}
}

// call makes one lease call; a NotOwner answer is an error (views of the
// membership differ for now).
func (l *Limiter) call(ctx context.Context, owner *viewMember, req LeaseRequest) (LeaseResponse, error) {
	l.stats.leaseCalls.Add(1)
	cctx, cancel := context.WithTimeout(ctx, l.cfg.LeaseTimeout)
	defer cancel()
	resp, err := l.cfg.Transport.Lease(cctx, owner.Addr, req)
	if err == nil && resp.NotOwner {
		err = fmt.Errorf("ratelimit: %s does not own the limit (it says %s does)", owner.Name, resp.Owner)
	}
	if err != nil {
		l.stats.leaseErrors.Add(1)
	}
	return resp, err
}

// fallbackLocked decides on this node's share of the limit (limit /
// members) against everything this node admitted in the window. It is
// called with e.mu held and releases it.
func (l *Limiter) fallbackLocked(e *entry, v *view, r Request, now time.Time) (Decision, bool, error) {
	defer e.mu.Unlock()
	share := r.Limit / int64(len(v.members))
	if share < r.Cost {
		return Decision{}, false, fmt.Errorf("%w: the node that owns this rate limit cannot be reached and this node's share of the limit (%d of %d, shared by %d nodes) is below the cost %d; retry later",
			ErrUnavailable, share, r.Limit, len(v.members), r.Cost)
	}
	id, elapsed := windowAt(now, r.Window)
	e.adm.roll(id)
	est := estimate(e.adm.prev, e.adm.curr, elapsed, r.Window)
	d := Decision{Limit: r.Limit, Reset: r.Window - elapsed, Source: SourceFallback}
	if fits(est, r.Cost, share) {
		e.adm.curr += r.Cost
		d.Allowed = true
		d.Remaining = room(est+float64(r.Cost), share)
		return d, false, nil
	}
	d.Remaining = room(est, share)
	d.RetryAfter = retryAfter(e.adm.prev, e.adm.curr, elapsed, r.Window, r.Cost, share)
	return d, false, nil
}

func (l *Limiter) isDown(name string, now time.Time) bool {
	l.down.Lock()
	defer l.down.Unlock()
	until, ok := l.down.until[name]
	return ok && now.Before(until)
}

func (l *Limiter) markDown(name string, now time.Time) {
	if l.cfg.OwnerDownHold == 0 {
		return
	}
	l.down.Lock()
	l.down.until[name] = now.Add(l.cfg.OwnerDownHold)
	l.down.Unlock()
}

// HandleLease answers a lease request from another node (the internal
// route). Only the owner of the limit in this node's view grants.
func (l *Limiter) HandleLease(ctx context.Context, req LeaseRequest) (LeaseResponse, error) {
	if l.closed.Load() {
		return LeaseResponse{}, ErrClosed
	}
	r := Request{NS: req.NS, Key: req.Key, Limit: req.Limit, Window: req.Window, Cost: max(req.Want, 1)}
	if err := r.validate(); err != nil {
		return LeaseResponse{}, err
	}
	if err := req.validate(l.now()); err != nil {
		return LeaseResponse{}, err
	}
	k := limKey{r.NS, r.Key, r.Window}
	kh := keyHash(r.NS, r.Key, r.Window)
	for {
		e, err := l.entry(k, kh)
		if err != nil {
			return LeaseResponse{}, err
		}
		v := l.currentView()
		if owner := v.owner(e.kh); owner.Name != v.self {
			return LeaseResponse{NotOwner: true, Owner: owner.Name, Epoch: l.epoch}, nil
		}
		e.mu.Lock()
		if e.dead {
			e.mu.Unlock()
			continue
		}
		resp := l.grantLocked(e, v, req)
		e.mu.Unlock()
		return resp, nil
	}
}

// maxSyncWindows bounds the window counts one lease request may report
// (a holder reports its current and previous windows).
const maxSyncWindows = 4

// validate checks a lease request against what its sender could have
// admitted: a want within the limit, a return that gives units back (never
// takes more), and reported counts of recent windows within the limit. A
// count outside these could let a refused key admit again (a negative
// count) or lock another key out (a huge one).
func (req *LeaseRequest) validate(now time.Time) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: lease request: "+format, append([]any{ErrInvalidArgument}, args...)...)
	}
	if req.From == "" {
		return bad("from must name the sender")
	}
	if req.Want < 0 || req.Want > req.Limit {
		return bad("want %d is outside [0, limit %d]", req.Want, req.Limit)
	}
	if r := req.Return; r != nil && (r.Units < 0 || r.Units > req.Limit) {
		return bad("a return of %d units is outside [0, limit %d]", r.Units, req.Limit)
	}
	if len(req.Sync) > maxSyncWindows {
		return bad("%d window counts (at most %d)", len(req.Sync), maxSyncWindows)
	}
	id, _ := windowAt(now, req.Window)
	for _, wc := range req.Sync {
		// The current and previous windows, with one window of clock
		// difference either way.
		if wc.Window < id-2 || wc.Window > id+1 {
			return bad("a count for window %d, which is not a recent window (now %d)", wc.Window, id)
		}
		if wc.Count < 0 || wc.Count > req.Limit {
			return bad("a count of %d is outside [0, limit %d]", wc.Count, req.Limit)
		}
	}
	return nil
}

func (l *Limiter) grantLocked(e *entry, v *view, req LeaseRequest) LeaseResponse {
	now := l.now()
	id, elapsed := windowAt(now, req.Window)
	e.lastUsed = now
	e.adm.roll(id)
	o := l.ownLocked(e, v, id)
	for _, s := range req.Sync {
		o.c.add(s.Window, s.Count)
	}
	if ret := req.Return; ret != nil {
		if lr, ok := o.leases[req.From]; ok && lr.id == ret.ID {
			o.c.add(lr.win, -min(ret.Units, lr.units))
			delete(o.leases, req.From)
			l.stats.returns.Add(1)
		}
	}
	resp := LeaseResponse{Epoch: l.epoch}
	est := estimate(o.c.prev, o.c.curr, elapsed, req.Window)
	if req.Want > 0 {
		avail := room(est, req.Limit)
		if avail >= req.Want {
			// A chunk of what is left, smaller as the budget runs low, so
			// that the last units go where the requests are.
			grant := min(max(req.Want, avail/int64(2*len(v.members))), avail)
			o.c.curr += grant
			if o.leases == nil {
				o.leases = make(map[string]leaseRec)
			}
			o.nextID++
			o.leases[req.From] = leaseRec{id: o.nextID, win: id, units: grant}
			resp.Granted, resp.ID, resp.ValidFor = grant, o.nextID, req.Window-elapsed
			est += float64(grant)
		} else {
			resp.RetryAfter = retryAfter(o.c.prev, o.c.curr, elapsed, req.Window, req.Want, req.Limit)
		}
	}
	resp.Remaining = room(est, req.Limit)
	return resp
}

func (l *Limiter) sweepLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			l.sweep(l.now())
		}
	}
}

// sweep drops the limits unused for two windows (their counts no longer
// weigh on any estimate) and gives back leases unused for ReturnIdle.
func (l *Limiter) sweep(now time.Time) {
	type ret struct {
		e     *entry
		owner *viewMember
		req   LeaseRequest
		ch    chan struct{}
	}
	var rets []ret
	v := l.currentView()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			e.mu.Lock()
			if e.fetching == nil && now.Sub(e.lastUsed) >= 2*k.window {
				e.dead = true
				delete(sh.m, k)
				l.nkeys.Add(-1)
				e.mu.Unlock()
				continue
			}
			if e.fetching == nil && e.lease.left > 0 && now.Sub(e.lease.lastUse) >= l.cfg.ReturnIdle &&
				now.Before(e.lease.expires) && l.cfg.Transport != nil {
				if owner := v.owner(e.kh); owner.Name == e.lease.owner && e.syncedWith == owner.Name {
					r := ret{e: e, owner: owner, ch: make(chan struct{}), req: LeaseRequest{
						From: v.self, NS: k.ns, Key: k.key, Window: k.window, Limit: max(e.limit, 1),
						Return: &LeaseReturn{ID: e.lease.id, Units: e.lease.left}}}
					e.lease.left = 0
					e.fetching = r.ch
					rets = append(rets, r)
				}
			}
			e.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	for _, r := range rets {
		if !l.isDown(r.owner.Name, now) {
			if _, err := l.call(context.Background(), r.owner, r.req); err != nil {
				l.markDown(r.owner.Name, now)
			}
		}
		r.e.mu.Lock()
		r.e.fetching = nil
		close(r.ch)
		r.e.mu.Unlock()
	}
	l.down.Lock()
	for name, until := range l.down.until {
		if !now.Before(until) {
			delete(l.down.until, name)
		}
	}
	l.down.Unlock()
}
