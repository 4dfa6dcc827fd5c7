// Package tests holds the end-to-end tests: the real worker and starter binaries, a real Temporal dev
// server driven by the real temporal CLI, real PostgreSQL and a real S3-compatible server.
package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

var bins struct {
	once    sync.Once
	dir     string
	worker  string
	starter string
	err     error
}

func TestMain(m *testing.M) {
	code := testenv.RunWithServers(m)
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// buildBinaries builds the worker and starter the way a user would, once per test binary.
func buildBinaries(t testing.TB) {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "modelreg-e2e-bin-")
		if bins.err != nil {
			return
		}
		bins.worker = filepath.Join(bins.dir, "worker")
		bins.starter = filepath.Join(bins.dir, "starter")
		for out, pkg := range map[string]string{bins.worker: "./worker", bins.starter: "./starter"} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = ".."
			if b, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

type harness struct {
	t         testing.TB
	dir       string
	temporal  string // CLI binary
	address   string
	pgURL     string
	s3        testenv.S3Server
	bucket    string
	env       []string
	worker    *exec.Cmd
	workerLog *os.File
	hook      *webhook
	store     artifact.Store
	catalog   *catalog.Catalog
	// The builds the harness runs (buildBinaries', unless an older release's).
	workerBin, starterBin string
	// apiURL is the worker's HTTP API (harnessOptions.api); apiTokens are its principals' tokens.
	apiURL    string
	apiTokens map[string]string
}

func newHarness(t testing.TB) *harness { return newHarnessWith(t, harnessOptions{}) }

// harnessOptions change what newHarnessWith sets up. With workerBin and starterBin the harness runs
// other builds of the registry (an older release, for the upgrade test); with noMigrate the catalog is
// left for that worker to migrate; env is added to the environment of the worker and the starter.
type harnessOptions struct {
	workerBin, starterBin string
	noMigrate             bool
	// api serves the HTTP API on a free port with the principals of apiPrincipals.
	api bool
	// env is added to the environment of the worker and the starter (MODELREG_HTTP_ADDR…).
	env []string
}

// apiPrincipals are the HTTP API's principals in tests: name → roles by model pattern.
var apiPrincipals = map[string]map[string][]string{
	"alice": {"*": {"approve"}},
	"bob":   {"other-*": {"approve"}},
	"ci":    {"*": {"register"}},
	"ops":   {"*": {"rollback", "admin"}},
}

func newHarnessWith(t testing.TB, opts harnessOptions) *harness {
	t.Helper()
	buildBinaries(t)
	h := &harness{t: t, dir: t.TempDir(), bucket: "registry", workerBin: bins.worker, starterBin: bins.starter}
	if opts.workerBin != "" {
		h.workerBin, h.starterBin = opts.workerBin, opts.starterBin
	}
	h.temporal = testenv.TemporalBinary(t)
	h.pgURL = testenv.Postgres(t)
	h.s3 = testenv.S3(t)
	srv := testenv.Temporal(t, "")
	h.address = srv.Address
	h.hook = newWebhook(t)

	cfg := artifact.S3Config{Bucket: h.bucket, Endpoint: h.s3.Endpoint, Region: h.s3.Region,
		AccessKeyID: h.s3.AccessKey, SecretAccessKey: h.s3.SecretKey, PathStyle: true}
	st, err := artifact.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.store = st
	h.env = append(os.Environ(),
		"TEMPORAL_ADDRESS="+h.address,
		"TEMPORAL_NAMESPACE=default",
		"MODELREG_DATA_DIR="+filepath.Join(h.dir, "data"),
		"MODELREG_DATABASE_URL="+h.pgURL,
		"MODELREG_S3_BUCKET="+h.bucket,
		"MODELREG_S3_ENDPOINT="+h.s3.Endpoint,
		"MODELREG_S3_REGION="+h.s3.Region,
		"MODELREG_S3_ACCESS_KEY_ID="+h.s3.AccessKey,
		"MODELREG_S3_SECRET_ACCESS_KEY="+h.s3.SecretKey,
		"MODELREG_S3_PATH_STYLE=true",
	)
	h.env = append(h.env, opts.env...)
	cat, err := catalog.Open(context.Background(), h.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	if !opts.noMigrate {
		if err := cat.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { cat.Close() })
	h.catalog = cat
	if opts.api {
		h.enableAPI()
	}
	h.startWorker()
	return h
}

// enableAPI has the worker serve its HTTP API on a free port with a tokens file of apiPrincipals.
func (h *harness) enableAPI() {
	h.t.Helper()
	tf := api.TokenFile{}
	h.apiTokens = map[string]string{}
	for name, roles := range apiPrincipals {
		tok := "test-token-" + name + "-0123456789abcdef"
		sum := sha256.Sum256([]byte(tok))
		h.apiTokens[name] = tok
		tf.Principals = append(tf.Principals, api.PrincipalEntry{Name: name, TokenSHA256: hex.EncodeToString(sum[:]), Roles: roles})
	}
	b, _ := json.Marshal(tf)
	file := filepath.Join(h.dir, "api-tokens.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		h.t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(h.t))
	h.apiURL = "http://" + addr
	h.env = append(h.env, "MODELREG_HTTP_ADDR="+addr, "MODELREG_API_TOKENS_FILE="+file)
}

// waitAPI waits until the worker's HTTP API answers its liveness probe.
func (h *harness) waitAPI() {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(h.apiURL + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("the worker's HTTP API at %s did not come up", h.apiURL)
}

func (h *harness) startWorker() {
	h.t.Helper()
	f, err := os.OpenFile(filepath.Join(h.dir, "worker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(orDefault(h.workerBin, bins.worker))
	cmd.Env = h.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.worker, h.workerLog = cmd, f
	h.t.Cleanup(h.stopWorker)
}

func (h *harness) stopWorker() {
	if h.worker == nil {
		return
	}
	_ = h.worker.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = h.worker.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = h.worker.Process.Kill()
		<-done
	}
	h.worker = nil
	h.workerLog.Close()
	if h.t.Failed() {
		b, _ := os.ReadFile(h.workerLog.Name())
		h.t.Logf("worker log:\n%s", tail(b, 8000))
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// starter runs the starter binary and returns its stdout, stderr and error.
func (h *harness) starter(args ...string) (string, string, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, orDefault(h.starterBin, bins.starter), args...)
	cmd.Env = h.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (h *harness) mustStarter(args ...string) string {
	h.t.Helper()
	out, errOut, err := h.starter(args...)
	if err != nil {
		h.t.Fatalf("starter %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// cli runs the real temporal CLI against the test server, as an operator would.
func (h *harness) cli(args ...string) (string, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append(args, "--address", h.address, "--namespace", "default")
	cmd := exec.CommandContext(ctx, h.temporal, args...)
	cmd.Env = append(os.Environ(), "TEMPORAL_CLI_SHOW_STACKS=0")
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func (h *harness) mustCLI(args ...string) string {
	h.t.Helper()
	out, err := h.cli(args...)
	if err != nil {
		h.t.Fatalf("temporal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// queryStage asks the version's workflow for its stage with `temporal workflow query`.
func (h *harness) queryStage(model string, version int) string {
	h.t.Helper()
	out := h.mustCLI("workflow", "query", "--workflow-id", fmt.Sprintf("model/%s/v%d", model, version), "--name", "stage", "-o", "json")
	var res struct {
		QueryResult []string `json:"queryResult"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.QueryResult) != 1 {
		h.t.Fatalf("unexpected query output %q: %v", out, err)
	}
	return res.QueryResult[0]
}

func (h *harness) waitStage(model string, version int, want string) {
	h.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = h.queryStage(model, version); last == want {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	h.t.Fatalf("%s v%d: stage %s, want %s", model, version, last, want)
}

// listIDs runs `temporal workflow list --query` and returns the workflow IDs.
func (h *harness) listIDs(query string) []string {
	h.t.Helper()
	out := h.mustCLI("workflow", "list", "--query", query, "-o", "json")
	var rows []struct {
		Execution struct {
			WorkflowID string `json:"workflowId"`
		} `json:"execution"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		// One JSON object per line in some CLI versions.
		rows = nil
		dec := json.NewDecoder(strings.NewReader(out))
		for dec.More() {
			var r struct {
				Execution struct {
					WorkflowID string `json:"workflowId"`
				} `json:"execution"`
			}
			if err := dec.Decode(&r); err != nil {
				h.t.Fatalf("unexpected list output %q: %v", out, err)
			}
			rows = append(rows, r)
		}
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.Execution.WorkflowID)
	}
	return ids
}

// webhook is a deployment-event receiver that counts deliveries per event id.
type webhook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	counts map[string]int
	events []activities.DeploymentEvent
	fail   int // answer 503 to this many requests first
}

func newWebhook(t testing.TB) *webhook {
	w := &webhook{counts: map[string]int{}}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.fail > 0 {
			w.fail--
			http.Error(rw, "try later", http.StatusServiceUnavailable)
			return
		}
		var ev activities.DeploymentEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.counts[ev.EventID]++
		w.events = append(w.events, ev)
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) snapshot() (map[string]int, []activities.DeploymentEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := map[string]int{}
	for k, v := range w.counts {
		c[k] = v
	}
	return c, append([]activities.DeploymentEvent(nil), w.events...)
}

// waitEvents waits until the webhook has received at least n events: the deployment event is delivered
// after the switch, not before it.
func (w *webhook) waitEvents(t testing.TB, n int) (map[string]int, []activities.DeploymentEvent) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		counts, events := w.snapshot()
		if len(events) >= n || time.Now().After(deadline) {
			return counts, events
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sleep() { time.Sleep(300 * time.Millisecond) }

// recordHistory saves a workflow's history into testdata when MODELREG_RECORD_HISTORIES=1, so that
// TestReplayRecordedHistories replays it against every later version of the workflow code.
func (h *harness) recordHistory(workflowID, name string) {
	h.t.Helper()
	if os.Getenv("MODELREG_RECORD_HISTORIES") != "1" {
		return
	}
	out, err := h.cli("workflow", "show", "--workflow-id", workflowID, "-o", "json")
	if err != nil {
		h.t.Fatalf("export history of %s: %v\n%s", workflowID, err, out)
	}
	h.writeHistory(name, out)
}

// recordAllRuns records every run of a workflow that continued as new: the run that did it (its history
// ends with the continue-as-new command) and the run it started (its input carries the state).
func (h *harness) recordAllRuns(workflowID, name string) {
	h.t.Helper()
	if os.Getenv("MODELREG_RECORD_HISTORIES") != "1" {
		return
	}
	out := h.mustCLI("workflow", "list", "--query", fmt.Sprintf("WorkflowId=%q", workflowID), "-o", "json")
	var runs []struct {
		Execution struct {
			RunID string `json:"runId"`
		} `json:"execution"`
		StartTime string `json:"startTime"`
	}
	if err := json.Unmarshal([]byte(out), &runs); err != nil {
		h.t.Fatalf("list runs of %s: %v\n%s", workflowID, err, out)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].StartTime < runs[j].StartTime })
	for i, r := range runs {
		hist := h.mustCLI("workflow", "show", "--workflow-id", workflowID, "--run-id", r.Execution.RunID, "-o", "json")
		h.writeHistory(fmt.Sprintf("%s-run%d", name, i+1), hist)
	}
}

func (h *harness) writeHistory(name, out string) {
	h.t.Helper()
	path := filepath.Join("testdata", "histories", name+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		h.t.Fatal(err)
	}
}
