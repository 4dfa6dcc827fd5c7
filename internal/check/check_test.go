package check_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/check"
	"github.com/modelreg/modelreg/workflows"
)

// fakeTemporal answers queries from a table, as the workflows would; a missing entry is NotFound.
type fakeTemporal struct {
	mu      sync.Mutex
	answers map[string]any // "<workflow id>|<query>"
	calls   map[string]int
	// closed is the execution status of workflows that are no longer running; a workflow with answers
	// and no entry here is Running.
	closed map[string]enumspb.WorkflowExecutionStatus
	// after replaces an answer once it has been given n times (a workflow finishing a transition).
	after map[string]struct {
		n int
		v any
	}
}

type jsonValue []byte

func (v jsonValue) HasValue() bool    { return true }
func (v jsonValue) Get(ptr any) error { return json.Unmarshal(v, ptr) }

func (f *fakeTemporal) QueryWorkflow(ctx context.Context, id, runID, query string, args ...interface{}) (converter.EncodedValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := id + "|" + query
	f.calls[k]++
	if a, ok := f.after[k]; ok && f.calls[k] > a.n {
		f.answers[k] = a.v
		delete(f.after, k)
	}
	v, ok := f.answers[k]
	if !ok {
		return nil, serviceerror.NewNotFound("workflow not found for ID: " + id)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonValue(b), nil
}

func (f *fakeTemporal) DescribeWorkflowExecution(ctx context.Context, id, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.closed[id]
	if !ok {
		for k := range f.answers {
			if strings.HasPrefix(k, id+"|") {
				st, ok = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, true
			}
		}
	}
	if !ok {
		return nil, serviceerror.NewNotFound("workflow not found for ID: " + id)
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
		Execution: &commonpb.WorkflowExecution{WorkflowId: id}, Status: st}}, nil
}

type world struct {
	t     *testing.T
	ctx   context.Context
	cat   *catalog.Catalog
	dbURL string
	store *artifact.Dir
	tmp   *fakeTemporal
	files map[int]artifact.FileEntry // v -> its one blob
}

// newWorld builds a consistent registry: model fraud with v1 Archived and v2 in Production, as the
// workflows would have left it.
func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	w := &world{t: t, ctx: ctx, dbURL: "sqlite://" + filepath.Join(dir, "catalog.db"), files: map[int]artifact.FileEntry{},
		tmp: &fakeTemporal{answers: map[string]any{}, calls: map[string]int{}, closed: map[string]enumspb.WorkflowExecutionStatus{}, after: map[string]struct {
			n int
			v any
		}{}}}
	var err error
	if w.cat, err = catalog.Open(ctx, w.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cat.Close() })
	if err := w.cat.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if w.store, err = artifact.NewDir(filepath.Join(dir, "artifacts")); err != nil {
		t.Fatal(err)
	}

	states := map[int]*workflows.VersionState{}
	for v := 1; v <= 2; v++ {
		must(t, w.cat.CreateVersion(ctx, catalog.Version{Model: "fraud", Version: v, IdempotencyKey: fmt.Sprint("k", v),
			WorkflowID: workflows.VersionWorkflowID("fraud", v), Seq: 1}))
		src := filepath.Join(dir, fmt.Sprint("model-", v, ".bin"))
		must(t, os.WriteFile(src, []byte(fmt.Sprint("weights-", v)), 0o644))
		e, err := w.store.PutFile(ctx, src, nil)
		must(t, err)
		e.Path = "model.bin"
		w.files[v] = e
		uri, digest, err := w.store.PutManifest(ctx, artifact.Manifest{SchemaVersion: 1, Model: "fraud", Version: v,
			Files: []artifact.FileEntry{e}, CreatedAt: time.Now().UTC()})
		must(t, err)
		must(t, w.cat.SetManifest(ctx, "fraud", v, uri, digest))
		states[v] = &workflows.VersionState{Stage: catalog.StageRegistered, Seq: 1, ManifestURI: uri, ManifestDigest: digest}
	}
	move := func(v int, to string) {
		st := states[v]
		st.Seq++
		_, err := w.cat.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: v, Seq: st.Seq, From: st.Stage, To: to, At: time.Now()})
		must(t, err)
		st.Stage = to
	}
	for _, to := range []string{catalog.StageValidating, catalog.StagePendingApproval, catalog.StageApproved, catalog.StageProduction} {
		move(1, to)
	}
	p1 := 1
	_, err = w.cat.SetProduction(ctx, "fraud", &p1, 1)
	must(t, err)
	for _, to := range []string{catalog.StageValidating, catalog.StagePendingApproval, catalog.StageApproved} {
		move(2, to)
	}
	move(1, catalog.StageArchived)
	must(t, w.store.SetArchived(ctx, "fraud", 1, true))
	move(2, catalog.StageProduction)
	p2 := 2
	_, err = w.cat.SetProduction(ctx, "fraud", &p2, 2)
	must(t, err)

	for v, st := range states {
		w.setVersion(v, *st)
	}
	w.tmp.answers["model/fraud|"+workflows.QueryProduction] = workflows.ProductionResult{SchemaVersion: 1, Model: "fraud", Version: 2, Previous: 1}
	w.tmp.answers["model/fraud|"+workflows.QueryDescribe] = workflows.ModelDescription{SchemaVersion: 1, Model: "fraud",
		State: workflows.ModelState{NextVersion: 3, Production: 2, Archived: []int{1}, Seq: 2}}
	return w
}

