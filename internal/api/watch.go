package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
)

// watcher wakes long-polling deployers when a model's production pointer changes. However many watch,
// it asks the catalog once per interval for all watched models, and not at all while nobody watches.
// Polling the catalog (not an in-process event) is what makes it see switches made by any worker.
type watcher struct {
	cat      *catalog.Catalog
	interval time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	subs map[string][]*subscription // by model
	kick chan struct{}
}

type subscription struct {
	baseline catalog.ProductionState
	fired    chan struct{}
}

func newWatcher(cat *catalog.Catalog, interval time.Duration, log *slog.Logger) *watcher {
	return &watcher{cat: cat, interval: interval, log: log, subs: map[string][]*subscription{}, kick: make(chan struct{}, 1)}
}

// run polls until ctx ends.
func (w *watcher) run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-t.C:
		}
		w.poll(ctx)
	}
}

func (w *watcher) poll(ctx context.Context) {
	w.mu.Lock()
	models := make([]string, 0, len(w.subs))
	for m := range w.subs {
		models = append(models, m)
	}
	w.mu.Unlock()
	if len(models) == 0 {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	states, err := w.cat.ProductionStates(qctx, models)
	if err != nil {
		// Watchers keep waiting; their deadline answers them if the catalog stays away.
		w.log.Warn("production watch: catalog poll failed", "error", err.Error())
		return
	}
	now := map[string]catalog.ProductionState{}
	for _, s := range states {
		now[s.Model] = s
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range models {
		cur, exists := now[m]
		kept := w.subs[m][:0]
		for _, s := range w.subs[m] {
			if exists && !sameState(cur, s.baseline) {
				close(s.fired)
				continue
			}
			kept = append(kept, s)
		}
		if len(kept) == 0 {
			delete(w.subs, m)
		} else {
			w.subs[m] = kept
		}
	}
}

func sameState(a, b catalog.ProductionState) bool {
	return a.Seq == b.Seq && a.Stage == b.Stage && (a.Version == nil) == (b.Version == nil) && (a.Version == nil || *a.Version == *b.Version)
}

// wait returns when model's production state differs from baseline or ctx ends; true if it changed.
func (w *watcher) wait(ctx context.Context, model string, baseline catalog.ProductionState) bool {
	s := &subscription{baseline: baseline, fired: make(chan struct{})}
	w.mu.Lock()
	w.subs[model] = append(w.subs[model], s)
	w.mu.Unlock()
	select {
	case <-s.fired:
		return true
	case <-ctx.Done():
		w.remove(model, s)
		// It may have fired while we were leaving.
		select {
		case <-s.fired:
			return true
		default:
			return false
		}
	}
}

func (w *watcher) remove(model string, s *subscription) {
	w.mu.Lock()
	defer w.mu.Unlock()
	subs := w.subs[model]
	for i, x := range subs {
		if x == s {
			w.subs[model] = append(subs[:i], subs[i+1:]...)
			break
		}
	}
	if len(w.subs[model]) == 0 {
		delete(w.subs, model)
	}
}

// watching is how many requests are waiting, for metrics and tests.
func (w *watcher) watching() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.subs {
		n += len(s)
	}
	return n
}
