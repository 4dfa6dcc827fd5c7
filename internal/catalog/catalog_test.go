package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunWithServers(m)) }

// backends are every database the catalog runs on; each gets the whole contract suite, on a fresh
// database per case.
var backends = []struct {
	name    string
	dialect string
	url     func(t *testing.T) string
}{
	{"postgres", catalog.DialectPostgres, func(t *testing.T) string { return testenv.Postgres(t) }},
	{"sqlite", catalog.DialectSQLite, func(t *testing.T) string {
		return "sqlite://" + filepath.Join(t.TempDir(), "catalog.db") // absolute: sqlite:///tmp/…
	}},
}

// contract is what every backend must do identically.
var contract = []struct {
	name string
	run  func(t *testing.T, url string)
}{
	{"Migrate", testMigrate},
	{"Models", testModels},
	{"Policy", testPolicy},
	{"CreateVersion", testCreateVersion},
	{"NonFiniteRejected", testNonFiniteRejected},
	{"Fencing", testFencing},
	{"TransitionRecordedOnce", testTransitionRecordedOnce},
	{"SecondProduction", testSecondProduction},
	{"Manifest", testManifest},
	{"SetProduction", testSetProduction},
	{"Requests", testRequests},
	{"SetProductionPromoting", testSetProductionPromoting},
	{"ListsAndOrder", testListsAndOrder},
	{"Concurrency", testConcurrency},
	{"PolicyValidation", testPolicyValidation},
	{"Decisions", testDecisions},
	{"ProductionAt", testProductionAt},
	{"MigrateFrom00001", testMigrateFrom00001},
	{"Listing", testListing},
}

func TestContract(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					url := b.url(t)
					c.run(t, url)
					if t.Failed() {
						return
					}
					// Every case ends by checking it ran on the backend it claims to.
					if got := open(t, url).Dialect(); got != b.dialect {
						t.Errorf("Dialect() = %q, want %q", got, b.dialect)
					}
				})
			}
		})
	}
}

func TestOpenRejectsBadURLs(t *testing.T) {
	for _, url := range []string{"", "mysql://localhost/db", "sqlite://", "sqlite:///", "sqlite:///tmp/a?b.db", "/tmp/x.db"} {
		if c, err := catalog.Open(context.Background(), url); err == nil {
			c.Close()
			t.Errorf("Open(%q) succeeded, want an error", url)
		}
	}
}

func TestOpenRelativeSQLitePath(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := catalog.Open(context.Background(), "sqlite://rel.db")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("rel.db"); err != nil {
		t.Fatalf("sqlite://rel.db did not create ./rel.db: %v", err)
	}
}

// open returns a migrated catalog on url, closed when t ends.
func open(t *testing.T, url string) *catalog.Catalog {
	t.Helper()
	ctx := context.Background()
	c, err := catalog.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func version(model string, n int, key string) catalog.Version {
	return catalog.Version{
		Model:          model,
		Version:        n,
		Stage:          catalog.StageRegistered,
		IdempotencyKey: key,
		WorkflowID:     fmt.Sprintf("model/%s/v%d", model, n),
		Metrics:        map[string]float64{"accuracy": 0.9 + float64(n)/100},
		Params:         map[string]string{"lr": "0.01"},
		SourceRun:      "run-" + key,
		RegisteredBy:   "trainer",
		Seq:            1,
	}
}

func create(t *testing.T, c *catalog.Catalog, model string, n int) catalog.Version {
	t.Helper()
	v := version(model, n, fmt.Sprintf("key-%d", n))
	if err := c.CreateVersion(context.Background(), v); err != nil {
		t.Fatalf("CreateVersion(%s v%d): %v", model, n, err)
	}
	return v
}

func getVersion(t *testing.T, c *catalog.Catalog, model string, n int) catalog.Version {
	t.Helper()
	v, err := c.GetVersion(context.Background(), model, n)
	if err != nil {
		t.Fatalf("GetVersion(%s v%d): %v", model, n, err)
	}
	return v
}

func transitions(t *testing.T, c *catalog.Catalog, model string, n int) []catalog.Transition {
	t.Helper()
	ts, err := c.Transitions(context.Background(), model, n)
	if err != nil {
		t.Fatalf("Transitions(%s, %d): %v", model, n, err)
	}
	return ts
}

// seqs summarizes an audit trail as "v<version>/<seq>:<from>><to>" items, which is what most
// assertions are about.
func seqs(ts []catalog.Transition) string {
	var b []string
	for _, tr := range ts {
		b = append(b, fmt.Sprintf("v%d/%d:%s>%s", tr.Version, tr.Seq, tr.From, tr.To))
	}
	return strings.Join(b, " ")
}

func record(t *testing.T, c *catalog.Catalog, tr catalog.Transition) bool {
	t.Helper()
	applied, err := c.RecordTransition(context.Background(), tr)
	if err != nil {
		t.Fatalf("RecordTransition(%+v): %v", tr, err)
	}
	return applied
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func testMigrate(t *testing.T, url string) {
	ctx := context.Background()
	// Workers starting together against a fresh database.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c, err := catalog.Open(ctx, url)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if err := c.Migrate(ctx); err != nil {
				t.Errorf("concurrent Migrate: %v", err)
			}
		})
	}
	wg.Wait()
	c := open(t, url)
	create(t, c, "fraud", 1)
	if err := c.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	// Another process starting against the same, already migrated database.
	c2 := open(t, url)
	if err := c2.Migrate(ctx); err != nil {
		t.Fatalf("Migrate from a second handle: %v", err)
	}
	if v := getVersion(t, c2, "fraud", 1); v.IdempotencyKey != "key-1" {
		t.Fatalf("data lost across migrations: %+v", v)
	}
}