func (w *world) setVersion(v int, st workflows.VersionState) {
	w.tmp.answers[workflows.VersionWorkflowID("fraud", v)+"|"+workflows.QueryDescribe] = workflows.VersionDescription{
		SchemaVersion: 1, Model: "fraud", Version: v, State: st}
}

func (w *world) versionState(v int) workflows.VersionState {
	return w.tmp.answers[workflows.VersionWorkflowID("fraud", v)+"|"+workflows.QueryDescribe].(workflows.VersionDescription).State
}

func (w *world) run(verify bool) check.Report {
	w.t.Helper()
	rep, err := check.Run(w.ctx, check.Deps{Catalog: w.cat, Store: w.store, Temporal: w.tmp, Verify: verify, RecheckDelay: 10 * time.Millisecond})
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

// sql runs raw SQL on the catalog behind the registry's back.
func (w *world) sql(q string, args ...any) {
	w.t.Helper()
	must(w.t, rawExec(w.ctx, w.dbURL, q, args...))
}

func rawExec(ctx context.Context, dbURL, q string, args ...any) error {
	db, err := sql.Open("sqlite", strings.TrimPrefix(dbURL, "sqlite://"))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, q, args...)
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func kinds(rep check.Report) []string {
	var out []string
	for _, f := range rep.Findings {
		out = append(out, fmt.Sprintf("v%d:%s", f.Version, f.Kind))
	}
	return out
}

func expect(t *testing.T, rep check.Report, want ...string) {
	t.Helper()
	got := kinds(rep)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		var lines []string
		for _, f := range rep.Findings {
			lines = append(lines, f.String())
		}
		t.Fatalf("findings %v, want %v:\n%s", got, want, strings.Join(lines, "\n"))
	}
}

func TestConsistentRegistryHasNoFindings(t *testing.T) {
	w := newWorld(t)
	rep := w.run(true)
	expect(t, rep)
	if rep.Models != 1 || rep.Versions != 2 || rep.Summary() != "checked 1 model, 2 versions: 0 findings" {
		t.Fatalf("report %+v: %s", rep, rep.Summary())
	}
	b, _ := json.Marshal(rep)
	if string(b) != `{"models":1,"versions":2,"findings":[]}` {
		t.Fatalf("json %s", b)
	}
	// A model with a policy and no versions has no workflow yet, and that is fine.
	must(t, w.cat.SetPolicy(w.ctx, "churn", catalog.Policy{}))
	if rep := w.run(false); len(rep.Findings) != 0 || rep.Models != 2 {
		t.Fatalf("with an empty model: %+v", rep)
	}
}

