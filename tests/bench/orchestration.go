package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/config"
	"github.com/modelreg/modelreg/internal/control"
	"github.com/modelreg/modelreg/tests/bench/noop"
	"github.com/modelreg/modelreg/workflows"
)

func init() { suites["orchestration"] = orchestration }

const noopTaskQueue = "bench-noop"

// manyModels is the number of models of the figure where promotions of different models run in parallel.
const manyModels = 20

// orchestration takes Opts.Lifecycles registrations from Opts.Clients concurrent clients to Production,
// each approved as soon as it waits, on one model and round-robin on manyModels models, through the
// registry's worker and through the no-op baseline with the same shape (package noop) on its own
// worker process, alternating which goes first from round to round.
func orchestration(e *Env, r *Report) {
	ctx := context.Background()
	c, reg, base, stop := e.sides()
	defer stop()

	const baseline = "no-op entity and lifecycle workflows of the registry's shape (tests/bench/noop: per lifecycle 7 activities, 12 local activities, 3 updates, a register signal and query, a child), on their own task queue and worker process, worker.Options{} as the registry's"
	one := &Figure{Suite: "orchestration", Name: "lifecycles to Production, one model", Unit: "lifecycles/s",
		Baseline: baseline, Target: 0.8, Limits: map[string]float64{"refused": 0}}
	many := &Figure{Suite: "orchestration", Name: fmt.Sprintf("lifecycles to Production, %d models", manyModels), Unit: "lifecycles/s",
		Baseline: baseline, Target: 0.9, Limits: map[string]float64{"refused": 0}}
	for round := 1; round <= e.Opts.Rounds; round++ {
		for _, f := range []*Figure{one, many} {
			models := []string{fmt.Sprintf("orch-one-r%d", round)}
			if f == many {
				models = nil
				for i := 0; i < manyModels; i++ {
					models = append(models, fmt.Sprintf("orch-many-r%d-%d", round, i))
				}
			}
			// Alternated, so that whatever drifts over a run (caches, the dev server's database, the
			// machine's clock speed) does not always favour the same side.
			order := []*driver{base, reg}
			if round%2 == 0 {
				order = []*driver{reg, base}
			}
			n := e.Opts.Lifecycles
			if e.Opts.Short && f == one {
				// One model's promotions are serialized (about 0.5-1 s a switch on a busy 2-core
				// machine), so -short, which checks that the suite runs, takes half as many there.
				n = max((n+1)/2, 4)
			}
			for _, d := range order {
				res := e.runBatch(ctx, c, d, models, n)
				e.logf("orchestration %s, %s: %d lifecycles in %s (%.2f/s), p50 %.2f s, p99 %.2f s, %d refused (%d attempts), worker %.1f ms CPU per lifecycle",
					f.Name, d.name, len(res.latencies), res.wall.Round(time.Millisecond), res.rate, res.p(0.5), res.p(0.99), res.refused, res.refusedAttempts, res.cpuMs)
				ev := e.countEvents(ctx, c, d, models, len(res.latencies))
				e.logf("orchestration %s, %s: medians %s", f.Name, d.name, res.stepMedians())
				e.logf("orchestration %s, %s: %d events in one version's history, %.1f per lifecycle in the model's (%d runs)",
					f.Name, d.name, ev.version, ev.modelPerLifecycle, ev.modelRuns)
				prefix := ""
				if d == base {
					f.Base = append(f.Base, res.rate)
					prefix = "base_"
				} else {
					f.Registry = append(f.Registry, res.rate)
					f.Note("p50_s", res.p(0.5))
				}
				f.Note(prefix+"p99_s", res.p(0.99))
				f.Note(prefix+"refused", float64(res.refused))
				if d == reg {
					f.Note("refused_attempts", float64(res.refusedAttempts))
				}
				f.Note(prefix+"worker_cpu_ms", res.cpuMs)
				f.Note(prefix+"version_events", float64(ev.version))
				f.Note(prefix+"model_events_per_lifecycle", ev.modelPerLifecycle)
			}
		}
	}
	r.Add(one)
	r.Add(many)
}