func testModels(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	_, err := c.GetModel(ctx, "fraud")
	wantErr(t, "GetModel of an unknown model", err, catalog.ErrNotFound)
	if err := c.EnsureModel(ctx, "Not A Name"); err == nil {
		t.Fatal("EnsureModel accepted an unsafe name")
	}

	before := time.Now().Add(-time.Second)
	for _, name := range []string{"fraud", "churn", "fraud"} {
		if err := c.EnsureModel(ctx, name); err != nil {
			t.Fatalf("EnsureModel(%s): %v", name, err)
		}
	}
	m, err := c.GetModel(ctx, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "fraud" || m.ProductionVersion != nil || m.Seq != 0 || !reflect.DeepEqual(m.Policy, catalog.Policy{}) {
		t.Errorf("new model = %+v", m)
	}
	if m.CreatedAt.Location() != time.UTC || m.CreatedAt.Before(before) || m.CreatedAt.After(time.Now()) || !m.UpdatedAt.Equal(m.CreatedAt) {
		t.Errorf("timestamps of a new model: created %v, updated %v", m.CreatedAt, m.UpdatedAt)
	}

	ms, err := c.ListModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	if want := []string{"churn", "fraud"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListModels = %v, want %v", got, want)
	}
}

func testPolicy(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	_, err := c.GetPolicy(ctx, "fraud")
	wantErr(t, "GetPolicy of an unknown model", err, catalog.ErrNotFound)

	if err := c.EnsureModel(ctx, "churn"); err != nil {
		t.Fatal(err)
	}
	if p, err := c.GetPolicy(ctx, "churn"); err != nil || !reflect.DeepEqual(p, catalog.Policy{}) {
		t.Fatalf("GetPolicy of a model without one = %+v, %v; want the zero Policy", p, err)
	}

	p := catalog.Policy{
		Thresholds:             []catalog.Threshold{{Metric: "accuracy", Op: ">=", Value: 0.9}},
		RequiredFiles:          []string{"model.onnx"},
		ChampionMetric:         "auc",
		ChampionLowerIsBetter:  true,
		ChampionTolerance:      0.01,
		Webhooks:               []string{"http://deploy.example/hook"},
		ApprovalTimeoutSeconds: 3600,
	}
	// SetPolicy creates the model.
	if err := c.SetPolicy(ctx, "fraud", p); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetPolicy(ctx, "fraud"); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("GetPolicy = %+v, %v; want %+v", got, err, p)
	}
	if m, err := c.GetModel(ctx, "fraud"); err != nil || !reflect.DeepEqual(m.Policy, p) {
		t.Fatalf("GetModel().Policy = %+v, %v; want %+v", m.Policy, err, p)
	}
	// Replacing is idempotent and total.
	p2 := catalog.Policy{RequiredFiles: []string{"weights.bin"}}
	for range 2 {
		if err := c.SetPolicy(ctx, "fraud", p2); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.GetPolicy(ctx, "fraud"); err != nil || !reflect.DeepEqual(got, p2) {
		t.Fatalf("GetPolicy after replace = %+v, %v; want %+v", got, err, p2)
	}
}

func testCreateVersion(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	before := time.Now().Add(-time.Second)
	v := version("fraud", 1, "key-1")
	if err := c.CreateVersion(ctx, v); err != nil {
		t.Fatal(err)
	}
	// The model was created along with its first version.
	if _, err := c.GetModel(ctx, "fraud"); err != nil {
		t.Fatalf("CreateVersion did not create the model: %v", err)
	}
	got := getVersion(t, c, "fraud", 1)
	if got.CreatedAt.Location() != time.UTC || got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now()) {
		t.Errorf("CreatedAt = %v", got.CreatedAt)
	}
	want := v
	want.CreatedAt, want.UpdatedAt = got.CreatedAt, got.CreatedAt
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetVersion =\n%+v\nwant\n%+v", got, want)
	}
	if byKey, err := c.GetVersionByKey(ctx, "fraud", "key-1"); err != nil || !reflect.DeepEqual(byKey, got) {
		t.Fatalf("GetVersionByKey = %+v, %v", byKey, err)
	}
	ts := transitions(t, c, "fraud", 1)
	if len(ts) != 1 {
		t.Fatalf("transitions after registration: %s", seqs(ts))
	}
	if tr := ts[0]; tr.From != "" || tr.To != catalog.StageRegistered || tr.Actor != "trainer" || tr.Reason != "registered" ||
		tr.Seq != 1 || !tr.At.Equal(got.CreatedAt) || tr.At.Location() != time.UTC {
		t.Fatalf("registration transition = %+v", tr)
	}

	// A retry is a no-op success, even after the version has moved on.
	record(t, c, catalog.Transition{Model: "fraud", Version: 1, Seq: 2, From: catalog.StageRegistered, To: catalog.StageValidating})
	for range 3 {
		if err := c.CreateVersion(ctx, v); err != nil {
			t.Fatalf("retried CreateVersion: %v", err)
		}
	}
	if got := getVersion(t, c, "fraud", 1); got.Stage != catalog.StageValidating || got.Seq != 2 {
		t.Fatalf("retried CreateVersion changed the version: %+v", got)
	}

	// The same number under another key, and the same key under another number, contradict what is stored.
	err := c.CreateVersion(ctx, version("fraud", 1, "key-other"))
	wantErr(t, "same version, other key", err, catalog.ErrConflict)
	if !strings.Contains(err.Error(), `"fraud" v1`) {
		t.Errorf("conflict message does not name the version: %v", err)
	}
	err = c.CreateVersion(ctx, version("fraud", 2, "key-1"))
	wantErr(t, "same key, other version", err, catalog.ErrConflict)
	if !strings.Contains(err.Error(), "key-1") {
		t.Errorf("conflict message does not name the key: %v", err)
	}
	if n, err := c.MaxVersion(ctx, "fraud"); err != nil || n != 1 {
		t.Fatalf("MaxVersion after conflicts = %d, %v; want 1", n, err)
	}
	if ts := transitions(t, c, "fraud", 0); len(ts) != 2 {
		t.Fatalf("conflicting CreateVersion wrote transitions: %s", seqs(ts))
	}
	if _, err := c.GetVersionByKey(ctx, "fraud", "key-other"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("GetVersionByKey(key-other) = %v, want ErrNotFound", err)
	}
	_, err = c.GetVersion(ctx, "fraud", 2)
	wantErr(t, "GetVersion of an unknown version", err, catalog.ErrNotFound)

	// Bad input never reaches the database.
	for _, bad := range []catalog.Version{
		{Model: "fraud", Version: 0, IdempotencyKey: "k"},
		{Model: "fraud", Version: 3},
		{Model: "../etc", Version: 3, IdempotencyKey: "k"},
		{Model: "fraud", Version: 3, IdempotencyKey: "k", Stage: "Deployed"},
	} {
		if err := c.CreateVersion(ctx, bad); err == nil || errors.Is(err, catalog.ErrConflict) {
			t.Errorf("CreateVersion(%+v) = %v, want a validation error", bad, err)
		}
	}
	if n, _ := c.MaxVersion(ctx, "fraud"); n != 1 {
		t.Fatalf("invalid CreateVersion wrote a version: MaxVersion = %d", n)
	}
}

func testNonFiniteRejected(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		v := version("fraud", 1, "key-1")
		v.Metrics = map[string]float64{"accuracy": 0.9, "loss": x}
		err := c.CreateVersion(ctx, v)
		if err == nil || !strings.Contains(err.Error(), `"loss"`) {
			t.Fatalf("CreateVersion with loss=%v: %v, want an error naming the metric", x, err)
		}
		err = c.SetPolicy(ctx, "fraud", catalog.Policy{Thresholds: []catalog.Threshold{{Metric: "loss", Op: "<", Value: x}}})
		if err == nil {
			t.Fatalf("SetPolicy with threshold %v succeeded", x)
		}
	}
	// Rejected before writing: not even the model exists.
	_, err := c.GetModel(ctx, "fraud")
	wantErr(t, "GetModel after rejected writes", err, catalog.ErrNotFound)
}

func testFencing(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	create(t, c, "fraud", 1)
	base := time.Now().UTC().Truncate(time.Microsecond)
	t2 := catalog.Transition{Model: "fraud", Version: 1, Seq: 2, From: catalog.StageRegistered, To: catalog.StageValidating,
		Actor: "worker", Reason: "validation started", At: base.Add(2 * time.Second)}
	t3 := catalog.Transition{Model: "fraud", Version: 1, Seq: 3, From: catalog.StageValidating, To: catalog.StagePendingApproval,
		Actor: "worker", Reason: "validation passed", At: base.Add(3 * time.Second)}

	if !record(t, c, t3) {
		t.Fatal("seq 3 over seq 1 was not applied")
	}
	// Seq 2 arrives late (say, a zombie attempt of its activity). The fence keeps the stage at seq 3's;
	// the audit trail still gets seq 2's row, in seq order, exactly once (invariant 4).
	for i := range 3 {
		if record(t, c, t2) {
			t.Fatalf("late seq 2 (attempt %d) was applied", i+1)
		}
		if got := getVersion(t, c, "fraud", 1); got.Stage != catalog.StagePendingApproval || got.Seq != 3 {
			t.Fatalf("late seq 2 overwrote newer state: stage %s seq %d", got.Stage, got.Seq)
		}
	}
	if record(t, c, t3) {
		t.Fatal("repeated seq 3 was applied again")
	}
	ts := transitions(t, c, "fraud", 1)
	if got, want := seqs(ts), "v1/1:>Registered v1/2:Registered>Validating v1/3:Validating>PendingApproval"; got != want {
		t.Fatalf("audit trail = %s\nwant          %s", got, want)
	}
	if !reflect.DeepEqual(ts[1], t2) || !reflect.DeepEqual(ts[2], t3) {
		t.Fatalf("recorded transitions differ from what was sent:\n%+v\n%+v", ts[1:], []catalog.Transition{t2, t3})
	}
	// Equal seq is fenced too, even with different content: the first write of a seq wins.
	if record(t, c, catalog.Transition{Model: "fraud", Version: 1, Seq: 3, To: catalog.StageRejected}) {
		t.Fatal("a second, different seq 3 was applied")
	}
	if got := getVersion(t, c, "fraud", 1); got.Stage != catalog.StagePendingApproval {
		t.Fatalf("a second seq 3 changed the stage to %s", got.Stage)
	}
	if !record(t, c, catalog.Transition{Model: "fraud", Version: 1, Seq: 4, From: catalog.StagePendingApproval, To: catalog.StageApproved}) {
		t.Fatal("seq 4 was not applied")
	}

	_, err := c.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: 9, Seq: 2, To: catalog.StageValidating})
	wantErr(t, "transition of an unknown version", err, catalog.ErrNotFound)
	_, err = c.RecordTransition(ctx, catalog.Transition{Model: "nope", Version: 1, Seq: 2, To: catalog.StageValidating})
	wantErr(t, "transition of an unknown model", err, catalog.ErrNotFound)
	if _, err := c.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: 1, Seq: 9, To: "Deployed"}); err == nil {
		t.Fatal("RecordTransition accepted an unknown stage")
	}
	if ts := transitions(t, c, "fraud", 0); len(ts) != 4 {
		t.Fatalf("failed transitions were recorded: %s", seqs(ts))
	}
}

