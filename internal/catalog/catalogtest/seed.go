// Package catalogtest fills a PostgreSQL catalog with generated models and versions in a few SQL
// statements, for benchmarks that need catalogs far larger than registering through the workflows
// could build in a run (internal/api's BenchmarkProductionGET, tests/bench's read and scale suites).
package catalogtest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
)

// Models is a group of generated models, named Prefix-1 … Prefix-Count, each with versions 1 …
// Versions, registered by "ci" a second apart in version order.
//
// Their metrics and tags vary with the version number v so that filters select a known share of
// versions, spread evenly over a model's history: accuracy is (v mod 100)/100 (accuracy>=0.9 selects
// one version in ten), auc is 0.95, and tag team is team-(v mod 10).
type Models struct {
	Prefix   string
	Count    int
	Versions int
	// Production puts each model's last version in Production (its pointer names it) and archives the
	// others; otherwise every version is Archived and no model has a production version.
	Production bool
}

// Name is the name of the i-th model (from 1) of the group.
func (m Models) Name(i int) string { return fmt.Sprintf("%s-%d", m.Prefix, i) }

// Total is the number of versions of the group.
func (m Models) Total() int { return m.Count * m.Versions }

// Seed inserts the groups into the migrated PostgreSQL catalog at dbURL and analyzes the tables, so
// that the planner plans as it would for a catalog that grew to this size. A million versions take
// about ten seconds on two cores.
//
// The versions table's keys, foreign keys and indexes are dropped for the inserts and built again
// after them, in the same transaction: building an index once over all rows is several times faster
// than inserting each row into it. They are rebuilt from their definitions in the database, so the
// schema after a seed is the migrations' whatever they become.
func Seed(ctx context.Context, dbURL string, groups ...Models) error {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rebuild, err := dropVersionIndexes(ctx, tx)
	if err != nil {
		return fmt.Errorf("catalogtest: %w", err)
	}
	for _, g := range groups {
		if g.Count < 1 || g.Versions < 1 {
			return fmt.Errorf("catalogtest: group %q: %d models of %d versions", g.Prefix, g.Count, g.Versions)
		}
		prefix := pq.QuoteLiteral(g.Prefix + "-")
		stage := "'Archived'"
		if g.Production {
			stage = fmt.Sprintf("CASE WHEN v = %d THEN 'Production' ELSE 'Archived' END", g.Versions)
		}
		qs := []string{
			fmt.Sprintf(`INSERT INTO models (name, seq, created_at, updated_at, last_version)
				SELECT %s || i, 1, now(), now(), %d FROM generate_series(1, %d) i`, prefix, g.Versions, g.Count),
			fmt.Sprintf(`INSERT INTO versions (model, version, stage, idempotency_key, workflow_id, metrics, params, tags, registered_by, seq, created_at, updated_at)
				SELECT %[1]s || i, v, %[2]s, 'key-' || v, 'model/' || %[1]s || i || '/v' || v,
					jsonb_build_object('accuracy', (v %% 100) / 100.0, 'auc', 0.95), '{"lr": "0.01"}',
					jsonb_build_object('team', 'team-' || (v %% 10)), 'ci', 5,
					now() - make_interval(secs => %[3]d - v), now() - make_interval(secs => %[3]d - v)
				FROM generate_series(1, %[4]d) i, generate_series(1, %[3]d) v`, prefix, stage, g.Versions, g.Count),
		}
		if g.Production {
			qs = append(qs, fmt.Sprintf(`UPDATE models SET production_version = %d
				WHERE name IN (SELECT %s || i FROM generate_series(1, %d) i)`, g.Versions, prefix, g.Count))
		}
		for _, q := range qs {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("catalogtest: seed %q: %w", g.Prefix, err)
			}
		}
	}
	for _, q := range rebuild {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("catalogtest: %s: %w", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("catalogtest: analyze: %w", err)
	}
	return nil
}

// dropVersionIndexes drops the versions table's primary key, unique constraints and indexes and every
// foreign key from or to it, and returns the statements that create them again, in an order that
// works: keys before the foreign keys that reference them. Checks stay: they cost little per row.
func dropVersionIndexes(ctx context.Context, tx *sql.Tx) (rebuild []string, err error) {
	type constraint struct{ table, name, def string }
	var keys, fkeys []constraint
	rows, err := tx.QueryContext(ctx, `SELECT conrelid::regclass::text, quote_ident(conname), contype, pg_get_constraintdef(oid)
		FROM pg_constraint
		WHERE (conrelid = 'versions'::regclass AND contype IN ('p', 'u', 'f')) OR (confrelid = 'versions'::regclass AND contype = 'f')
		ORDER BY oid`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c constraint
		var typ string
		if err := rows.Scan(&c.table, &c.name, &typ, &c.def); err != nil {
			rows.Close()
			return nil, err
		}
		if typ == "f" {
			fkeys = append(fkeys, c)
		} else {
			keys = append(keys, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Indexes of their own, not those behind a key (dropped with it).
	var indexes, defs []string
	rows, err = tx.QueryContext(ctx, `SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
		FROM pg_index i
		WHERE i.indrelid = 'versions'::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
		ORDER BY i.indexrelid`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return nil, err
		}
		indexes, defs = append(indexes, name), append(defs, def)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var drop []string
	for _, c := range fkeys {
		drop = append(drop, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", c.table, c.name))
	}
	for _, c := range keys {
		drop = append(drop, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", c.table, c.name))
	}
	for _, name := range indexes {
		drop = append(drop, "DROP INDEX "+name)
	}
	for _, q := range drop {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	for _, c := range keys {
		rebuild = append(rebuild, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", c.table, c.name, c.def))
	}
	rebuild = append(rebuild, defs...)
	for _, c := range fkeys {
		rebuild = append(rebuild, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", c.table, c.name, c.def))
	}
	return rebuild, nil
}

// PutProductionManifests writes a manifest of three 1 MiB files (whose blobs are never written: a
// read of production does not fetch them) for each model's last version of g into store and records
// it in the catalog, as the registration's manifest activity would.
func PutProductionManifests(ctx context.Context, cat *catalog.Catalog, store artifact.Store, g Models) error {
	files := make([]artifact.FileEntry, 3)
	for i := range files {
		files[i] = artifact.FileEntry{Path: fmt.Sprintf("part-%d.bin", i), Size: 1 << 20, SHA256: strings.Repeat(fmt.Sprint(i), 64)}
	}
	// A few at a time: against S3 one manifest is a round trip or two.
	const parallel = 8
	errs := make(chan error, parallel)
	next := make(chan int)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				m := g.Name(i)
				uri, digest, err := store.PutManifest(ctx, artifact.Manifest{SchemaVersion: artifact.ManifestSchemaVersion, Model: m,
					Version: g.Versions, Files: files, CreatedAt: time.Unix(1_800_000_000, 0).UTC()})
				if err == nil {
					err = cat.SetManifest(ctx, m, g.Versions, uri, digest)
				}
				if err != nil {
					errs <- fmt.Errorf("catalogtest: manifest of %s v%d: %w", m, g.Versions, err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := 1; i <= g.Count; i++ {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}