// sides starts the baseline's worker and the registry's, which run for the whole suite, so that each
// side's batch has the other's idle worker polling alongside it, and returns the clients' connection and
// both drivers; stop ends them.
func (e *Env) sides() (c client.Client, reg, base *driver, stop func()) {
	nw := e.startProcess("noopworker", e.NoopWorkerBin, []string{"-address", e.TemporalAddress, "-task-queue", noopTaskQueue}, e.BaseEnv)
	rw := e.StartWorker()
	e.waitStarted(nw, "worker started")
	c = e.loadClient()
	return c, e.registryDriver(c, rw), e.noopDriver(c, nw), func() {
		c.Close()
		e.StopWorker()
		nw.Stop()
	}
}

// driver is one side of the comparison: what a client does to register a version and approve it, and
// how its version's history shows a stage transition.
type driver struct {
	name   string
	worker *Process
	// prepare is what comes before a registration and is not orchestration (the registry's upload); it
	// runs before the batch's clock starts.
	prepare  func(ctx context.Context, model string, i int) (any, error)
	register func(ctx context.Context, model string, prepared any) (int, error)
	approve  func(ctx context.Context, model string, version int) error
	// modelID and versionID name the workflows whose histories are counted.
	modelID   func(model string) string
	versionID func(model string, version int) string
}

func (e *Env) registryDriver(c client.Client, w *Process) *driver {
	dir := filepath.Join(e.Dir, "orchestration")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.T.Fatal(err)
	}
	return &driver{
		name: "registry", worker: w,
		prepare: func(ctx context.Context, model string, i int) (any, error) {
			// Distinct bytes per registration, so that each version has a blob and an idempotency key
			// of its own, as separate training runs would.
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.bin", model, i))
			if err := os.WriteFile(path, []byte(fmt.Sprintf("orchestration bench %s #%d %d\n", model, i, time.Now().UnixNano())), 0o644); err != nil {
				return nil, err
			}
			f, err := e.Store.PutFile(ctx, path, nil)
			if err != nil {
				return nil, err
			}
			f.Path = "model.bin"
			req := workflows.RegisterRequest{SchemaVersion: workflows.SchemaVersion, Model: model,
				Source: workflows.ArtifactSource{Files: []artifact.FileEntry{f}}, RegisteredBy: "bench-trainer",
				Metrics: map[string]float64{"accuracy": 0.9}}
			req.IdempotencyKey = control.ContentKey(req, req.Source.Files)
			return req, req.Validate()
		},
		register: func(ctx context.Context, model string, prepared any) (int, error) {
			res, err := control.Register(ctx, c, prepared.(workflows.RegisterRequest))
			return res.Version, err
		},
		approve: func(ctx context.Context, model string, version int) error {
			// The digest an approver reviews, from where the API and `starter status` show it.
			row, err := e.Catalog.GetVersion(ctx, model, version)
			if err != nil {
				return err
			}
			_, err = control.Decide(ctx, c, model, version, workflows.UpdateApprove, workflows.Decision{Approver: "bench", Digest: row.ManifestDigest})
			return err
		},
		modelID:   workflows.ModelWorkflowID,
		versionID: workflows.VersionWorkflowID,
	}
}

// stageUpserted reads a stage from the search-attribute upsert that follows each transition of both
// sides' version workflows. The transition itself is written by a local activity, whose marker does not
// carry its input; the upsert is recorded once the workflow task that made the transition completed.
func stageUpserted(ev *historypb.HistoryEvent) (string, bool) {
	p := ev.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields()[workflows.SAModelStage.GetName()]
	var stage string
	if p == nil || json.Unmarshal(p.GetData(), &stage) != nil {
		return "", false
	}
	return stage, true
}