func testTransitionRecordedOnce(t *testing.T, url string) {
	c := open(t, url)
	create(t, c, "fraud", 1)
	tr := catalog.Transition{Model: "fraud", Version: 1, Seq: 2, From: catalog.StageRegistered, To: catalog.StageValidating, Actor: "worker"}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied int
	)
	for range 10 {
		wg.Go(func() {
			ok, err := c.RecordTransition(context.Background(), tr)
			if err != nil {
				t.Errorf("RecordTransition: %v", err)
			}
			if ok {
				mu.Lock()
				applied++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if record(t, c, tr) {
		applied++
	}
	if applied != 1 {
		t.Fatalf("a transition retried 11 times was applied %d times", applied)
	}
	if got, want := seqs(transitions(t, c, "fraud", 1)), "v1/1:>Registered v1/2:Registered>Validating"; got != want {
		t.Fatalf("audit trail = %s, want %s", got, want)
	}
}

func testSecondProduction(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	create(t, c, "fraud", 1)
	create(t, c, "fraud", 2)
	toProd := func(n int) catalog.Transition {
		return catalog.Transition{Model: "fraud", Version: n, Seq: 2, From: catalog.StageRegistered, To: catalog.StageProduction, Actor: "approver"}
	}
	if !record(t, c, toProd(1)) {
		t.Fatal("v1 to Production was not applied")
	}
	v2before := getVersion(t, c, "fraud", 2)

	applied, err := c.RecordTransition(ctx, toProd(2))
	wantErr(t, "second Production version", err, catalog.ErrConflict)
	if applied {
		t.Error("a refused transition reported applied")
	}
	if !strings.Contains(err.Error(), "v1 is already in Production") || !strings.Contains(err.Error(), `"fraud" v2`) {
		t.Errorf("conflict message does not say who holds Production: %v", err)
	}
	// Nothing was written: both versions' rows and the audit trail are as before.
	if v1 := getVersion(t, c, "fraud", 1); v1.Stage != catalog.StageProduction || v1.Seq != 2 {
		t.Errorf("v1 after the refused promotion: %s seq %d", v1.Stage, v1.Seq)
	}
	if v2 := getVersion(t, c, "fraud", 2); !reflect.DeepEqual(v2, v2before) {
		t.Errorf("v2 changed by a refused promotion:\n%+v\nwas\n%+v", v2, v2before)
	}
	if got, want := seqs(transitions(t, c, "fraud", 2)), "v2/1:>Registered"; got != want {
		t.Errorf("v2's audit trail = %s, want %s", got, want)
	}
	if prod, err := c.ListVersions(ctx, "fraud", catalog.StageProduction); err != nil || len(prod) != 1 || prod[0].Version != 1 {
		t.Errorf("Production versions = %+v, %v", prod, err)
	}

	// A new version cannot be registered straight into Production either.
	v3 := version("fraud", 3, "key-3")
	v3.Stage = catalog.StageProduction
	wantErr(t, "registering into Production", c.CreateVersion(ctx, v3), catalog.ErrConflict)
	_, err = c.GetVersion(ctx, "fraud", 3)
	wantErr(t, "GetVersion of a refused registration", err, catalog.ErrNotFound)

	// Once v1 is archived, the same promotion of v2 (an activity retry) goes through.
	record(t, c, catalog.Transition{Model: "fraud", Version: 1, Seq: 3, From: catalog.StageProduction, To: catalog.StageArchived})
	if !record(t, c, toProd(2)) {
		t.Fatal("v2 to Production after v1 was archived was not applied")
	}
	if prod, err := c.ListVersions(ctx, "fraud", catalog.StageProduction); err != nil || len(prod) != 1 || prod[0].Version != 2 {
		t.Errorf("Production versions = %+v, %v", prod, err)
	}
}

func testManifest(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	wantErr(t, "SetManifest of an unknown version", c.SetManifest(ctx, "fraud", 1, "s3://b/m.json", "sha256:aa"), catalog.ErrNotFound)
	create(t, c, "fraud", 1)
	if err := c.SetManifest(ctx, "fraud", 1, "", ""); err == nil {
		t.Fatal("SetManifest accepted an empty manifest")
	}
	for range 2 {
		if err := c.SetManifest(ctx, "fraud", 1, "s3://b/m.json", "sha256:aa"); err != nil {
			t.Fatalf("SetManifest: %v", err)
		}
	}
	wantErr(t, "another digest", c.SetManifest(ctx, "fraud", 1, "s3://b/m.json", "sha256:bb"), catalog.ErrConflict)
	wantErr(t, "another uri", c.SetManifest(ctx, "fraud", 1, "s3://b/other.json", "sha256:aa"), catalog.ErrConflict)
	if v := getVersion(t, c, "fraud", 1); v.ManifestURI != "s3://b/m.json" || v.ManifestDigest != "sha256:aa" {
		t.Fatalf("manifest = %s %s", v.ManifestURI, v.ManifestDigest)
	}
}

func testSetProduction(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	one, two := 1, 2
	_, err := c.SetProduction(ctx, "fraud", &one, 1)
	wantErr(t, "SetProduction of an unknown model", err, catalog.ErrNotFound)
	create(t, c, "fraud", 1)
	create(t, c, "fraud", 2)
	_, err = c.Production(ctx, "fraud")
	wantErr(t, "Production before any", err, catalog.ErrNotFound)

	nine := 9
	_, err = c.SetProduction(ctx, "fraud", &nine, 1)
	wantErr(t, "SetProduction to an unknown version", err, catalog.ErrNotFound)

	check := func(wantVersion *int, wantSeq int64) {
		t.Helper()
		m, err := c.GetModel(ctx, "fraud")
		if err != nil {
			t.Fatal(err)
		}
		if m.Seq != wantSeq || !reflect.DeepEqual(m.ProductionVersion, wantVersion) {
			t.Fatalf("model: production %v seq %d; want %v seq %d", deref(m.ProductionVersion), m.Seq, deref(wantVersion), wantSeq)
		}
		p, err := c.Production(ctx, "fraud")
		if wantVersion == nil {
			wantErr(t, "Production after clearing", err, catalog.ErrNotFound)
			return
		}
		// The versions here never entered Production: a deployer must not be handed them.
		wantErr(t, "Production of a pointer at a version that is not in Production", err, catalog.ErrInconsistent)
		if !strings.Contains(err.Error(), fmt.Sprintf("names v%d, whose stage is Registered", *wantVersion)) || p.Version != 0 {
			t.Fatalf("Production = v%d, %v; want the inconsistency named", p.Version, err)
		}
	}
	check(nil, 0)

	steps := []struct {
		version *int
		seq     int64
		applied bool
	}{
		{&one, 5, true},
		{&two, 4, false}, // late
		{&one, 5, true},  // a retry whose first answer was lost: the same change, applied again
		{&two, 5, false}, // same seq, different content: the first write wins
		{&two, 6, true},
		{nil, 7, true},
		{nil, 7, true}, // a retry of clearing
		{&one, 7, false},
		{&one, 6, false},
	}
	current, currentSeq := (*int)(nil), int64(0)
	for _, s := range steps {
		applied, err := c.SetProduction(ctx, "fraud", s.version, s.seq)
		if err != nil || applied != s.applied {
			t.Fatalf("SetProduction(%v, %d) = %v, %v; want %v", deref(s.version), s.seq, applied, err, s.applied)
		}
		if applied {
			current, currentSeq = s.version, s.seq
		}
		check(current, currentSeq)
	}
	_, err = c.Production(ctx, "nope")
	wantErr(t, "Production of an unknown model", err, catalog.ErrNotFound)
}

func deref(p *int) any {
	if p == nil {
		return "nil"
	}
	return *p
}

func testListsAndOrder(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	if n, err := c.MaxVersion(ctx, "fraud"); err != nil || n != 0 {
		t.Fatalf("MaxVersion of an unknown model = %d, %v; want 0", n, err)
	}
	if vs, err := c.ListVersions(ctx, "fraud", ""); err != nil || len(vs) != 0 {
		t.Fatalf("ListVersions of an unknown model = %v, %v", vs, err)
	}
	for _, n := range []int{3, 1, 2} {
		create(t, c, "fraud", n)
	}
	create(t, c, "churn", 1)
	base := time.Now().UTC().Add(time.Hour)
	// Interleave the versions' transitions in time; Transitions(model, 0) must follow time, not version.
	record(t, c, catalog.Transition{Model: "fraud", Version: 2, Seq: 2, To: catalog.StageValidating, At: base.Add(1 * time.Second)})
	record(t, c, catalog.Transition{Model: "fraud", Version: 1, Seq: 2, To: catalog.StageValidating, At: base.Add(2 * time.Second)})
	record(t, c, catalog.Transition{Model: "fraud", Version: 2, Seq: 3, To: catalog.StageRejected, At: base.Add(3 * time.Second)})
	// Same instant: ordered by version, then seq.
	record(t, c, catalog.Transition{Model: "fraud", Version: 3, Seq: 2, To: catalog.StageValidating, At: base.Add(4 * time.Second)})
	record(t, c, catalog.Transition{Model: "fraud", Version: 1, Seq: 3, To: catalog.StageRejected, At: base.Add(4 * time.Second)})
	// Sub-second precision must order correctly too (SQLite stores text).
	record(t, c, catalog.Transition{Model: "fraud", Version: 3, Seq: 3, To: catalog.StagePendingApproval, At: base.Add(5*time.Second + 500*time.Millisecond)})
	record(t, c, catalog.Transition{Model: "fraud", Version: 3, Seq: 4, To: catalog.StageApproved, At: base.Add(5*time.Second + 510*time.Millisecond)})
	record(t, c, catalog.Transition{Model: "fraud", Version: 3, Seq: 5, To: catalog.StageProduction, At: base.Add(6 * time.Second)})

	all := transitions(t, c, "fraud", 0)
	var got []string
	for _, tr := range all[3:] { // the three registrations come first, at creation time
		got = append(got, fmt.Sprintf("v%d/%d", tr.Version, tr.Seq))
	}
	if want := "v2/2 v1/2 v2/3 v1/3 v3/2 v3/3 v3/4 v3/5"; strings.Join(got, " ") != want {
		t.Errorf("Transitions(fraud, 0) = %s\nwant                     %s", strings.Join(got, " "), want)
	}
	if got, want := seqs(transitions(t, c, "fraud", 2)), "v2/1:>Registered v2/2:>Validating v2/3:>Rejected"; got != want {
		t.Errorf("Transitions(fraud, 2) = %s, want %s", got, want)
	}
	if len(transitions(t, c, "churn", 0)) != 1 {
		t.Error("Transitions leaked across models")
	}

	list := func(stage string) string {
		vs, err := c.ListVersions(ctx, "fraud", stage)
		if err != nil {
			t.Fatalf("ListVersions(%q): %v", stage, err)
		}
		var b []string
		for _, v := range vs {
			b = append(b, fmt.Sprintf("v%d:%s", v.Version, v.Stage))
		}
		return strings.Join(b, " ")
	}
	if got, want := list(""), "v1:Rejected v2:Rejected v3:Production"; got != want {
		t.Errorf("ListVersions(all) = %s, want %s", got, want)
	}
	if got, want := list(catalog.StageRejected), "v1:Rejected v2:Rejected"; got != want {
		t.Errorf("ListVersions(Rejected) = %s, want %s", got, want)
	}
	if got := list(catalog.StageArchived); got != "" {
		t.Errorf("ListVersions(Archived) = %s, want none", got)
	}
	if _, err := c.ListVersions(ctx, "fraud", "Deployed"); err == nil {
		t.Error("ListVersions accepted an unknown stage")
	}
	if n, err := c.MaxVersion(ctx, "fraud"); err != nil || n != 3 {
		t.Errorf("MaxVersion = %d, %v; want 3", n, err)
	}
	if v, err := c.GetVersionByKey(ctx, "fraud", "key-2"); err != nil || v.Version != 2 {
		t.Errorf("GetVersionByKey(key-2) = v%d, %v", v.Version, err)
	}
	if _, err := c.GetVersionByKey(ctx, "churn", "key-2"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("GetVersionByKey across models = %v, want ErrNotFound", err)
	}
}

// testConcurrency runs 20 goroutines at a time through two handles on the same database (two
// processes, as far as SQLite's locking is concerned): the only errors allowed are the expected
// conflicts, never SQLITE_BUSY or a deadlock.
func testConcurrency(t *testing.T, url string) {
	ctx := context.Background()
	handles := []*catalog.Catalog{open(t, url), open(t, url)}
	const workers = 20
	run := func(f func(i int, c *catalog.Catalog) error) []error {
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() { errs[i] = f(i, handles[i%2]) })
		}
		wg.Wait()
		return errs
	}

	// Registrations: two workers per version number. They agree on the key, except for every third
	// version, where they race with different keys and exactly one must win.
	keyOf := func(i int) string {
		n := i/2 + 1
		if n%3 == 0 && i%2 == 1 {
			return fmt.Sprintf("rival-%d", n)
		}
		return fmt.Sprintf("key-%d", n)
	}
	errs := run(func(i int, c *catalog.Catalog) error {
		return c.CreateVersion(ctx, version("fraud", i/2+1, keyOf(i)))
	})
	for n := 1; n <= workers/2; n++ {
		a, b := errs[2*(n-1)], errs[2*(n-1)+1]
		if n%3 != 0 {
			if a != nil || b != nil {
				t.Errorf("v%d registered twice with one key: %v, %v", n, a, b)
			}
			continue
		}
		if (a == nil) == (b == nil) || !errors.Is(errors.Join(a, b), catalog.ErrConflict) {
			t.Errorf("v%d registered under two keys: want one success and one ErrConflict, got %v, %v", n, a, b)
		}
		winner := keyOf(2 * (n - 1))
		if a != nil {
			winner = keyOf(2*(n-1) + 1)
		}
		if v := getVersion(t, handles[0], "fraud", n); v.IdempotencyKey != winner {
			t.Errorf("v%d stored key %q, but %q won", n, v.IdempotencyKey, winner)
		}
	}
	if vs, err := handles[0].ListVersions(ctx, "fraud", ""); err != nil || len(vs) != workers/2 {
		t.Fatalf("ListVersions after concurrent registration: %d versions, %v", len(vs), err)
	}
	if ts := transitions(t, handles[0], "fraud", 0); len(ts) != workers/2 {
		t.Fatalf("%d registration transitions for %d versions", len(ts), workers/2)
	}

	// Promotions: every version is promoted by two workers at once (an activity and its retry).
	// Exactly one version may win; its retry is fenced; all others conflict.
	errs = run(func(i int, c *catalog.Catalog) error {
		n := i%(workers/2) + 1
		applied, err := c.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: n, Seq: 2,
			From: catalog.StageRegistered, To: catalog.StageProduction})
		if err == nil && !applied {
			return errNotApplied
		}
		return err
	})
	var won, fenced, conflicts int
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, errNotApplied):
			fenced++
		case errors.Is(err, catalog.ErrConflict):
			conflicts++
		default:
			t.Errorf("worker %d: unexpected error %v", i, err)
		}
	}
	if won != 1 || fenced != 1 || conflicts != workers-2 {
		t.Errorf("concurrent promotions: %d applied, %d fenced, %d conflicts; want 1, 1, %d", won, fenced, conflicts, workers-2)
	}
	prod, err := handles[1].ListVersions(ctx, "fraud", catalog.StageProduction)
	if err != nil || len(prod) != 1 {
		t.Fatalf("Production versions after concurrent promotions: %+v, %v", prod, err)
	}
	var toProd int
	for _, tr := range transitions(t, handles[1], "fraud", 0) {
		if tr.To == catalog.StageProduction {
			toProd++
			if tr.Version != prod[0].Version {
				t.Errorf("refused promotion of v%d was recorded", tr.Version)
			}
		}
	}
	if toProd != 1 {
		t.Errorf("%d Production transitions recorded, want 1", toProd)
	}

	// Out-of-order transitions of one version: the highest seq wins, every one is recorded once.
	create(t, handles[0], "seqrace", 1)
	stages := []string{catalog.StageValidating, catalog.StagePendingApproval, catalog.StageApproved}
	errs = run(func(i int, c *catalog.Catalog) error {
		_, err := c.RecordTransition(ctx, catalog.Transition{Model: "seqrace", Version: 1, Seq: int64(i + 2), To: stages[i%3]})
		return err
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent transitions of one version: %v", err)
	}
	if v := getVersion(t, handles[0], "seqrace", 1); v.Seq != workers+1 || v.Stage != stages[(workers-1)%3] {
		t.Errorf("after concurrent transitions: seq %d stage %s; want seq %d stage %s", v.Seq, v.Stage, workers+1, stages[(workers-1)%3])
	}
	if ts := transitions(t, handles[1], "seqrace", 1); len(ts) != workers+1 {
		t.Errorf("%d transitions recorded, want %d", len(ts), workers+1)
	}
}

