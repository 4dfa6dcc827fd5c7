package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/modelreg/modelreg/workflows"
)

func init() { suites["pending"] = pending }

// pendingPerModel is how many parked lifecycles share a model. One model's registrations, and later its
// promotions, are serialized by the model's workflow (one mint at a time, one switch at a time under its
// lock), so on a single model the suite would time that queue rather than a worker holding many waiting
// workflows.
const pendingPerModel = 50

// sdkStickyCacheSize is the Temporal SDK's sticky cache size when nothing sets it (its
// defaultStickyCacheSize, which it offers no way to read): the baseline's worker runs with it, and the
// registry's does unless MODELREG_WORKER_STICKY_CACHE_SIZE says otherwise.
const sdkStickyCacheSize = 10_000

// pending parks Opts.Pending lifecycles in PendingApproval on one worker, reads the worker's resident
// memory while they wait, then approves them all and times that: through the registry's worker, and
// through the no-op baseline (package noop) on its own worker process, as the orchestration suite runs
// them. It runs Opts.PendingRounds rounds, not Opts.Rounds: one round of 5,000 takes tens of minutes a
// side.
//
// The worker's memory is reported as notes on the approve figure rather than as a figure of its own: a
// figure is a rate whose ratio is higher-is-better, and "lifecycles per MiB" would hide what an operator
// sizes a worker by, the MiB it holds idle and the KiB each waiting lifecycle adds.
func pending(e *Env, r *Report) {
	ctx := context.Background()
	c, reg, base, stop := e.sides()
	defer stop()

	n := e.Opts.Pending
	// At least a model per client, too: with fewer, clients would wait behind one another's promotions
	// on the same model (-short's 24 lifecycles would be one model).
	nModels := max(n/pendingPerModel, min(n, e.Opts.Clients))
	sticky := stickyCacheSize(e.BaseEnv)
	if n+nModels > sticky {
		e.logf("pending: %d parked lifecycles and %d models do not fit the registry worker's sticky cache of %d: the rest are evicted and replayed when approved", n, nModels, sticky)
	}
	fig := &Figure{Suite: "pending", Name: fmt.Sprintf("approve all %s parked lifecycles, %d models", thousands(n), nModels), Unit: "lifecycles/s",
		Baseline: "the no-op mirror's (tests/bench/noop) as many, parked on its own worker process"}
	for round := 1; round <= e.Opts.PendingRounds; round++ {
		order := []*driver{base, reg}
		if round%2 == 0 {
			order = []*driver{reg, base}
		}
		for _, d := range order {
			prefix, side := "", "pend"
			if d == base {
				prefix, side = "base_", "pend-base"
			}
			// Fresh models per side and round, so that neither side's workflows or catalog rows are in
			// the other's way.
			models := make([]string, nModels)
			for i := range models {
				models[i] = fmt.Sprintf("%s-r%d-%d", side, round, i)
			}
			res := e.parkAndApprove(ctx, c, d, models, n)
			e.logf("pending %s: %d parked in %s; worker RSS %.1f MiB idle, %.1f MiB parked (%.1f KiB each), peak %.1f MiB; approved in %s (%.2f/s), p50 %.2f s, p99 %.2f s, %d refused (%d attempts), worker %.1f ms CPU per approval",
				d.name, n, res.park.Round(time.Millisecond), res.idleMiB, res.parkedMiB, res.kibPerParked(n), res.peakMiB,
				res.approve.Round(time.Millisecond), res.rate, res.p(0.5), res.p(0.99), res.refused, res.refusedAttempts, res.cpuMs)
			if d == base {
				fig.Base = append(fig.Base, res.rate)
			} else {
				fig.Registry = append(fig.Registry, res.rate)
				fig.Note("p50_s", res.p(0.5))
			}
			fig.Note(prefix+"worker_rss_mib", res.parkedMiB)
			fig.Note(prefix+"worker_idle_rss_mib", res.idleMiB)
			fig.Note(prefix+"kib_per_parked", res.kibPerParked(n))
			fig.Note(prefix+"worker_peak_rss_mib", res.peakMiB)
			fig.Note(prefix+"p99_s", res.p(0.99))
			fig.Note(prefix+"park_s", res.park.Seconds())
			fig.Note(prefix+"refused", float64(res.refused))
			fig.Note(prefix+"worker_cpu_ms", res.cpuMs)
		}
	}
	// RSS depends on how many of the parked workflows the worker keeps in memory.
	fig.Note("sticky_cache_size", float64(sticky))
	fig.Note("base_sticky_cache_size", sdkStickyCacheSize)
	r.Add(fig)
}

// stickyCacheSize is the registry worker's sticky cache size: MODELREG_WORKER_STICKY_CACHE_SIZE in its
// environment (the last one, as exec passes it), else the SDK's default.
func stickyCacheSize(env []string) int {
	n := sdkStickyCacheSize
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "MODELREG_WORKER_STICKY_CACHE_SIZE="); ok {
			n = sdkStickyCacheSize
			if x, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				n = x
			}
		}
	}
	return n
}

