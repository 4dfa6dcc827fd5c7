package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
)

// watcher keeps every model's production view in memory and wakes long-polling deployers when one
// changes. It reads the catalog (not an in-process event), so it sees switches made by any worker, in
// one small query per interval whatever the number of readers and watchers: GET …/production answers
// from memory, at most one interval behind the catalog, because a PostgreSQL round trip per request
// cannot meet the API's latency target under load (docs/architecture.md, "HTTP API").
type watcher struct {
	cat      *catalog.Catalog
	interval time.Duration
	log      *slog.Logger
	// load reads a model's production answer and the state it describes (a Body-less answer: nothing
	// in production).
	load func(ctx context.Context, model string) (*getProductionOutput, catalog.ProductionState, error)

	mu     sync.Mutex
	loaded bool // a scan has completed
	scans  int  // scans completed, for tests
	views  map[string]*view
	subs   map[string][]*subscription // by model
}

// view is a model's production state and the answer built for it (nil while it could not be built:
// the pointed version not in Production yet, the manifest unreadable).
type view struct {
	st  catalog.ProductionState
	out *getProductionOutput
}

type subscription struct {
	baseline catalog.ProductionState
	fired    chan struct{}
}

func newWatcher(cat *catalog.Catalog, interval time.Duration, log *slog.Logger,
	load func(ctx context.Context, model string) (*getProductionOutput, catalog.ProductionState, error)) *watcher {
	return &watcher{cat: cat, interval: interval, log: log, load: load, views: map[string]*view{}, subs: map[string][]*subscription{}}
}

// run scans until ctx ends. A catalog query that takes long stretches the interval, so that a catalog
// of very many models is never scanned back to back. Only the query counts: building the views of the
// models that changed is a one-off (a cold start reads every model's manifest, seconds for a thousand
// models), and counting it delayed the next scan, and every GET's freshness, by ten times that.
func (w *watcher) run(ctx context.Context) {
	for {
		query := w.scan(ctx)
		wait := max(w.interval, 10*query)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// scan reads every model's production state and rebuilds the views that changed; it returns how long
// the catalog query took.
func (w *watcher) scan(ctx context.Context) time.Duration {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	states, err := w.cat.AllProductionStates(qctx)
	query := time.Since(start)
	if err != nil {
		// Readers fall back to the catalog, watchers keep waiting; their deadline answers them.
		w.log.Warn("production watch: catalog scan failed", "error", err.Error())
		w.mu.Lock()
		w.loaded = false
		w.mu.Unlock()
		return query
	}
	w.mu.Lock()
	var changed []catalog.ProductionState
	for _, st := range states {
		if v, ok := w.views[st.Model]; !ok || !sameState(v.st, st) || v.out == nil {
			changed = append(changed, st)
		}
	}
	w.mu.Unlock()
	for _, st := range changed {
		out, fresh, err := w.load(qctx, st.Model)
		if err != nil {
			out, fresh = nil, st // built again on the next scan
		}
		w.mu.Lock()
		w.views[st.Model] = &view{st: fresh, out: out}
		w.mu.Unlock()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.loaded = true
	w.scans++
	for m := range w.subs {
		w.fireLocked(m)
	}
	return query
}

// fireLocked wakes the watchers of model whose baseline its view no longer matches; w.mu is held.
func (w *watcher) fireLocked(model string) {
	v, ok := w.views[model]
	subs := w.subs[model]
	kept := subs[:0]
	for _, s := range subs {
		if ok && !sameState(v.st, s.baseline) {
			close(s.fired)
			continue
		}
		kept = append(kept, s)
	}
	if len(kept) == 0 {
		delete(w.subs, model)
	} else {
		w.subs[model] = kept
	}
}

// refresh rebuilds one model's view now, after a switch made through this API (a rollback): its caller
// reads production back at once and must find what it just did, not the view of up to an interval ago.
// A view already newer (a scan that ran meanwhile) is kept.
func (w *watcher) refresh(ctx context.Context, model string) {
	out, st, err := w.load(ctx, model)
	if err != nil {
		return // the next scan builds it
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.views[model]; ok && v.st.Seq > st.Seq {
		return
	}
	w.views[model] = &view{st: st, out: out}
	w.fireLocked(model)
}

// cached is the model's production answer from the last scan, if it has one.
func (w *watcher) cached(model string) (*getProductionOutput, catalog.ProductionState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.views[model]
	if !w.loaded || !ok || v.out == nil {
		return nil, catalog.ProductionState{}, false
	}
	return v.out, v.st, true
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

// scanned is how many scans completed.
func (w *watcher) scanned() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.scans
}

// warm reports how many models have a production answer in memory, and whether a scan completed.
func (w *watcher) warm() (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, v := range w.views {
		if v.out != nil {
			n++
		}
	}
	return n, w.loaded
}