var errNotApplied = errors.New("not applied")

func testPolicyValidation(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	valid := catalog.Policy{
		RequiredApprovals:       2,
		AllowedApprovers:        []string{"alice", "bob"},
		AllowSelfApproval:       true,
		ReminderIntervalSeconds: 600,
		Validators: []catalog.ExternalValidator{
			{Name: "ci", URL: "https://ci.example/validate", TimeoutSeconds: 600},
			{Name: "load-test_2.v1", URL: "http://127.0.0.1:8080/hook", TimeoutSeconds: 1},
		},
	}
	if err := c.SetPolicy(ctx, "fraud", valid); err != nil {
		t.Fatalf("SetPolicy(valid): %v", err)
	}
	if got, err := c.GetPolicy(ctx, "fraud"); err != nil || !reflect.DeepEqual(got, valid) {
		t.Fatalf("GetPolicy = %+v, %v; want %+v", got, err, valid)
	}
	for _, n := range []int{0, 20} {
		p := valid
		p.RequiredApprovals = n
		if err := c.SetPolicy(ctx, "fraud", p); err != nil {
			t.Errorf("SetPolicy with requiredApprovals %d: %v", n, err)
		}
	}
	if err := c.SetPolicy(ctx, "fraud", valid); err != nil {
		t.Fatal(err)
	}

	validator := func(name, url string, timeout int64) []catalog.ExternalValidator {
		return []catalog.ExternalValidator{{Name: name, URL: url, TimeoutSeconds: timeout}}
	}
	long := strings.Repeat("a", 64)
	cases := []struct {
		name  string
		edit  func(p *catalog.Policy)
		field string // what the error must name
	}{
		{"unknown threshold operator", func(p *catalog.Policy) {
			p.Thresholds = []catalog.Threshold{{Metric: "accuracy", Op: "=>", Value: 0.9}}
		}, "thresholds[0].op"},
		{"threshold without metric", func(p *catalog.Policy) { p.Thresholds = []catalog.Threshold{{Op: ">=", Value: 1}} }, "thresholds[0].metric"},
		{"required file escaping", func(p *catalog.Policy) { p.RequiredFiles = []string{"model.bin", "../x"} }, "requiredFiles[1]"},
		{"webhook not http", func(p *catalog.Policy) { p.Webhooks = []string{"ftp://x/y"} }, "webhooks[0]"},
		{"negative quorum", func(p *catalog.Policy) { p.RequiredApprovals = -1 }, "requiredApprovals"},
		{"quorum above 20", func(p *catalog.Policy) { p.RequiredApprovals = 21 }, "requiredApprovals"},
		{"empty approver", func(p *catalog.Policy) { p.AllowedApprovers = []string{"alice", ""} }, "allowedApprovers[1]"},
		{"blank approver", func(p *catalog.Policy) { p.AllowedApprovers = []string{"  "} }, "allowedApprovers[0]"},
		{"padded approver", func(p *catalog.Policy) { p.AllowedApprovers = []string{"alice "} }, "allowedApprovers[0]"},
		{"duplicate approver", func(p *catalog.Policy) { p.AllowedApprovers = []string{"alice", "bob", "alice"} }, "allowedApprovers[2]"},
		{"negative reminder", func(p *catalog.Policy) { p.ReminderIntervalSeconds = -5 }, "reminderIntervalSeconds"},
		{"empty validator name", func(p *catalog.Policy) { p.Validators = validator("", "https://ci.example", 60) }, "validators[0].name"},
		{"upper-case validator name", func(p *catalog.Policy) { p.Validators = validator("CI", "https://ci.example", 60) }, "validators[0].name"},
		{"validator name starting with '-'", func(p *catalog.Policy) { p.Validators = validator("-ci", "https://ci.example", 60) }, "validators[0].name"},
		{"validator name with '/'", func(p *catalog.Policy) { p.Validators = validator("ci/x", "https://ci.example", 60) }, "validators[0].name"},
		{"validator name of 64", func(p *catalog.Policy) { p.Validators = validator(long, "https://ci.example", 60) }, "validators[0].name"},
		{"duplicate validator name", func(p *catalog.Policy) {
			p.Validators = append(validator("ci", "https://a.example", 60), validator("ci", "https://b.example", 60)...)
		}, "validators[1].name"},
		{"ftp validator", func(p *catalog.Policy) { p.Validators = validator("ci", "ftp://ci.example/x", 60) }, "validators[0] (ci).url"},
		{"relative validator URL", func(p *catalog.Policy) { p.Validators = validator("ci", "/validate", 60) }, "validators[0] (ci).url"},
		{"validator URL without host", func(p *catalog.Policy) { p.Validators = validator("ci", "https:///validate", 60) }, "validators[0] (ci).url"},
		{"empty validator URL", func(p *catalog.Policy) { p.Validators = validator("ci", "", 60) }, "validators[0] (ci).url"},
		{"zero validator timeout", func(p *catalog.Policy) { p.Validators = validator("ci", "https://ci.example", 0) }, "validators[0] (ci).timeoutSeconds"},
		{"negative validator timeout", func(p *catalog.Policy) { p.Validators = validator("ci", "https://ci.example", -1) }, "validators[0] (ci).timeoutSeconds"},
		{"NaN threshold", func(p *catalog.Policy) {
			p.Thresholds = []catalog.Threshold{{Metric: "auc", Op: ">=", Value: math.NaN()}}
		}, `"auc"`},
		{"infinite tolerance", func(p *catalog.Policy) { p.ChampionTolerance = math.Inf(1) }, "championTolerance"},
	}
	for _, tc := range cases {
		p := valid
		p.AllowedApprovers = slices.Clone(valid.AllowedApprovers)
		p.Validators = slices.Clone(valid.Validators)
		tc.edit(&p)
		err := c.SetPolicy(ctx, "fraud", p)
		if err == nil {
			t.Errorf("%s: SetPolicy succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), `"fraud"`) {
			t.Errorf("%s: error %q does not name the field %s and the model", tc.name, err, tc.field)
		}
		if err := catalog.ValidatePolicy(p); err == nil {
			t.Errorf("%s: ValidatePolicy accepted it", tc.name)
		}
	}
	// Nothing refused was written.
	if got, err := c.GetPolicy(ctx, "fraud"); err != nil || !reflect.DeepEqual(got, valid) {
		t.Fatalf("GetPolicy after refused policies = %+v, %v; want %+v", got, err, valid)
	}
	// Refused before writing: a refused policy does not create the model either.
	err := c.SetPolicy(ctx, "churn", catalog.Policy{RequiredApprovals: 99})
	if err == nil {
		t.Fatal("SetPolicy(churn, requiredApprovals 99) succeeded")
	}
	_, err = c.GetModel(ctx, "churn")
	wantErr(t, "GetModel after a refused SetPolicy", err, catalog.ErrNotFound)
}

// decisionIDs summarizes decisions as "v<version>/<id>" items.
func decisionIDs(ds []catalog.Decision) string {
	var b []string
	for _, d := range ds {
		b = append(b, fmt.Sprintf("v%d/%s", d.Version, d.ID))
	}
	return strings.Join(b, " ")
}

func decisions(t *testing.T, c *catalog.Catalog, model string, n int) []catalog.Decision {
	t.Helper()
	ds, err := c.Decisions(context.Background(), model, n)
	if err != nil {
		t.Fatalf("Decisions(%s, %d): %v", model, n, err)
	}
	return ds
}

func testDecisions(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	create(t, c, "fraud", 1)
	create(t, c, "fraud", 2)
	create(t, c, "churn", 1)
	if ds := decisions(t, c, "fraud", 0); len(ds) != 0 {
		t.Fatalf("Decisions before any = %+v", ds)
	}

	base := time.Now().UTC().Truncate(time.Microsecond).Add(time.Hour)
	first := catalog.Decision{Model: "fraud", Version: 1, ID: "upd-1", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate,
		Approver: "alice", Comment: "looks good", Digest: "sha256:aa", Accepted: true, At: base.Add(2 * time.Second)}
	for range 3 {
		if err := c.RecordDecision(ctx, first); err != nil {
			t.Fatalf("RecordDecision: %v", err)
		}
	}
	// A retry with the same id is a no-op even if its content differs: the first write wins.
	retry := first
	retry.Kind, retry.Accepted, retry.Reason, retry.At = catalog.DecisionReject, false, "changed my mind", base.Add(time.Hour)
	if err := c.RecordDecision(ctx, retry); err != nil {
		t.Fatalf("RecordDecision retry with other content: %v", err)
	}
	ds := decisions(t, c, "fraud", 1)
	if len(ds) != 1 || !reflect.DeepEqual(ds[0], first) {
		t.Fatalf("Decisions after retries = %+v\nwant [%+v]", ds, first)
	}
	if ds[0].At.Location() != time.UTC {
		t.Errorf("decision time not in UTC: %v", ds[0].At)
	}

	// The same id under another version is another decision.
	others := []catalog.Decision{
		{Model: "fraud", Version: 2, ID: "upd-1", Kind: catalog.DecisionVerdict, Via: catalog.ViaSignal, Approver: "ci",
			Accepted: false, Reason: "load test failed", At: base.Add(1 * time.Second)},
		// Same instant as first: ordered by version, then id.
		{Model: "fraud", Version: 2, ID: "sig-b", Kind: catalog.DecisionReject, Via: catalog.ViaSignal, Approver: "bob",
			Accepted: true, At: base.Add(2 * time.Second)},
		{Model: "fraud", Version: 2, ID: "sig-a", Kind: catalog.DecisionApprove, Via: catalog.ViaSignal, Approver: "mallory",
			Accepted: false, Reason: "not an allowed approver", At: base.Add(2 * time.Second)},
		// Sub-second precision orders too.
		{Model: "fraud", Version: 1, ID: "upd-0", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate, Approver: "bob",
			Accepted: true, At: base.Add(1500 * time.Millisecond)},
		{Model: "churn", Version: 1, ID: "upd-1", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate, Approver: "alice",
			Accepted: true, At: base},
	}
	for _, d := range others {
		if err := c.RecordDecision(ctx, d); err != nil {
			t.Fatalf("RecordDecision(%+v): %v", d, err)
		}
	}
	if got, want := decisionIDs(decisions(t, c, "fraud", 0)), "v2/upd-1 v1/upd-0 v1/upd-1 v2/sig-a v2/sig-b"; got != want {
		t.Errorf("Decisions(fraud, 0) = %s\nwant                  %s", got, want)
	}
	if got, want := decisionIDs(decisions(t, c, "fraud", 2)), "v2/upd-1 v2/sig-a v2/sig-b"; got != want {
		t.Errorf("Decisions(fraud, 2) = %s, want %s", got, want)
	}
	if got, want := decisionIDs(decisions(t, c, "fraud", 1)), "v1/upd-0 v1/upd-1"; got != want {
		t.Errorf("Decisions(fraud, 1) = %s, want %s", got, want)
	}
	if got := decisions(t, c, "fraud", 2)[0]; !reflect.DeepEqual(got, others[0]) {
		t.Errorf("refused verdict read back as %+v, want %+v", got, others[0])
	}
	if got, want := decisionIDs(decisions(t, c, "churn", 0)), "v1/upd-1"; got != want {
		t.Errorf("Decisions(churn, 0) = %s, want %s", got, want)
	}
	if ds := decisions(t, c, "nope", 0); len(ds) != 0 {
		t.Errorf("Decisions of an unknown model = %+v", ds)
	}

	// A zero At is recorded as now.
	before := time.Now().Add(-time.Second)
	if err := c.RecordDecision(ctx, catalog.Decision{Model: "churn", Version: 1, ID: "now", Kind: catalog.DecisionReject, Via: catalog.ViaSignal}); err != nil {
		t.Fatal(err)
	}
	ds = decisions(t, c, "churn", 1)
	if got := ds[0]; got.ID != "now" || got.At.Before(before) || got.At.After(time.Now()) || got.At.Location() != time.UTC {
		t.Errorf("decision without a time: %+v (of %s)", got, decisionIDs(ds))
	}

	// Unknown versions and models.
	err := c.RecordDecision(ctx, catalog.Decision{Model: "fraud", Version: 9, ID: "x", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate})
	wantErr(t, "decision on an unknown version", err, catalog.ErrNotFound)
	if !strings.Contains(err.Error(), `"fraud" v9`) {
		t.Errorf("ErrNotFound does not name the version: %v", err)
	}
	err = c.RecordDecision(ctx, catalog.Decision{Model: "nope", Version: 1, ID: "x", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate})
	wantErr(t, "decision on an unknown model", err, catalog.ErrNotFound)

	// Bad input is refused, naming what is wrong.
	for _, bad := range []struct {
		d    catalog.Decision
		want string
	}{
		{catalog.Decision{Model: "fraud", Version: 1, ID: "b1", Kind: "approved", Via: catalog.ViaUpdate}, `kind "approved"`},
		{catalog.Decision{Model: "fraud", Version: 1, ID: "b2", Kind: "", Via: catalog.ViaUpdate}, `kind ""`},
		{catalog.Decision{Model: "fraud", Version: 1, ID: "b3", Kind: catalog.DecisionApprove, Via: "email"}, `via "email"`},
		{catalog.Decision{Model: "fraud", Version: 1, ID: "", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate}, "id is empty"},
	} {
		err := c.RecordDecision(ctx, bad.d)
		if err == nil || errors.Is(err, catalog.ErrNotFound) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("RecordDecision(%+v) = %v, want an error containing %s", bad.d, err, bad.want)
		}
	}
	if got, want := decisionIDs(decisions(t, c, "fraud", 0)), "v2/upd-1 v1/upd-0 v1/upd-1 v2/sig-a v2/sig-b"; got != want {
		t.Errorf("refused decisions were recorded: %s", got)
	}
}