func (e *Env) noopDriver(c client.Client, w *Process) *driver {
	return &driver{
		name: "baseline", worker: w,
		prepare: func(ctx context.Context, model string, i int) (any, error) {
			return noop.RegisterRequest{Model: model, Key: fmt.Sprintf("%s-%d", model, i)}, nil
		},
		// As control.Register: the register signal, then the registration query on the same schedule.
		register: func(ctx context.Context, model string, prepared any) (int, error) {
			req := prepared.(noop.RegisterRequest)
			id := noop.ModelWorkflowID(model)
			if _, err := c.SignalWithStartWorkflow(ctx, id, noop.SignalRegister, req, client.StartWorkflowOptions{
				ID: id, TaskQueue: noopTaskQueue, WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			}, noop.ModelWorkflowType, noop.ModelInput{Model: model}); err != nil {
				return 0, err
			}
			for wait := control.RegistrationPollFirst; ; wait = min(wait*3/2, control.RegistrationPollMax) {
				select {
				case <-ctx.Done():
					return 0, ctx.Err()
				case <-time.After(wait):
				}
				v, err := c.QueryWorkflow(ctx, id, "", noop.QueryRegistration, req.Key)
				if err != nil {
					return 0, err
				}
				var version int
				if err := v.Get(&version); err != nil || version > 0 {
					return version, err
				}
			}
		},
		approve: func(ctx context.Context, model string, version int) error {
			h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: noop.VersionWorkflowID(model, version),
				UpdateName: noop.UpdateApprove, Args: []any{noop.Decision{Approver: "bench", Digest: "sha256:none"}},
				WaitForStage: client.WorkflowUpdateStageCompleted})
			if err != nil {
				return err
			}
			return h.Get(ctx, nil)
		},
		modelID:   noop.ModelWorkflowID,
		versionID: noop.VersionWorkflowID,
	}
}

// loadClient is the clients' connection to Temporal, with the registry's data converter, counting every
// update the server refuses with ResourceExhausted (a workflow has at most 10 updates in flight). The
// SDK retries such a refusal by itself, so the caller's error never shows it: the count is taken under
// the SDK's retries, per attempt.
func (e *Env) loadClient() client.Client {
	compression, err := config.ParseGrpcCompression(os.Getenv("MODELREG_TEMPORAL_GRPC_COMPRESSION"))
	if err != nil {
		e.T.Fatal(err)
	}
	c, err := client.Dial(client.Options{
		HostPort: e.TemporalAddress, DataConverter: workflows.NewDataConverter(),
		Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler)),
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: compression, DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(countRefusals),
		}},
	})
	if err != nil {
		e.T.Fatal(err)
	}
	return c
}

type refusalsKey struct{}

// counter counts refusals for one lifecycle and for its whole batch.
type counter struct{ lifecycle, batch *atomic.Int64 }

func countRefusals(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil && status.Code(err) == codes.ResourceExhausted &&
		(strings.HasSuffix(method, "/UpdateWorkflowExecution") || strings.HasSuffix(method, "/ExecuteMultiOperation")) {
		if n, ok := ctx.Value(refusalsKey{}).(*counter); ok {
			n.lifecycle.Add(1)
			n.batch.Add(1)
		}
	}
	return err
}

func isResourceExhausted(err error) bool {
	var re *serviceerror.ResourceExhausted
	return errors.As(err, &re) || status.Code(err) == codes.ResourceExhausted
}

type batchResult struct {
	latencies []time.Duration
	steps     [][4]time.Duration // of each lifecycle, see lifecycle
	wall      time.Duration
	rate      float64
	// refused counts the registrations that had an update refused for lack of slots at least once;
	// refusedAttempts every such refusal.
	refused         int
	refusedAttempts int64
	// cpuMs is the side's worker process's CPU time per lifecycle.
	cpuMs float64
}

// stepMedians are the median seconds of each step of a lifecycle, for the log.
func (b batchResult) stepMedians() string {
	var out []string
	for i, name := range []string{"register", "to PendingApproval", "approve", "to Production"} {
		var xs []float64
		for _, s := range b.steps {
			xs = append(xs, s[i].Seconds())
		}
		out = append(out, fmt.Sprintf("%s %.2f s", name, median(xs)))
	}
	return strings.Join(out, ", ")
}

// p is the q-quantile of the latencies in seconds (nearest rank).
func (b batchResult) p(q float64) float64 {
	if len(b.latencies) == 0 {
		return 0
	}
	s := slices.Clone(b.latencies)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)].Seconds()
}

