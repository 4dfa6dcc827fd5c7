package api

import (
	"context"
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

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/catalog/catalogtest"
	"github.com/modelreg/modelreg/internal/testenv"
)

const benchConcurrency = 64

// benchModels is the benchmark's catalog: 1,000 models of 100 versions each, the last one of each in
// production with a manifest in a directory store.
var benchModels = catalogtest.Models{Prefix: "model", Count: 1000, Versions: 100, Production: true}

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
	if err := catalogtest.Seed(ctx, url, benchModels); err != nil {
		b.Fatal(err)
	}
	store, err := artifact.NewDir(filepath.Join(b.TempDir(), "artifacts"))
	if err != nil {
		b.Fatal(err)
	}
	if err := catalogtest.PutProductionManifests(ctx, cat, store, benchModels); err != nil {
		b.Fatal(err)
	}
	return cat, store
}

// waitWarm waits until the server holds every model's production answer in memory.
func waitWarm(b *testing.B, srv *Server) {
	b.Helper()
	start := time.Now()
	for {
		n, loaded := srv.watch.warm()
		if loaded && n == benchModels.Count {
			b.Logf("production views of %d models loaded in %s", n, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("after a minute %d of %d production views are loaded", n, benchModels.Count)
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
		v, err := cat.GetVersion(r.Context(), r.PathValue("model"), benchModels.Versions)
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
`, benchModels.Count)), 0o644); err != nil {
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