func productionAt(t *testing.T, c *catalog.Catalog, model string, at time.Time) int {
	t.Helper()
	n, err := c.ProductionAt(context.Background(), model, at)
	if err != nil {
		t.Fatalf("ProductionAt(%s, %v): %v", model, at, err)
	}
	return n
}

func testProductionAt(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	registered := time.Now().UTC()
	create(t, c, "fraud", 1)
	create(t, c, "fraud", 2)
	base := registered.Truncate(time.Microsecond).Add(time.Hour)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	tr := func(n int, seq int64, from, to string, when time.Duration) {
		t.Helper()
		record(t, c, catalog.Transition{Model: "fraud", Version: n, Seq: seq, From: from, To: to, At: at(when)})
	}
	const (
		reg  = catalog.StageRegistered
		appr = catalog.StageApproved
		prod = catalog.StageProduction
		arch = catalog.StageArchived
	)

	if n := productionAt(t, c, "fraud", time.Now().Add(2*time.Hour)); n != 0 {
		t.Fatalf("ProductionAt with no production ever = v%d, want 0", n)
	}
	// Promote v1 at +1s.
	tr(1, 2, reg, appr, 500*time.Millisecond)
	tr(1, 3, appr, prod, 1*time.Second)
	// Promote v2 at +2s: v1 is archived, then v2 enters Production, both at the same instant.
	tr(2, 2, reg, appr, 1500*time.Millisecond)
	tr(1, 4, prod, arch, 2*time.Second)
	tr(2, 3, appr, prod, 2*time.Second)
	// Roll back to v1 at +3s, again at one instant.
	tr(2, 4, prod, arch, 3*time.Second)
	tr(1, 5, arch, prod, 3*time.Second)

	for _, q := range []struct {
		name string
		at   time.Time
		want int
	}{
		{"before registration", registered.Add(-time.Minute), 0},
		{"before any promotion", at(0), 0},
		{"approved, not promoted", at(900 * time.Millisecond), 0},
		{"a microsecond before the first promotion", at(time.Second - time.Microsecond), 0},
		{"at the first promotion", at(time.Second), 1},
		{"between the promotions", at(1500 * time.Millisecond), 1},
		{"a microsecond before the second promotion", at(2*time.Second - time.Microsecond), 1},
		{"at the second promotion (tie)", at(2 * time.Second), 2},
		{"inside the tie's microsecond", at(2*time.Second + 500*time.Nanosecond), 2},
		{"between the promotion and the rollback", at(2500 * time.Millisecond), 2},
		{"at the rollback (tie)", at(3 * time.Second), 1},
		{"after everything", at(time.Hour), 1},
		{"after everything, in another zone", at(time.Hour).In(time.FixedZone("UTC-7", -7*3600)), 1},
		{"the tie, in another zone", at(2 * time.Second).In(time.FixedZone("UTC+5:30", 5*3600+1800)), 2},
	} {
		if got := productionAt(t, c, "fraud", q.at); got != q.want {
			t.Errorf("ProductionAt(%s) = v%d, want v%d", q.name, got, q.want)
		}
	}

	// Promoting v2 and rolling back to v1 at a single instant: only the order the four transitions were
	// recorded in says v1 ends up in production. Neither (at, seq) nor (at, version, seq) does.
	create(t, c, "churn", 1)
	create(t, c, "churn", 2)
	ch := func(n int, seq int64, from, to string, when time.Duration) {
		t.Helper()
		record(t, c, catalog.Transition{Model: "churn", Version: n, Seq: seq, From: from, To: to, At: at(when)})
	}
	ch(1, 2, reg, prod, time.Second)
	ch(2, 7, reg, appr, time.Second)
	ch(1, 3, prod, arch, 2*time.Second)
	ch(2, 8, appr, prod, 2*time.Second)
	ch(2, 9, prod, arch, 2*time.Second)
	ch(1, 4, arch, prod, 2*time.Second)
	if got := productionAt(t, c, "churn", at(2*time.Second)); got != 1 {
		t.Errorf("ProductionAt(churn, promote and roll back at one instant) = v%d, want v1", got)
	}
	if got := productionAt(t, c, "churn", at(1500*time.Millisecond)); got != 1 {
		t.Errorf("ProductionAt(churn, before) = v%d, want v1", got)
	}
	// Archiving the production version leaves none.
	ch(1, 5, prod, arch, 3*time.Second)
	if got := productionAt(t, c, "churn", at(3*time.Second)); got != 0 {
		t.Errorf("ProductionAt(churn, after archiving) = v%d, want 0", got)
	}

	// Two workflows, two clocks: the archiving of v1 is recorded first (the registry's order) but stamped
	// a little later than v2's promotion. v1 leaving Production must not take v2 out with it.
	create(t, c, "skew", 1)
	create(t, c, "skew", 2)
	sk := func(n int, seq int64, from, to string, when time.Duration) {
		t.Helper()
		record(t, c, catalog.Transition{Model: "skew", Version: n, Seq: seq, From: from, To: to, At: at(when)})
	}
	sk(1, 2, reg, prod, time.Second)
	sk(1, 3, prod, arch, 2*time.Second+5*time.Millisecond)
	sk(2, 2, reg, prod, 2*time.Second)
	for _, q := range []struct {
		at   time.Duration
		want int
	}{{2*time.Second - time.Microsecond, 1}, {2 * time.Second, 2}, {2*time.Second + time.Millisecond, 2}, {2*time.Second + 5*time.Millisecond, 2}, {time.Hour, 2}} {
		if got := productionAt(t, c, "skew", at(q.at)); got != q.want {
			t.Errorf("ProductionAt(skew, +%v) = v%d, want v%d", q.at, got, q.want)
		}
	}

	// ProductionAt does not leak across models, and an unknown model is ErrNotFound.
	if err := c.EnsureModel(ctx, "empty"); err != nil {
		t.Fatal(err)
	}
	if got := productionAt(t, c, "empty", at(time.Hour)); got != 0 {
		t.Errorf("ProductionAt(empty) = v%d, want 0", got)
	}
	_, err := c.ProductionAt(ctx, "nope", at(time.Hour))
	wantErr(t, "ProductionAt of an unknown model", err, catalog.ErrNotFound)
	if !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("ErrNotFound does not name the model: %v", err)
	}
}