// runBatch takes n registrations to Production from Opts.Clients clients, the i-th on
// models[i % len(models)]. The rate is lifecycles over the batch's wall time; a latency is from the
// registration's request to the client seeing Production.
func (e *Env) runBatch(ctx context.Context, c client.Client, d *driver, models []string, n int) batchResult {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(n)*5*time.Second)
	defer cancel()
	prepared := e.prepareAll(ctx, "orchestration", d, models, n)

	lat := make([]time.Duration, n)
	refused := make([]int64, n)
	steps := make([][4]time.Duration, n)
	cpu0, tree0 := d.worker.CPUSeconds(), treeCPU()
	start := time.Now()
	var refusedSoFar atomic.Int64
	err := e.eachByClients(ctx, "orchestration "+d.name, n, refused, &refusedSoFar, func(ctx context.Context, i int) error {
		t0 := time.Now()
		st, err := lifecycle(ctx, c, d, models[i%len(models)], prepared[i])
		if err != nil {
			return fmt.Errorf("lifecycle %d on %s: %w", i, models[i%len(models)], err)
		}
		lat[i], steps[i] = time.Since(t0), st
		return nil
	})
	if err != nil {
		e.T.Fatalf("orchestration %s: %v", d.name, err)
	}
	res := batchResult{latencies: lat, steps: steps, wall: time.Since(start)}
	res.rate = float64(n) / res.wall.Seconds()
	res.cpuMs = (d.worker.CPUSeconds() - cpu0) * 1000 / float64(n)
	tree := treeCPU()
	var parts []string
	for _, name := range sortedKeys(tree) {
		if ms := (tree[name] - tree0[name]) * 1000 / float64(n); ms >= 0.5 {
			parts = append(parts, fmt.Sprintf("%s %.0f", name, ms))
		}
	}
	e.logf("orchestration %s: CPU ms per lifecycle by process: %s", d.name, strings.Join(parts, ", "))
	for _, r := range refused {
		if r > 0 {
			res.refused++
		}
		res.refusedAttempts += r
	}
	return res
}