func TestFindings(t *testing.T) {
	cases := []struct {
		name    string
		verify  bool
		breakIt func(w *world)
		want    []string
		detail  string
	}{
		{"workflow stage differs", false, func(w *world) {
			st := w.versionState(2)
			st.Stage = catalog.StageApproved
			w.setVersion(2, st)
		}, []string{"v2:stage"}, "fraud v2: catalog stage Production, workflow stage Approved"},
		{"workflow manifest differs", false, func(w *world) {
			st := w.versionState(1)
			st.ManifestURI, st.ManifestDigest = "", ""
			w.setVersion(1, st)
		}, []string{"v1:manifest-uri", "v1:manifest-digest"}, "workflow manifest digest none"},
		{"version workflow gone", false, func(w *world) {
			delete(w.tmp.answers, "model/fraud/v1|describe")
		}, []string{"v1:workflow-not-found"}, "fraud v1: workflow model/fraud/v1 not found"},
		{"model workflow gone", false, func(w *world) {
			delete(w.tmp.answers, "model/fraud|describe")
			delete(w.tmp.answers, "model/fraud|production")
		}, []string{"v0:workflow-not-found"}, "fraud: workflow model/fraud not found"},
		{"version workflow terminated", false, func(w *world) {
			w.tmp.closed["model/fraud/v1"] = enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED
		}, []string{"v1:workflow-closed"}, "fraud v1: workflow model/fraud/v1 is Terminated, but its stage Archived needs it running"},
		{"version workflow failed, catalog and workflow disagreeing", false, func(w *world) {
			w.tmp.closed["model/fraud/v2"] = enumspb.WORKFLOW_EXECUTION_STATUS_FAILED
			st := w.versionState(2)
			st.Stage = catalog.StageRejected
			w.setVersion(2, st)
		}, []string{"v2:workflow-closed", "v2:stage"}, "is Failed, but its stage Production (workflow stage Rejected) needs it running"},
		{"model workflow terminated", false, func(w *world) {
			w.tmp.closed["model/fraud"] = enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED
		}, []string{"v0:workflow-closed"}, "fraud: workflow model/fraud is Terminated; a model's workflow must always be running"},
		{"model workflow completed", false, func(w *world) {
			w.tmp.closed["model/fraud"] = enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
		}, []string{"v0:workflow-closed"}, "is Completed"},
		{"blob deleted", false, func(w *world) {
			must(t, os.Remove(filepath.Join(w.store.Root(), "blobs", "sha256", w.files[1].SHA256[:2], w.files[1].SHA256)))
		}, []string{"v1:blob-missing"}, "blob of model.bin"},
		{"blob truncated", false, func(w *world) {
			p := filepath.Join(w.store.Root(), "blobs", "sha256", w.files[2].SHA256[:2], w.files[2].SHA256)
			must(t, os.Chmod(p, 0o644))
			must(t, os.WriteFile(p, []byte("w"), 0o644))
		}, []string{"v2:blob-size"}, "is 1 bytes, the manifest says 9"},
		{"blob corrupt, same size, found by --verify", true, func(w *world) {
			p := filepath.Join(w.store.Root(), "blobs", "sha256", w.files[2].SHA256[:2], w.files[2].SHA256)
			must(t, os.Chmod(p, 0o644))
			must(t, os.WriteFile(p, []byte("weights-X"), 0o644))
		}, []string{"v2:blob-corrupt"}, "does not hash"},
		{"manifest deleted", false, func(w *world) {
			must(t, os.Remove(filepath.Join(w.store.Root(), "manifests", "fraud", "v2", "manifest.json")))
		}, []string{"v2:manifest-missing"}, "is not in the artifact store"},
		{"catalog digest rewritten", false, func(w *world) {
			w.sql(`UPDATE versions SET manifest_digest = 'sha256:0000' WHERE model = 'fraud' AND version = 2`)
		}, []string{"v2:manifest-digest", "v2:manifest-mismatch"}, "stored manifest digest sha256:"},
		{"archived mark removed", false, func(w *world) {
			must(t, w.store.SetArchived(w.ctx, "fraud", 1, false))
		}, []string{"v1:archived-mark"}, "fraud v1: catalog stage Archived, but the artifact store has no archived mark"},
		{"archived mark on the production version", false, func(w *world) {
			must(t, w.store.SetArchived(w.ctx, "fraud", 2, true))
		}, []string{"v2:archived-mark"}, "has an archived mark"},
		{"catalog stage rewritten", false, func(w *world) {
			w.sql(`UPDATE versions SET stage = 'Approved' WHERE model = 'fraud' AND version = 1`)
		}, []string{"v1:stage", "v1:archived-mark", "v1:audit-end"}, "fraud v1: catalog stage Approved, workflow stage Archived"},
		{"production pointer at the archived version", false, func(w *world) {
			w.sql(`UPDATE models SET production_version = 1 WHERE name = 'fraud'`)
		}, []string{"v1:production-pointer", "v0:production-workflow"}, "the production pointer names v1, whose catalog stage is Archived"},
		{"production pointer cleared", false, func(w *world) {
			w.sql(`UPDATE models SET production_version = NULL WHERE name = 'fraud'`)
		}, []string{"v2:production-pointer", "v0:production-workflow"}, "catalog production pointer none, model workflow production v2"},
		{"two versions in production", false, func(w *world) {
			w.sql(`DROP INDEX versions_one_production`)
			w.sql(`UPDATE versions SET stage = 'Production' WHERE model = 'fraud' AND version = 1`)
		}, []string{"v0:multiple-production", "v1:stage", "v1:archived-mark", "v1:audit-end"}, "v1, v2 all have catalog stage Production"},
		{"model workflow's next version ahead", false, func(w *world) {
			w.tmp.answers["model/fraud|describe"] = workflows.ModelDescription{SchemaVersion: 1, Model: "fraud", State: workflows.ModelState{NextVersion: 4}}
		}, []string{"v0:next-version"}, "next version is 4, catalog's highest version is v2 (want next 3)"},
		{"a gap in version numbers", false, func(w *world) {
			must(t, w.cat.CreateVersion(w.ctx, catalog.Version{Model: "fraud", Version: 4, IdempotencyKey: "k4", Seq: 1}))
			w.setVersion(4, workflows.VersionState{Stage: catalog.StageRegistered, Seq: 1})
			w.tmp.answers["model/fraud|describe"] = workflows.ModelDescription{SchemaVersion: 1, Model: "fraud", State: workflows.ModelState{NextVersion: 5}}
		}, []string{"v3:version-gap"}, "fraud v3: missing from the catalog, which has versions up to v4"},
		{"audit trail broken", false, func(w *world) {
			_, err := w.cat.RecordTransition(w.ctx, catalog.Transition{Model: "fraud", Version: 2, Seq: 6, From: catalog.StageApproved, To: catalog.StageProduction, At: time.Now()})
			must(t, err)
		}, []string{"v2:audit-chain"}, "Approved -> Production (seq 6) does not follow the previous one, which ended in Production (seq 5)"},
		{"audit trail ends elsewhere", false, func(w *world) {
			w.sql(`DELETE FROM transitions WHERE model = 'fraud' AND version = 2 AND seq = 5`)
		}, []string{"v2:audit-end"}, "audit trail ends in Approved (seq 4), catalog stage Production"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			c.breakIt(w)
			rep := w.run(c.verify)
			expect(t, rep, c.want...)
			var all []string
			for _, f := range rep.Findings {
				all = append(all, f.String())
			}
			if !strings.Contains(strings.Join(all, "\n"), c.detail) {
				t.Fatalf("no finding says %q:\n%s", c.detail, strings.Join(all, "\n"))
			}
		})
	}
}

