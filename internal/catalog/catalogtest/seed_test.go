package catalogtest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunWithServers(m)) }

// schema is every constraint and index of the catalog's tables, as PostgreSQL defines them.
func schema(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
			WHERE connamespace = 'public'::regnamespace
		UNION ALL SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid::regclass::text IN ('models', 'versions', 'transitions', 'decisions')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestSeed checks that a seeded catalog has the migrations' schema, the rows asked for and the filter
// shares documented on Models, and that the catalog reads it like one it wrote itself.
func TestSeed(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	cat, err := catalog.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if err := cat.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	before := schema(t, db)
	prod := Models{Prefix: "p", Count: 3, Versions: 200, Production: true}
	plain := Models{Prefix: "q", Count: 2, Versions: 50}
	if err := Seed(ctx, url, prod, plain); err != nil {
		t.Fatal(err)
	}
	if after := schema(t, db); !slices.Equal(before, after) {
		t.Errorf("schema changed by the seed:\nbefore %q\nafter  %q", before, after)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM versions`).Scan(&n); err != nil || n != prod.Total()+plain.Total() {
		t.Fatalf("%d versions (%v), want %d", n, err, prod.Total()+plain.Total())
	}
	m := prod.Name(2)
	pv, err := cat.Production(ctx, m)
	if err != nil || pv.Version != prod.Versions || pv.Stage != catalog.StageProduction {
		t.Fatalf("production of %s: %+v, %v", m, pv, err)
	}
	vs, err := cat.FindVersions(ctx, catalog.VersionFilter{Model: m, Limit: 500,
		Metrics: []catalog.MetricFilter{{Name: "accuracy", Op: ">=", Value: 0.9}}})
	if err != nil || len(vs) != prod.Versions/10 {
		t.Fatalf("accuracy>=0.9 of %s: %d versions (%v), want %d", m, len(vs), err, prod.Versions/10)
	}
	vs, err = cat.FindVersions(ctx, catalog.VersionFilter{Model: m, Limit: 500,
		Tags: []catalog.TagFilter{{Key: "team", Value: "team-3", HasValue: true}}})
	if err != nil || len(vs) != prod.Versions/10 || vs[0].Version != 193 {
		t.Fatalf("team=team-3 of %s: %d versions (%v), want %d from v193", m, len(vs), err, prod.Versions/10)
	}
	// The keys are back: the one-Production index refuses a second one, the primary key a duplicate.
	if _, err := db.Exec(`UPDATE versions SET stage = 'Production' WHERE model = $1 AND version = 1`, m); err == nil {
		t.Error("a second Production version was accepted")
	}
	if v, existing, err := cat.MintVersion(ctx, catalog.Version{Model: plain.Name(1), IdempotencyKey: "key-7"}); err != nil || !existing || v.Version != 7 {
		t.Fatalf("mint under a seeded key: v%d, existing %v, %v", v.Version, existing, err)
	}
	if v, existing, err := cat.MintVersion(ctx, catalog.Version{Model: plain.Name(1), IdempotencyKey: "new"}); err != nil || existing || v.Version != plain.Versions+1 {
		t.Fatalf("mint after the seeded versions: v%d, existing %v, %v", v.Version, existing, err)
	}

	store, err := artifact.NewDir(filepath.Join(t.TempDir(), "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := PutProductionManifests(ctx, cat, store, prod); err != nil {
		t.Fatal(err)
	}
	// Twice: the manifests are the same bytes, so a second run finds them in place.
	if err := PutProductionManifests(ctx, cat, store, prod); err != nil {
		t.Fatal(err)
	}
	if _, digest, err := store.GetManifest(ctx, m, prod.Versions); err != nil || digest == "" {
		t.Fatalf("manifest of %s: %q, %v", m, digest, err)
	}
}
