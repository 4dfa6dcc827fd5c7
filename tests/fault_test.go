package tests

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/devserver"
	"github.com/modelreg/modelreg/internal/testenv"
	"github.com/modelreg/modelreg/workflows"
)

// faultHarness runs the registry on servers the test can take away: its own PostgreSQL and versitygw,
// and a Temporal dev server persisted to a file that can be stopped and started on the same port.
type faultHarness struct {
	*harness
	pg      *testenv.OutagePostgres
	s3o     *testenv.OutageS3
	tsrv    *devserver.Server
	tdb     string
	tport   int
	client  client.Client
	kills   atomic.Int64
	outages atomic.Int64
}

func newFaultHarness(t *testing.T) *faultHarness {
	t.Helper()
	buildBinaries(t)
	h := &harness{t: t, dir: t.TempDir(), bucket: "registry", temporal: testenv.TemporalBinary(t)}
	f := &faultHarness{harness: h}
	f.pg = testenv.DedicatedPostgres(t)
	f.s3o = testenv.DedicatedS3(t)
	h.pgURL, h.s3 = f.pg.URL, f.s3o.S3Server
	f.tdb = filepath.Join(h.dir, "temporal.db")
	f.startTemporal(true)
	t.Cleanup(func() { f.tsrv.Stop() })
	h.address = f.tsrv.Address
	h.hook = newWebhook(t)

	ctx := context.Background()
	cfg := artifact.S3Config{Bucket: h.bucket, Endpoint: h.s3.Endpoint, Region: h.s3.Region,
		AccessKeyID: h.s3.AccessKey, SecretAccessKey: h.s3.SecretKey, PathStyle: true, PartSize: 5 << 20, MultipartThreshold: -1}
	st, err := artifact.NewS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	h.store = st
	h.env = append(os.Environ(),
		"TEMPORAL_ADDRESS="+h.address, "MODELREG_DATA_DIR="+filepath.Join(h.dir, "data"),
		"MODELREG_DATABASE_URL="+h.pgURL, "MODELREG_S3_BUCKET="+h.bucket, "MODELREG_S3_ENDPOINT="+h.s3.Endpoint,
		"MODELREG_S3_REGION="+h.s3.Region, "MODELREG_S3_ACCESS_KEY_ID="+h.s3.AccessKey,
		"MODELREG_S3_SECRET_ACCESS_KEY="+h.s3.SecretKey, "MODELREG_S3_PATH_STYLE=true")
	cat, err := catalog.Open(ctx, h.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	h.catalog = cat
	f.client, err = client.Dial(client.Options{HostPort: h.address, DataConverter: workflows.NewDataConverter(),
		Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.client.Close)
	h.startWorker()
	return f
}

// startTemporal starts the dev server on f.tport. The first start picks the port, and tries another
// when the server exits before it listens: a free port can be taken between the pick and the bind, by
// the server's own ports or another test's. Restarts keep the port the worker knows.
func (f *faultHarness) startTemporal(first ...bool) {
	f.t.Helper()
	logFile, err := os.OpenFile(filepath.Join(f.dir, "temporal.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	attempts := 1
	if len(first) > 0 && first[0] {
		attempts = 3
	}
	for i := 1; ; i++ {
		if attempts > 1 {
			f.tport = testenv.FreePort(f.t)
		}
		srv, err := devserver.Start(context.Background(), devserver.Options{Binary: f.temporal, DBFile: f.tdb, Port: f.tport, Headless: true, Log: logFile})
		if err == nil {
			f.tsrv = srv
			return
		}
		if i >= attempts {
			f.t.Fatalf("start temporal: %v", err)
		}
	}
}

// killWorker ends the worker process with SIGKILL, as a crash or an OOM kill would, and starts a new one.
func (f *faultHarness) killWorker() {
	_ = f.worker.Process.Signal(syscall.SIGKILL)
	_ = f.worker.Wait()
	f.workerLog.Close()
	f.worker = nil
	f.startWorker()
	f.kills.Add(1)
}

// lifecycle is one version the workload drives to its end.
type lifecycle struct {
	model   string
	key     string
	version int
}

// runWorkload registers len(models)*perModel versions concurrently with the starter, approves each as
// soon as it waits for approval, and returns when every one has reached Production or Archived.
func (f *faultHarness) runWorkload(models []string, perModel int, timeout time.Duration) []lifecycle {
	f.t.Helper()
	var lcs []lifecycle
	for _, m := range models {
		for i := 0; i < perModel; i++ {
			lcs = append(lcs, lifecycle{model: m, key: fmt.Sprintf("%s-job-%d", m, i)})
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(lcs))
	for i := range lcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			lc := &lcs[i]
			dir := filepath.Join(f.dir, "art", lc.key)
			writeFiles(f.t, dir, map[string]string{"model.bin": "weights of " + lc.key, "config.json": `{"k":"` + lc.key + `"}`})
			// A training job retries its registration until it gets an answer; the idempotency key makes
			// that safe across crashes.
			deadline := time.Now().Add(timeout)
			for {
				out, errOut, err := f.starter("register", "--model", lc.model, "--dir", dir, "--idempotency-key", lc.key, "--json")
				if err == nil {
					var v int
					if _, err := fmt.Sscanf(out[strings.Index(out, `"version":`)+len(`"version":`):], "%d", &v); err == nil {
						lc.version = v
						return
					}
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("register %s: %v\n%s%s", lc.key, err, out, errOut)
					return
				}
				time.Sleep(time.Second)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		f.t.Fatal(err)
	}

	f.driveToEnd(lcs, timeout)
	return lcs
}

// driveToEnd approves every version that waits for approval, and returns when all are in Production or
// Archived.
func (f *faultHarness) driveToEnd(lcs []lifecycle, timeout time.Duration) {
	f.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		done := 0
		for _, lc := range lcs {
			d, err := f.describe(ctx, lc.model, lc.version)
			if err != nil {
				continue // a worker restart or a server outage: ask again next round
			}
			switch d.State.Stage {
			case workflows.StageProduction, workflows.StageArchived:
				done++
			case workflows.StagePendingApproval:
				go f.approve(lc, d.State.ManifestDigest)
			case workflows.StageRejected, workflows.StageFailed:
				f.t.Fatalf("%s v%d ended %s: %v", lc.model, lc.version, d.State.Stage, d.State.History)
			}
		}
		if done == len(lcs) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("only %d of %d lifecycles finished within %s", done, len(lcs), timeout)
		}
		time.Sleep(time.Second)
	}
}

func (f *faultHarness) describe(ctx context.Context, model string, version int) (workflows.VersionDescription, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d workflows.VersionDescription
	v, err := f.client.QueryWorkflow(ctx, workflows.VersionWorkflowID(model, version), "", workflows.QueryDescribe)
	if err != nil {
		return d, err
	}
	return d, v.Get(&d)
}

func (f *faultHarness) approve(lc lifecycle, digest string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := f.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.VersionWorkflowID(lc.model, lc.version), UpdateName: workflows.UpdateApprove,
		// One update ID per version: a retried approval after a crash is the same approval.
		UpdateID:     "approve-" + lc.key,
		Args:         []any{workflows.Decision{Approver: "approver", Digest: digest}},
		WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err == nil {
		_ = h.Get(ctx, nil)
	}
}

// checkInvariants checks the invariants of docs/architecture.md over the whole registry after a fault test: one
// production version per model, versions 1..N without gaps or duplicates, every manifest's blobs present
// with matching digests, an audit row per transition, catalog and workflows agreeing on every stage, and
// no multipart upload left behind.
func (f *faultHarness) checkInvariants(lcs []lifecycle) {
	f.t.Helper()
	ctx := context.Background()
	byModel := map[string][]lifecycle{}
	for _, lc := range lcs {
		byModel[lc.model] = append(byModel[lc.model], lc)
	}
	for model, mine := range byModel {
		vs, err := f.catalog.ListVersions(ctx, model, "")
		if err != nil {
			f.t.Fatal(err)
		}
		if len(vs) != len(mine) {
			f.t.Errorf("%s: catalog has %d versions, %d were registered", model, len(vs), len(mine))
		}
		production := 0
		for i, v := range vs {
			if v.Version != i+1 {
				f.t.Errorf("%s: version numbers %d at position %d: gap or duplicate", model, v.Version, i)
			}
			d, err := f.describe(ctx, model, v.Version)
			if err != nil {
				f.t.Errorf("%s v%d: describe: %v", model, v.Version, err)
				continue
			}
			if d.State.Stage != v.Stage {
				f.t.Errorf("%s v%d: catalog stage %s, workflow stage %s", model, v.Version, v.Stage, d.State.Stage)
			}
			if v.Stage == catalog.StageProduction {
				production++
			}
			trs, err := f.catalog.Transitions(ctx, model, v.Version)
			if err != nil {
				f.t.Fatal(err)
			}
			if len(trs) != len(d.State.History) {
				f.t.Errorf("%s v%d: %d audit rows for %d transitions", model, v.Version, len(trs), len(d.State.History))
			}
			m, digest, err := f.store.GetManifest(ctx, model, v.Version)
			if err != nil || digest != v.ManifestDigest {
				f.t.Errorf("%s v%d: manifest %v, digest %s vs catalog %s", model, v.Version, err, digest, v.ManifestDigest)
				continue
			}
			for _, file := range m.Files {
				if err := f.store.VerifyBlob(ctx, file, nil); err != nil {
					f.t.Errorf("%s v%d %s: %v", model, v.Version, file.Path, err)
				}
			}
		}
		if production != 1 {
			f.t.Errorf("%s: %d versions in Production", model, production)
		}
		p, err := f.catalog.Production(ctx, model)
		if err != nil || p.Stage != catalog.StageProduction {
			f.t.Errorf("%s: production pointer names v%d in %s (%v)", model, p.Version, p.Stage, err)
		}
	}
	raw := f.store.(*artifact.S3).Client()
	ups, err := raw.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(f.bucket)})
	if err != nil {
		f.t.Fatalf("list multipart uploads: %v", err)
	}
	if n := len(ups.Uploads); n != 0 {
		f.t.Errorf("%d multipart uploads left behind", n)
	}
	if out, errOut, err := f.starter("check"); err != nil {
		f.t.Errorf("starter check: %v\n%s%s", err, out, errOut)
	}
}

// TestFaultWorkerKilled: 50 concurrent lifecycles on 5 models while the worker is SIGKILLed 10 times at
// random moments (every 2-6 s) and started again each time.
func TestFaultWorkerKilled(t *testing.T) {
	f := newFaultHarness(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("kill schedule seed %d", seed)
	stop := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for i := 0; i < 10; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(2000+rng.IntN(4000)) * time.Millisecond):
				f.killWorker()
			}
		}
	}()
	defer func() { close(stop); <-killerDone }()
	lcs := f.runWorkload([]string{"m1", "m2", "m3", "m4", "m5"}, 10, 8*time.Minute)
	f.checkInvariants(lcs)
	t.Logf("worker SIGKILL: %d lifecycles, %d kills, nothing lost", len(lcs), f.kills.Load())
}