// testMigrateFrom00001 builds a database the way a build with only the first migration did, fills it
// with the version rows that build wrote and transitions recorded through the catalog, and migrates it forward: the
// trail keeps its rows and their recording order, new rows are recorded after them, and the new table
// works. Then the down migration and the up migration again, on the same data.
func testMigrateFrom00001(t *testing.T, url string) {
	ctx := context.Background()
	c, err := catalog.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.MigrateTo(ctx, 1); err != nil {
		t.Fatalf("MigrateTo(1): %v", err)
	}
	err = c.RecordDecision(ctx, catalog.Decision{Model: "fraud", Version: 1, ID: "x", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate})
	if err == nil {
		t.Fatal("RecordDecision worked before the decisions migration: the test is not starting from 00001")
	}

	for n := 1; n <= 2; n++ {
		if err := c.CreateLegacyVersion(ctx, version("fraud", n, fmt.Sprintf("key-%d", n))); err != nil {
			t.Fatalf("create fraud v%d at 00001: %v", n, err)
		}
	}
	base := time.Now().UTC().Truncate(time.Microsecond).Add(time.Hour)
	tie := base.Add(2 * time.Second)
	rec := func(n int, seq int64, from, to string, at time.Time) {
		t.Helper()
		record(t, c, catalog.Transition{Model: "fraud", Version: n, Seq: seq, From: from, To: to, At: at})
	}
	rec(1, 2, catalog.StageRegistered, catalog.StageProduction, base.Add(time.Second))
	rec(2, 7, catalog.StageRegistered, catalog.StageApproved, base.Add(time.Second))
	// Promote v2 and roll back to v1 at one instant: only the recording order tells the outcome.
	rec(1, 3, catalog.StageProduction, catalog.StageArchived, tie)
	rec(2, 8, catalog.StageApproved, catalog.StageProduction, tie)
	rec(2, 9, catalog.StageProduction, catalog.StageArchived, tie)
	rec(1, 4, catalog.StageArchived, catalog.StageProduction, tie)
	legacy := transitions(t, c, "fraud", 0)

	check := func(when string) {
		t.Helper()
		if got := transitions(t, c, "fraud", 0); !reflect.DeepEqual(got, legacy) {
			t.Fatalf("%s: audit trail changed:\n%s\nwas\n%s", when, seqs(got), seqs(legacy))
		}
		if got := productionAt(t, c, "fraud", tie); got != 1 {
			t.Errorf("%s: ProductionAt(tie) = v%d, want v1: the recording order of the old rows was lost", when, got)
		}
	}
	for i := range 2 {
		if err := c.Migrate(ctx); err != nil {
			t.Fatalf("Migrate #%d over 00001: %v", i+1, err)
		}
		check("after migrating")
	}
	// The rebuilt or extended table still does what the old one did: a retry is recorded once, an
	// unknown version is ErrNotFound, one Production version.
	if record(t, c, catalog.Transition{Model: "fraud", Version: 1, Seq: 4, To: catalog.StageArchived, At: tie}) {
		t.Error("a retried transition was applied after migrating")
	}
	check("after a retried transition")
	_, err = c.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: 9, Seq: 2, To: catalog.StageValidating})
	wantErr(t, "transition of an unknown version after migrating", err, catalog.ErrNotFound)
	_, err = c.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: 2, Seq: 10, From: catalog.StageArchived, To: catalog.StageProduction})
	wantErr(t, "second Production version after migrating", err, catalog.ErrConflict)

	// A transition recorded now, at the same instant, comes after every old one.
	rec(1, 5, catalog.StageProduction, catalog.StageArchived, tie)
	if got := productionAt(t, c, "fraud", tie); got != 0 {
		t.Errorf("ProductionAt(tie) after archiving v1 at the tie = v%d, want 0: new rows do not sort after old ones", got)
	}
	legacy = transitions(t, c, "fraud", 0)
	d := catalog.Decision{Model: "fraud", Version: 2, ID: "upd-1", Kind: catalog.DecisionApprove, Via: catalog.ViaUpdate, Approver: "alice", Accepted: true, At: tie}
	if err := c.RecordDecision(ctx, d); err != nil {
		t.Fatalf("RecordDecision after migrating: %v", err)
	}

	// Down to 00001 and up again keeps the trail and its order (the decisions go with their table).
	if err := c.MigrateDownTo(ctx, 1); err != nil {
		t.Fatalf("MigrateDownTo(1): %v", err)
	}
	if got := transitions(t, c, "fraud", 0); !reflect.DeepEqual(got, legacy) {
		t.Fatalf("down migration changed the audit trail:\n%s\nwas\n%s", seqs(got), seqs(legacy))
	}
	if err := c.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after the down migration: %v", err)
	}
	if got := transitions(t, c, "fraud", 0); !reflect.DeepEqual(got, legacy) {
		t.Fatalf("down and up changed the audit trail:\n%s\nwas\n%s", seqs(got), seqs(legacy))
	}
	if got := productionAt(t, c, "fraud", tie); got != 0 {
		t.Errorf("ProductionAt(tie) after down and up = v%d, want 0", got)
	}
	if ds := decisions(t, c, "fraud", 0); len(ds) != 0 {
		t.Errorf("decisions survived dropping their table: %+v", ds)
	}
	if err := c.RecordDecision(ctx, d); err != nil {
		t.Fatalf("RecordDecision after down and up: %v", err)
	}
	// A handle that migrates the up-to-date database finds nothing to do.
	c2 := open(t, url)
	if ds := decisions(t, c2, "fraud", 0); len(ds) != 1 || !reflect.DeepEqual(ds[0], d) {
		t.Errorf("Decisions from a second handle = %+v, want [%+v]", ds, d)
	}
}

