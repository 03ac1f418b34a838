package node

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/nsconfig"
	"go.uber.org/zap"
)

// Namespace is a namespace as read.
type Namespace struct {
	Name   string
	Config NamespaceConfig
}

// PutNamespace creates ns or updates its config with the fields of patch.
// It refuses a change of type while the namespace holds counters.
func (n *Node) PutNamespace(ctx context.Context, ns string, patch NamespacePatch) (Namespace, error) {
	if err := ValidateNamespace(ns); err != nil {
		return Namespace{}, err
	}
	if err := n.checkWritable(0); err != nil {
		return Namespace{}, err
	}
	// hasCounters reports whether ns holds a live counter.
	hasCounters := func() (bool, error) {
		found := false
		err := n.scanLive(ns, "", "", false, func(_ string, c scanned) bool { // n.ns is held
			found = c.live
			return !found
		})
		if err != nil {
			return false, kinderr.New(ErrUnavailable, err, "scan counters: %v", err)
		}
		return found, nil
	}
	n.ns.Lock()
	defer n.ns.Unlock()
	cur := n.ns.GetLocked(ns)
	base := DefaultNamespaceConfig(n.cfg.DefaultDurability)
	if cur != nil {
		base = cur.Config
	}
	cfg, err := patch.Apply(base).Normalize()
	if err != nil {
		return Namespace{}, err
	}
	if cur != nil && cfg.Replicas != cur.Config.Replicas {
		// A node numbers its changes of a sharded namespace per shard of
		// the replicas count: changing it would strand them.
		return Namespace{}, fmt.Errorf("%w: namespace %q has replicas %d; replicas is fixed when a namespace is created (use a new namespace)", ErrConflict, ns, cur.Config.Replicas)
	}
	if cur != nil && cfg.Type != cur.Config.Type {
		has, err := hasCounters()
		if err != nil {
			return Namespace{}, err
		}
		if has {
			return Namespace{}, fmt.Errorf("%w: namespace %q holds counters of type %s; its type cannot change to %s (use a new namespace)", ErrConflict, ns, cur.Config.Type, cfg.Type)
		}
	}
	if cur != nil && cfg.Type == TypeApproximate && cur.Config.Type == TypeApproximate &&
		(cfg.Epsilon != cur.Config.Epsilon || cfg.Confidence != cur.Config.Confidence) {
		has, err := hasCounters()
		if err != nil {
			return Namespace{}, err
		}
		if has {
			return Namespace{}, fmt.Errorf("%w: approximate namespace %q holds counts; its epsilon and confidence size its sketch and cannot change now (use a new namespace)", ErrConflict, ns)
		}
	}
	if cfg.Type == TypeExact && ((cfg.Min != nil && *cfg.Min > 0) || (cfg.Max != nil && *cfg.Max < 0)) {
		return Namespace{}, fmt.Errorf("%w: the bounds of an exact namespace must include 0, where every counter starts (min <= 0 <= max)", ErrInvalidArgument)
	}
	rec := &namespaceRecord{Config: cfg, HLC: n.clock.Now(), Origin: uint64(n.id), CreatedAt: n.cfg.Now().UnixMilli(), Bank: uint64(n.id)}
	if cur != nil {
		rec.CreatedAt = cur.CreatedAt
		rec.Bank = cur.Bank
		if !sameBound(cur.Config.Min, cfg.Min) || !sameBound(cur.Config.Max, cfg.Max) {
			// The rights of the bounds are spread over the nodes: they can
			// be set only before the namespace holds counters.
			if cfg.Type == TypeExact || cur.Config.Type == TypeExact {
				has, err := hasCounters()
				if err != nil {
					return Namespace{}, err
				}
				if has {
					return Namespace{}, fmt.Errorf("%w: namespace %q holds counters; the bounds of an exact namespace cannot change then (use a new namespace)", ErrConflict, ns)
				}
			}
			rec.Bank = uint64(n.id)
		}
	}
	if err := n.ns.PersistLocked(ns, rec); err != nil {
		return Namespace{}, err
	}
	if cr, err := nsconfig.ConfigRecord(ns, rec); err != nil {
		n.log.Error("cannot encode namespace config", zap.String("ns", ns), zap.Error(err))
	} else {
		n.rep.PublishConfig(cr)
	}
	n.log.Info("namespace config set", zap.String("ns", ns), zap.Any("config", cfg))
	return Namespace{Name: ns, Config: cfg}, nil
}

// GetNamespace returns the config of ns, or ErrNotFound.
func (n *Node) GetNamespace(ns string) (Namespace, error) {
	if err := ValidateNamespace(ns); err != nil {
		return Namespace{}, err
	}
	rec := n.ns.Get(ns)
	if rec == nil {
		return Namespace{}, fmt.Errorf("%w: namespace %q does not exist (a first write or PUT /v1/namespaces/%s creates it)", ErrNotFound, ns, ns)
	}
	return Namespace{Name: ns, Config: rec.Config}, nil
}

// Namespaces lists every namespace, sorted by name.
func (n *Node) Namespaces() []Namespace {
	out := make([]Namespace, 0, n.ns.Len())
	n.ns.Range(func(name string, rec *namespaceRecord) {
		out = append(out, Namespace{Name: name, Config: rec.Config})
	})
	slices.SortFunc(out, func(a, b Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func sameBound(a, b *int64) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}