// TestFaultTemporalRestarted: the Temporal server is stopped and started again (same database file)
// twice in the middle of 20 lifecycles.
func TestFaultTemporalRestarted(t *testing.T) {
	f := newFaultHarness(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 2; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Second):
			}
			f.tsrv.Kill()
			time.Sleep(2 * time.Second)
			f.startTemporal()
			f.outages.Add(1)
		}
	}()
	defer func() { close(stop); <-done }()
	lcs := f.runWorkload([]string{"t1", "t2"}, 10, 6*time.Minute)
	f.checkInvariants(lcs)
	t.Logf("temporal restarts: %d lifecycles, %d server kills, nothing lost", len(lcs), f.outages.Load())
}

// TestFaultCatalogDown: PostgreSQL is unavailable for 30 s while lifecycles run: longer than a catalog
// call's 10 s start-to-close, which a local activity without its own retry window would not outlast.
func TestFaultCatalogDown(t *testing.T) {
	f := newFaultHarness(t)
	go func() {
		time.Sleep(2 * time.Second)
		f.pg.Stop()
		f.outages.Add(1)
		time.Sleep(30 * time.Second)
		if err := f.pg.Start(); err != nil {
			t.Error(err)
		}
	}()
	lcs := f.runWorkload([]string{"c1", "c2"}, 10, 6*time.Minute)
	f.checkInvariants(lcs)
	t.Logf("catalog outage: %d lifecycles, %d outage of 30 s, nothing lost", len(lcs), f.outages.Load())
}