// testRequests: a request is acted on by the handler that claimed it (and its retries), taken over
// only while nothing came of it (with the switch its handler had decided on), and refused to every
// other delivery once it has an outcome; the outcome of a switch is written with the pointer itself,
// and a handler that lost its claim can neither move the pointer nor finish the request.
func testRequests(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	create(t, c, "fraud", 1)
	create(t, c, "fraud", 2)
	claim := func(id, token string) catalog.Claim {
		t.Helper()
		cl, err := c.ClaimRequest(ctx, "fraud", "rollback", id, token)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	if _, err := c.ClaimRequest(ctx, "fraud", "rollback", "", "t"); err == nil {
		t.Fatal("a claim without an id was accepted")
	}
	if cl := claim("u1", "a"); !cl.Mine || cl.TakenOver || cl.Production != 0 {
		t.Fatalf("first claim: %+v", cl)
	}
	if cl := claim("u1", "a"); !cl.Mine || cl.TakenOver {
		t.Fatalf("a retry of the same handler's claim: %+v", cl)
	}
	if err := c.SetRequestTarget(ctx, "fraud", "u1", "a", 2, 1); err != nil {
		t.Fatal(err)
	}
	// Another delivery while nothing came of the first: the first handler was cut off, and the switch
	// it decided on comes with the claim.
	cl := claim("u1", "b")
	if !cl.Mine || !cl.TakenOver || cl.Prior.Target == nil || *cl.Prior.Target != 2 || *cl.Prior.Prior != 1 {
		t.Fatalf("claim of an unfinished request: %+v", cl)
	}
	// The handler that lost its claim can no longer finish it, record a target, or move the pointer.
	wantErr(t, "FinishRequest by a handler that lost its claim", c.FinishRequest(ctx, "fraud", "u1", "a", "refused: stale"), catalog.ErrRequestNotMine)
	wantErr(t, "SetRequestTarget by a handler that lost its claim", c.SetRequestTarget(ctx, "fraud", "u1", "a", 1, 2), catalog.ErrRequestNotMine)
	two := 2
	applied, err := c.SetProductionFinishing(ctx, "fraud", &two, 3, catalog.RequestDone{ID: "u1", Token: "a", Outcome: "late"})
	wantErr(t, "SetProductionFinishing by a handler that lost its claim", err, catalog.ErrRequestNotMine)
	if m, _ := c.GetModel(ctx, "fraud"); applied || m.ProductionVersion != nil || m.Seq != 0 {
		t.Fatalf("a switch of a handler that lost its claim moved the pointer: applied %v, %+v", applied, m)
	}
	if r, err := c.GetRequest(ctx, "fraud", "u1"); err != nil || r.Outcome != nil || r.Token != "b" {
		t.Fatalf("request after the stale writes: %+v %v", r, err)
	}
	applied, err = c.SetProductionFinishing(ctx, "fraud", &two, 3, catalog.RequestDone{ID: "u1", Token: "b", Outcome: "v2 in production, seq 3"})
	if err != nil || !applied {
		t.Fatalf("SetProductionFinishing = %v, %v", applied, err)
	}
	// A retry of the same switch (its first answer lost) applies again and keeps the outcome.
	applied, err = c.SetProductionFinishing(ctx, "fraud", &two, 3, catalog.RequestDone{ID: "u1", Token: "b", Outcome: "retry"})
	if err != nil || !applied {
		t.Fatalf("a retry of SetProductionFinishing = %v, %v", applied, err)
	}
	r, err := c.GetRequest(ctx, "fraud", "u1")
	if err != nil || r.Outcome == nil || *r.Outcome != "v2 in production, seq 3" || r.DoneAt == nil {
		t.Fatalf("request after its switch: %+v %v", r, err)
	}
	// Every other delivery is refused with the outcome, and learns the pointer.
	if err := c.FinishRequest(ctx, "fraud", "u1", "b", "other"); err != nil {
		t.Fatal(err)
	}
	cl = claim("u1", "c")
	if cl.Mine || cl.Prior.Outcome == nil || *cl.Prior.Outcome != "v2 in production, seq 3" || cl.Prior.Name != "rollback" || cl.Production != 2 {
		t.Fatalf("claim of a finished request: %+v", cl)
	}
	wantErr(t, "SetRequestTarget of a finished request", c.SetRequestTarget(ctx, "fraud", "u1", "b", 1, 2), catalog.ErrRequestNotMine)
	// A switch the fence turns away records nothing.
	if cl := claim("u2", "d"); !cl.Mine {
		t.Fatalf("claim of u2: %+v", cl)
	}
	one := 1
	if applied, err := c.SetProductionFinishing(ctx, "fraud", &one, 2, catalog.RequestDone{ID: "u2", Token: "d", Outcome: "v1"}); err != nil || applied {
		t.Fatalf("fenced SetProductionFinishing = %v, %v", applied, err)
	}
	if r, err := c.GetRequest(ctx, "fraud", "u2"); err != nil || r.Outcome != nil {
		t.Fatalf("request after a fenced switch: %+v %v", r, err)
	}
	if err := c.FinishRequest(ctx, "fraud", "u2", "d", "refused: no archived version"); err != nil {
		t.Fatal(err)
	}
	if cl := claim("u2", "e"); cl.Mine || *cl.Prior.Outcome != "refused: no archived version" {
		t.Fatalf("claim of a refused request: %+v", cl)
	}
	// IDs are per model.
	create(t, c, "churn", 1)
	if cl, err := c.ClaimRequest(ctx, "churn", "rollback", "u1", "f"); err != nil || !cl.Mine {
		t.Fatalf("the same id on another model: %+v %v", cl, err)
	}
	_, err = c.GetRequest(ctx, "fraud", "nope")
	wantErr(t, "GetRequest of an unknown id", err, catalog.ErrNotFound)
}

// testSetProductionPromoting: a promotion's pointer write moves the Approved version to Production with
// its audit row in the same transaction; the version's own transition afterwards finds it done (not
// applied, no second row, no fencing error); a version no longer Approved is left as it is; a fenced
// write moves nothing.
func testSetProductionPromoting(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	create(t, c, "fraud", 1)
	create(t, c, "fraud", 2)
	step := func(n int, seq int64, from, to string) {
		t.Helper()
		if _, err := c.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: n, Seq: seq, From: from, To: to, Actor: "w"}); err != nil {
			t.Fatal(err)
		}
	}
	step(1, 2, catalog.StageRegistered, catalog.StageApproved)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	applied, err := c.SetProductionPromoting(ctx, "fraud", 1, 1, catalog.Promoted{Actor: "alice", Reason: "promoted", At: at})
	if err != nil || !applied {
		t.Fatalf("SetProductionPromoting: %v %v", applied, err)
	}
	if v := getVersion(t, c, "fraud", 1); v.Stage != catalog.StageProduction || v.Seq != 3 {
		t.Fatalf("v1 after its promotion: %s seq %d", v.Stage, v.Seq)
	}
	if p, err := c.Production(ctx, "fraud"); err != nil || p.Version != 1 {
		t.Fatalf("production: v%d %v", p.Version, err)
	}
	ts, err := c.Transitions(ctx, "fraud", 1)
	if err != nil || len(ts) != 3 {
		t.Fatalf("v1 transitions: %+v %v", ts, err)
	}
	var last catalog.Transition
	for _, tr := range ts {
		if tr.Seq == 3 {
			last = tr
		}
	}
	if last.Seq != 3 || last.From != catalog.StageApproved || last.To != catalog.StageProduction || last.Actor != "alice" || !last.At.Equal(at) {
		t.Fatalf("v1's promotion audit row: %+v", last)
	}
	// The version's workflow then records the same transition itself.
	if applied, err := c.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: 1, Seq: 3, From: catalog.StageApproved, To: catalog.StageProduction, Actor: "alice"}); err != nil || applied {
		t.Fatalf("the version's own Production transition after the switch's: applied %v, %v", applied, err)
	}
	if ts, _ := c.Transitions(ctx, "fraud", 1); len(ts) != 3 {
		t.Fatalf("v1 transitions after the version's own write: %+v", ts)
	}
	// A fenced-off write moves nothing, and a version not Approved keeps its stage.
	step(2, 2, catalog.StageRegistered, catalog.StagePendingApproval)
	if applied, err := c.SetProductionPromoting(ctx, "fraud", 2, 1, catalog.Promoted{Actor: "x"}); err != nil || applied {
		t.Fatalf("a fenced promotion: %v %v", applied, err)
	}
	if v := getVersion(t, c, "fraud", 2); v.Stage != catalog.StagePendingApproval || v.Seq != 2 {
		t.Fatalf("v2 after a fenced promotion: %s seq %d", v.Stage, v.Seq)
	}
	step(1, 4, catalog.StageProduction, catalog.StageArchived)
	if applied, err := c.SetProductionPromoting(ctx, "fraud", 2, 2, catalog.Promoted{Actor: "x"}); err != nil || !applied {
		t.Fatalf("a promotion of a version not Approved: %v %v", applied, err)
	}
	if v := getVersion(t, c, "fraud", 2); v.Stage != catalog.StagePendingApproval {
		t.Fatalf("v2 (not Approved) was moved: %s", v.Stage)
	}
}
