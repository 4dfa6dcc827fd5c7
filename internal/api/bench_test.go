package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

const (
	benchModels      = 1000
	benchVersions    = 100
	benchConcurrency = 64
)

// benchCatalog is a PostgreSQL catalog of 1,000 models of 100 versions each, the last one of each in
// production with a manifest in a directory store.
func benchCatalog(b *testing.B) (*catalog.Catalog, artifact.Store) {
	b.Helper()
	ctx := context.Background()
	url := testenv.Postgres(b)
	cat, err := catalog.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cat.Close() })
	if err := cat.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("postgres", strings.TrimPrefix(url, "postgres+"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO models (name, seq, created_at, updated_at, last_version)
			SELECT 'model-' || i, 1, now(), now(), %d FROM generate_series(1, %d) i`, benchVersions, benchModels),
		fmt.Sprintf(`INSERT INTO versions (model, version, stage, idempotency_key, workflow_id, metrics, params, tags, registered_by, seq, created_at, updated_at)
			SELECT 'model-' || i, v, CASE WHEN v = %d THEN 'Production' ELSE 'Archived' END, 'key-' || v, 'model/model-' || i || '/v' || v,
				'{"accuracy": 0.9, "auc": 0.95}', '{"lr": "0.01"}', '{"team": "risk"}', 'ci', 5, now(), now()
			FROM generate_series(1, %d) i, generate_series(1, %d) v`, benchVersions, benchModels, benchVersions),
		fmt.Sprintf(`UPDATE models SET production_version = %d`, benchVersions),
		`ANALYZE`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	store, err := artifact.NewDir(filepath.Join(b.TempDir(), "artifacts"))
	if err != nil {
		b.Fatal(err)
	}
	files := make([]artifact.FileEntry, 3)
	for i := range files {
		files[i] = artifact.FileEntry{Path: fmt.Sprintf("part-%d.bin", i), Size: 1 << 20, SHA256: strings.Repeat(strconv.Itoa(i), 64)}
	}
	for i := 1; i <= benchModels; i++ {
		m := fmt.Sprintf("model-%d", i)
		uri, digest, err := store.PutManifest(ctx, artifact.Manifest{SchemaVersion: artifact.ManifestSchemaVersion, Model: m, Version: benchVersions,
			Files: files, CreatedAt: time.Unix(1_800_000_000, 0).UTC()})
		if err != nil {
			b.Fatal(err)
		}
		if err := cat.SetManifest(ctx, m, benchVersions, uri, digest); err != nil {
			b.Fatal(err)
		}
	}
	return cat, store
}

// waitWarm waits until the server holds every model's production answer in memory.
func waitWarm(b *testing.B, srv *Server) {
	b.Helper()
	start := time.Now()
	for {
		n, loaded := srv.watch.warm()
		if loaded && n == benchModels {
			b.Logf("production views of %d models loaded in %s", n, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("after a minute %d of %d production views are loaded", n, benchModels)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkProductionGET measures GET /v1/models/{model}/production under 64 concurrent connections
// against a raw primary-key lookup of the same version through the same connection pool, served by a
// minimal handler on the same server, in the same run. The load comes from wrk (Debian's package), a
// separate process, so that the load generator's own scheduling does not count against the server's
// latency; without wrk the benchmark is skipped. Each figure is the better of three 5 s runs.
//
//	go test ./internal/api -run '^$' -bench ProductionGET -benchtime 1x
func BenchmarkProductionGET(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk)")
	}
	cat, store := benchCatalog(b)
	srv := New(Options{Catalog: cat, Store: store})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx)
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv.Handler())
	mux.HandleFunc("GET /raw/{model}", func(w http.ResponseWriter, r *http.Request) {
		v, err := cat.GetVersion(r.Context(), r.PathValue("model"), benchVersions)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})
	hs := httptest.NewServer(mux)
	defer hs.Close()
	waitWarm(b, srv)
	script := filepath.Join(b.TempDir(), "random-model.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(`
math.randomseed(7)
local prefix = os.getenv("WRK_PREFIX")
request = function()
  return wrk.format("GET", string.format(prefix, math.random(1, %d)))
end
`, benchModels)), 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(prefix string) (rate, p99ms float64) {
		best := wrkResult{}
		for range 3 {
			r := runWrk(b, wrk, script, hs.URL, prefix)
			if r.rate > best.rate {
				best = r
			}
		}
		return best.rate, best.p99ms
	}
	for b.Loop() {
		rawRate, rawP99 := run("/raw/model-%d")
		apiRate, apiP99 := run("/v1/models/model-%d/production")
		b.ReportMetric(apiRate, "api-req/s")
		b.ReportMetric(apiP99, "api-p99-ms")
		b.ReportMetric(rawRate, "raw-req/s")
		b.ReportMetric(rawP99, "raw-p99-ms")
		b.ReportMetric(apiRate/rawRate, "api/raw")
	}
}

type wrkResult struct{ rate, p99ms float64 }

// runWrk runs wrk for 5 s with 64 connections on one thread and reads its rate and 99th percentile.
func runWrk(b *testing.B, wrk, script, url, prefix string) wrkResult {
	b.Helper()
	cmd := exec.Command(wrk, "-t1", fmt.Sprintf("-c%d", benchConcurrency), "-d5s", "--latency", "-s", script, url)
	cmd.Env = append(os.Environ(), "WRK_PREFIX="+prefix)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	var r wrkResult
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rate, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "99%":
			r.p99ms = wrkMillis(f[1])
		case len(f) > 0 && f[0] == "Non-2xx":
			b.Fatalf("wrk saw errors:\n%s", out)
		}
	}
	if r.rate == 0 {
		b.Fatalf("no rate in wrk's output:\n%s", out)
	}
	if os.Getenv("MODELREG_BENCH_VERBOSE") != "" {
		b.Logf("wrk %s:\n%s", prefix, out)
	}
	return r
}

// wrkMillis reads wrk's latency figures: 812.00us, 3.21ms, 1.02s.
func wrkMillis(s string) float64 {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}, {"m", 60000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f * u.ms
		}
	}
	return 0
}