// TestFaultStoreDown: the S3 server is unavailable for 20 s while lifecycles import and verify artifacts
// large enough to be uploaded in parts.
func TestFaultStoreDown(t *testing.T) {
	f := newFaultHarness(t)
	ctx := context.Background()
	raw := f.store.(*artifact.S3).Client()
	if _, err := raw.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("training")}); err != nil {
		t.Fatal(err)
	}
	// Sources big enough (32 MiB, 7 parts) that the outage hits imports in flight.
	const n = 6
	for i := 0; i < n; i++ {
		path := filepath.Join(f.dir, fmt.Sprintf("big-%d.bin", i))
		writeRandomFile(t, path, 32<<20)
		body, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("training"), Key: aws.String(fmt.Sprintf("runs/%d/model.bin", i)), Body: body})
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		time.Sleep(time.Second)
		f.s3o.Stop()
		f.outages.Add(1)
		time.Sleep(20 * time.Second)
		if err := f.s3o.Start(); err != nil {
			t.Error(err)
		}
	}()
	var lcs []lifecycle
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("s3-job-%d", i)
			out := f.mustStarter("register", "--model", "s1", "--source", fmt.Sprintf("s3://training/runs/%d", i), "--idempotency-key", key, "--json")
			var v int
			fmt.Sscanf(out[strings.Index(out, `"version":`)+len(`"version":`):], "%d", &v)
			mu.Lock()
			lcs = append(lcs, lifecycle{model: "s1", key: key, version: v})
			mu.Unlock()
		}()
	}
	wg.Wait()
	f.driveToEnd(lcs, 5*time.Minute)
	f.checkInvariants(lcs)
	t.Logf("store outage: %d lifecycles (32 MiB each), %d outage of 20 s, nothing lost", len(lcs), f.outages.Load())
}

// TestFaultRegisterRetriedConcurrently: a training job retrying one registration 10 times at once gets
// one version.
func TestFaultRegisterRetriedConcurrently(t *testing.T) {
	f := newFaultHarness(t)
	dir := filepath.Join(f.dir, "same")
	writeFiles(t, dir, map[string]string{"model.bin": "same"})
	var wg sync.WaitGroup
	versions := make([]string, 10)
	for i := range versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errOut, err := f.starter("register", "--model", "idem", "--dir", dir, "--idempotency-key", "job-42")
			if err != nil {
				t.Errorf("register: %v %s", err, errOut)
			}
			versions[i] = strings.SplitN(out, "\n", 2)[0]
		}()
	}
	wg.Wait()
	vs, err := f.catalog.ListVersions(context.Background(), "idem", "")
	if err != nil || len(vs) != 1 {
		t.Fatalf("10 concurrent retries made %d versions (%v): %v", len(vs), err, versions)
	}
	for _, v := range versions {
		if !strings.HasSuffix(v, "idem v1") {
			t.Fatalf("answers: %q", versions)
		}
	}
}

func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
}