type pendingResult struct {
	// park is the wall time from the first registration to the last client seeing PendingApproval,
	// approve from the first approval to the last client seeing Production; rate is lifecycles over
	// approve.
	park, approve time.Duration
	rate          float64
	// latencies are each lifecycle's, from its approval to the client seeing Production.
	latencies []time.Duration
	// The worker's RSS before the side registered, once all were parked, and its peak from the first
	// registration to the last approval.
	idleMiB, parkedMiB, peakMiB float64
	// refused counts the lifecycles that had an update refused for lack of slots at least once, in
	// either phase; refusedAttempts every such refusal.
	refused         int
	refusedAttempts int64
	// cpuMs is the side's worker process's CPU time per approval.
	cpuMs float64
}

func (p pendingResult) p(q float64) float64 { return batchResult{latencies: p.latencies}.p(q) }

func (p pendingResult) kibPerParked(n int) float64 {
	return (p.parkedMiB - p.idleMiB) * 1024 / float64(n)
}

// parkAndApprove registers n versions on models (the i-th on models[i % len(models)]) from Opts.Clients
// clients, each taking the next once its last reached PendingApproval; reads the worker's RSS once all
// wait; then approves them all from as many clients, each taking the next once its last reached
// Production.
func (e *Env) parkAndApprove(ctx context.Context, c client.Client, d *driver, models []string, n int) pendingResult {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute+time.Duration(n)*2*time.Second)
	defer cancel()
	prepared := e.prepareAll(ctx, "pending", d, models, n)
	// A worker's memory takes a few seconds to come down after work (the other side's run, the start);
	// at -short sizes there is less to settle.
	settle := 5 * time.Second
	if e.Opts.Short {
		settle = 500 * time.Millisecond
	}
	var res pendingResult
	time.Sleep(settle)
	res.idleMiB = d.worker.RSSMiB()
	d.worker.ResetPeak()

	versions := make([]int, n)
	refused := make([]int64, n)
	var refusedSoFar atomic.Int64
	start := time.Now()
	err := e.eachByClients(ctx, "pending park "+d.name, n, refused, &refusedSoFar, func(ctx context.Context, i int) error {
		m := models[i%len(models)]
		var v int
		if err := retryRefused(ctx, func() (err error) {
			v, err = d.register(ctx, m, prepared[i])
			return err
		}); err != nil {
			return fmt.Errorf("register %d on %s: %w", i, m, err)
		}
		versions[i] = v
		return watchStage(ctx, c, d.versionID(m, v)).until(workflows.StagePendingApproval)
	})
	if err != nil {
		e.T.Fatalf("pending %s: %v", d.name, err)
	}
	res.park = time.Since(start)
	time.Sleep(settle)
	res.parkedMiB = d.worker.RSSMiB()
	if !(res.idleMiB > 0 && res.parkedMiB > 0) {
		e.T.Fatalf("pending %s: the worker's RSS does not read (idle %.1f MiB, parked %.1f MiB): has it exited? (log %s)", d.name, res.idleMiB, res.parkedMiB, d.worker.Log)
	}
	e.logf("pending %s: %d parked in %s, worker RSS %.1f MiB (%.1f MiB idle), peak so far %.1f MiB",
		d.name, n, res.park.Round(time.Millisecond), res.parkedMiB, res.idleMiB, d.worker.PeakRSSMiB())

	res.latencies = make([]time.Duration, n)
	cpu0 := d.worker.CPUSeconds()
	start = time.Now()
	err = e.eachByClients(ctx, "pending approve "+d.name, n, refused, &refusedSoFar, func(ctx context.Context, i int) error {
		m, v := models[i%len(models)], versions[i]
		t0 := time.Now()
		// Followed from the start of its history, as an approver who comes back to a version parked
		// long ago would, rather than on a stream kept open since it was registered.
		w := watchStage(ctx, c, d.versionID(m, v))
		if err := retryRefused(ctx, func() error { return d.approve(ctx, m, v) }); err != nil {
			return fmt.Errorf("approve %s v%d: %w", m, v, err)
		}
		if err := w.until(workflows.StageProduction); err != nil {
			return err
		}
		res.latencies[i] = time.Since(t0)
		return nil
	})
	if err != nil {
		e.T.Fatalf("pending %s: %v", d.name, err)
	}
	res.approve = time.Since(start)
	res.rate = float64(n) / res.approve.Seconds()
	res.cpuMs = (d.worker.CPUSeconds() - cpu0) * 1000 / float64(n)
	res.peakMiB = d.worker.PeakRSSMiB()
	for _, r := range refused {
		if r > 0 {
			res.refused++
		}
		res.refusedAttempts += r
	}
	return res
}

// eachByClients runs step(i) for every i below n from Opts.Clients clients, each taking the next i once
// its last is done, and adds the refusals each i's updates met to refused[i] (and to batch, which the
// progress log shows).
func (e *Env) eachByClients(ctx context.Context, what string, n int, refused []int64, batch *atomic.Int64, step func(ctx context.Context, i int) error) error {
	var next, done atomic.Int64
	start := time.Now()
	stopProgress := make(chan struct{})
	defer close(stopProgress)
	go func() {
		// Thousands of lifecycles, or a hot model, take minutes; the log says how far the phase is.
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				e.logf("%s: %d of %d done after %s, %d update refusals so far", what, done.Load(), n, time.Since(start).Round(time.Second), batch.Load())
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	for range e.Opts.Clients {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return nil
				}
				var count atomic.Int64
				err := step(context.WithValue(gctx, refusalsKey{}, &counter{&count, batch}), i)
				refused[i] += count.Load()
				if err != nil {
					return err
				}
				done.Add(1)
			}
		})
	}
	return g.Wait()
}