// TestTransientDisagreementIsNotReported: a version caught between its catalog write and its workflow's
// state change agrees again when re-checked, and is not reported; one that still disagrees is.
func TestTransientDisagreementIsNotReported(t *testing.T) {
	w := newWorld(t)
	st := w.versionState(2)
	behind := st
	behind.Stage = catalog.StageApproved
	w.setVersion(2, behind)
	k := "model/fraud/v2|describe"
	w.tmp.after[k] = struct {
		n int
		v any
	}{1, workflows.VersionDescription{SchemaVersion: 1, Model: "fraud", Version: 2, State: st}}
	expect(t, w.run(false))
	if w.tmp.calls[k] != 2 {
		t.Fatalf("v2 was queried %d times, want 2 (checked, then re-checked)", w.tmp.calls[k])
	}
	if w.tmp.calls["model/fraud/v1|describe"] != 1 {
		t.Fatalf("v1, which agreed, was queried %d times", w.tmp.calls["model/fraud/v1|describe"])
	}

	// Without a re-check the same moment is a finding.
	w = newWorld(t)
	st = w.versionState(2)
	behind = st
	behind.Stage = catalog.StageApproved
	w.setVersion(2, behind)
	w.tmp.after[k] = struct {
		n int
		v any
	}{1, workflows.VersionDescription{SchemaVersion: 1, Model: "fraud", Version: 2, State: st}}
	rep, err := check.Run(w.ctx, check.Deps{Catalog: w.cat, Store: w.store, Temporal: w.tmp, RecheckDelay: -1})
	must(t, err)
	expect(t, rep, "v2:stage")
}

func TestOneModel(t *testing.T) {
	w := newWorld(t)
	must(t, w.cat.CreateVersion(w.ctx, catalog.Version{Model: "churn", Version: 1, IdempotencyKey: "c1", Seq: 1}))
	// churn has no workflows at all: checking every model finds that, checking fraud alone does not.
	rep := w.run(false)
	expect(t, rep, "v1:workflow-not-found", "v0:workflow-not-found")
	if rep.Findings[0].Model != "churn" || rep.Models != 2 || rep.Versions != 3 {
		t.Fatalf("report %+v", rep)
	}
	rep, err := check.Run(w.ctx, check.Deps{Catalog: w.cat, Store: w.store, Temporal: w.tmp, Model: "fraud", RecheckDelay: -1})
	must(t, err)
	expect(t, rep)
	if rep.Models != 1 || rep.Versions != 2 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := check.Run(w.ctx, check.Deps{Catalog: w.cat, Store: w.store, Temporal: w.tmp, Model: "ghost"}); err == nil {
		t.Fatal("an unknown model is an error")
	}
}