// prepareAll prepares n registrations, the i-th on models[i % len(models)], before a batch's clock starts.
func (e *Env) prepareAll(ctx context.Context, suite string, d *driver, models []string, n int) []any {
	prepared := make([]any, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() (err error) {
			prepared[i], err = d.prepare(gctx, models[i%len(models)], i)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		e.T.Fatalf("%s %s: prepare: %v", suite, d.name, err)
	}
	return prepared
}

// lifecycle registers, waits for PendingApproval, approves and waits for Production. An update refused
// for lack of slots has already been retried by the SDK (and counted); if it still is after the SDK gives
// up, it is sent again after a pause, so that the batch completes and the count says what happened.
//
// It returns how long each step took: the register update, until PendingApproval was seen, the approve
// update, until Production was seen.
func lifecycle(ctx context.Context, c client.Client, d *driver, model string, prepared any) (steps [4]time.Duration, err error) {
	t := time.Now()
	lap := func(i int) {
		now := time.Now()
		steps[i], t = now.Sub(t), now
	}
	var v int
	if err := retryRefused(ctx, func() (err error) {
		v, err = d.register(ctx, model, prepared)
		return err
	}); err != nil {
		return steps, fmt.Errorf("register: %w", err)
	}
	lap(0)
	w := watchStage(ctx, c, d.versionID(model, v))
	if err := w.until(workflows.StagePendingApproval); err != nil {
		return steps, err
	}
	lap(1)
	if err := retryRefused(ctx, func() error { return d.approve(ctx, model, v) }); err != nil {
		return steps, fmt.Errorf("approve v%d: %w", v, err)
	}
	lap(2)
	err = w.until(workflows.StageProduction)
	lap(3)
	return steps, err
}

func retryRefused(ctx context.Context, f func() error) error {
	count := new(atomic.Int64)
	if c, ok := ctx.Value(refusalsKey{}).(*counter); ok {
		count = c.lifecycle
	}
	for attempt := 1; ; attempt++ {
		before := count.Load()
		err := f()
		// The SDK retries a refusal until its call's own deadline and then reports a timeout, not
		// the refusal: a timeout after refusals is one too.
		var timeout *client.WorkflowUpdateServiceTimeoutOrCanceledError
		refused := isResourceExhausted(err) || errors.As(err, &timeout) && ctx.Err() == nil && count.Load() > before
		if err == nil || !refused || attempt == 10 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// stageWatch follows a version's stage in its history, long-polling it: a stage is reached when the
// workflow task that applied its transition completes, which is when the stage query would first
// answer it. The registry offers no way to wait for a stage, and polling a query (`starter register
// --wait` polls describe) costs a round trip through the server and the worker each time: 16 clients
// polling every 100 ms while they wait seconds behind a hot model's promotions took a large part of
// this 2-core machine, on both sides alike, and the measurement measured the polling.
type stageWatch struct {
	it    client.HistoryEventIterator
	id    string
	stage string
}

func watchStage(ctx context.Context, c client.Client, id string) *stageWatch {
	return &stageWatch{id: id, it: c.GetWorkflowHistory(ctx, id, "", true, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)}
}

func (w *stageWatch) until(want string) error {
	for w.stage != want {
		switch w.stage {
		case workflows.StageRejected, workflows.StageFailed:
			return fmt.Errorf("%s ended %s while waiting for %s", w.id, w.stage, want)
		}
		if !w.it.HasNext() {
			return fmt.Errorf("%s closed at stage %q while waiting for %s", w.id, w.stage, want)
		}
		ev, err := w.it.Next()
		if err != nil {
			return fmt.Errorf("%s: waiting for %s (stage %q): %w", w.id, want, w.stage, err)
		}
		if to, ok := stageUpserted(ev); ok {
			w.stage = to
		}
	}
	return nil
}

// treeCPU is the CPU seconds used so far by this process and each of its descendants (the servers, the
// workers), by command name: where a batch's work went, which on a shared machine the system's load
// cannot tell.
func treeCPU() map[string]float64 {
	type proc struct {
		ppid int
		comm string
		cpu  float64
	}
	procs := map[int]proc{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		st := string(b)
		i, j := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(st[j+2:])
		if len(f) < 13 {
			continue
		}
		var ppid int
		var ut, stime float64
		fmt.Sscanf(f[1], "%d", &ppid)
		fmt.Sscanf(f[11], "%g", &ut)
		fmt.Sscanf(f[12], "%g", &stime)
		procs[pid] = proc{ppid: ppid, comm: st[i+1 : j], cpu: (ut + stime) / 100}
	}
	self := os.Getpid()
	out := map[string]float64{}
	for pid, p := range procs {
		for q := pid; q > 1; q = procs[q].ppid {
			if q == self {
				out[p.comm] += p.cpu
				break
			}
			if _, ok := procs[q]; !ok {
				break
			}
		}
	}
	return out
}

type eventCounts struct {
	version           int64
	modelPerLifecycle float64
	modelRuns         int
}

// countEvents counts the history events of one version's workflow (one replaced by a later version when
// there is one, so its history has the archive too) and of the models' workflows over all their runs,
// per lifecycle they served. The models' deliveries finish after the last client saw Production, so the
// count waits until no model's workflow has an activity or a workflow task pending.
func (e *Env) countEvents(ctx context.Context, c client.Client, d *driver, models []string, lifecycles int) eventCounts {
	var used []string
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range models {
		for {
			desc, err := c.DescribeWorkflowExecution(ctx, d.modelID(m), "")
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				break // a model no registration went to (-short)
			}
			if err != nil {
				e.T.Fatalf("orchestration %s: describe %s: %v", d.name, d.modelID(m), err)
			}
			if len(desc.GetPendingActivities()) == 0 && desc.GetPendingWorkflowTask() == nil || time.Now().After(deadline) {
				used = append(used, m)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var ec eventCounts
	var total int64
	for _, m := range used {
		n, runs, err := historyEvents(ctx, c, d.modelID(m))
		if err != nil {
			e.T.Fatalf("orchestration %s: history of %s: %v", d.name, d.modelID(m), err)
		}
		total, ec.modelRuns = total+n, ec.modelRuns+runs
	}
	ec.modelPerLifecycle = float64(total) / float64(lifecycles)
	version := 1
	if len(models) == 1 {
		version = max(lifecycles/2, 1)
	}
	n, _, err := historyEvents(ctx, c, d.versionID(models[0], version))
	if err != nil {
		e.T.Fatalf("orchestration %s: history of %s: %v", d.name, d.versionID(models[0], version), err)
	}
	ec.version = n
	return ec
}

// historyEvents sums the events of every run of a workflow, following continue-as-new back from the
// current run (visibility, which lists runs, lags behind).
func historyEvents(ctx context.Context, c client.Client, id string) (events int64, runs int, err error) {
	runID := ""
	for {
		d, err := c.DescribeWorkflowExecution(ctx, id, runID)
		if err != nil {
			return 0, 0, err
		}
		info := d.GetWorkflowExecutionInfo()
		events += info.GetHistoryLength()
		runs++
		it := c.GetWorkflowHistory(ctx, id, info.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		first, err := it.Next()
		if err != nil {
			return 0, 0, err
		}
		prev := first.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
		if prev == "" {
			return events, runs, nil
		}
		runID = prev
	}
}
