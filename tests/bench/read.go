package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	_ "github.com/lib/pq"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/catalog/catalogtest"
	"github.com/modelreg/modelreg/internal/testenv"
)

func init() { suites["read"] = read }

// readConns is the front-door issue's load: 64 concurrent keep-alive connections.
const readConns = 64

// read measures GET /v1/models/{model}/production on the registry's worker process, which answers
// from views it keeps in memory, against a minimal handler that reads the same row by its primary key
// from the same PostgreSQL for every request: what a read path without those views would cost.
func read(e *Env, r *Report) {
	ctx := context.Background()
	models := catalogtest.Models{Prefix: "read", Count: 1000, Versions: 100, Production: true}
	d := 5 * time.Second
	if e.Opts.Short {
		models.Count, models.Versions, d = 100, 10, time.Second
	}
	url, cat := e.freshCatalog()
	t0 := time.Now()
	if err := catalogtest.Seed(ctx, url, models); err != nil {
		e.T.Fatal(err)
	}
	t1 := time.Now()
	if err := catalogtest.PutProductionManifests(ctx, cat, e.Store, models); err != nil {
		e.T.Fatal(err)
	}
	e.logf("read: %d models of %d versions seeded in %s, their production manifests written in %s", models.Count, models.Versions,
		t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))

	worker, api := e.startAPI(url)
	defer e.StopWorker()
	base := rawServer(e, url, models.Versions)

	regURLs, baseURLs := make([]string, models.Count), make([]string, models.Count)
	for i := range models.Count {
		regURLs[i] = fmt.Sprintf("%s/v1/models/%s/production", api, models.Name(i+1))
		baseURLs[i] = fmt.Sprintf("%s/raw/%s", base, models.Name(i+1))
	}
	// One read of every model before measuring: the worker caches each manifest it reads, and its
	// first scan of the catalog builds every model's view; both happen once in a worker's life.
	for _, urls := range [][]string{regURLs, baseURLs} {
		for _, u := range urls {
			if err := getOK(u); err != nil {
				e.T.Fatal(err)
			}
		}
	}
	f := &Figure{Suite: "read", Name: fmt.Sprintf("GET production, %d connections", readConns), Unit: "req/s",
		Baseline: "primary-key SELECT behind a minimal HTTP handler"}
	for round := range e.Opts.Rounds {
		b, err := runLoad(baseURLs, readConns, d)
		if err != nil {
			e.T.Fatalf("read: baseline: %v", err)
		}
		worker.ResetPeak()
		cpu0 := worker.CPUSeconds()
		g, err := runLoad(regURLs, readConns, d)
		if err != nil {
			e.T.Fatalf("read: registry: %v", err)
		}
		// The load generator shares the machine's CPUs with the server it loads (on two cores it takes
		// about half), so the rate is a floor; the worker's CPU time per request is its cost alone.
		f.Note("worker_cpu_us_per_req", (worker.CPUSeconds()-cpu0)*1e6/float64(g.Requests))
		e.logf("read round %d: registry %.0f req/s p99 %.2f ms; baseline %.0f req/s p99 %.2f ms",
			round+1, g.Rate, millis(g.P99), b.Rate, millis(b.P99))
		f.Registry = append(f.Registry, g.Rate)
		f.Base = append(f.Base, b.Rate)
		f.Note("p99_ms", millis(g.P99))
		f.Note("baseline_p99_ms", millis(b.P99))
		f.Note("worker_peak_rss_mib", worker.PeakRSSMiB())
	}
	r.Add(f)
}

// freshCatalog is a new, migrated catalog database on the run's PostgreSQL server: a suite that seeds
// a catalog of a given size measures that size, whatever other suites registered in e.Catalog.
func (e *Env) freshCatalog() (string, *catalog.Catalog) {
	ctx := context.Background()
	url := testenv.Postgres(e.T)
	cat, err := catalog.Open(ctx, url)
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { cat.Close() })
	if err := cat.Migrate(ctx); err != nil {
		e.T.Fatal(err)
	}
	return url, cat
}

// startAPI starts the registry's worker on the catalog at dbURL with its HTTP API on a free port and
// returns it and the API's base URL once the API is ready.
func (e *Env) startAPI(dbURL string) (*Process, string) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(e.T))
	p := e.StartWorker("MODELREG_DATABASE_URL="+dbURL, "MODELREG_HTTP_ADDR="+addr)
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := getOK(base + "/readyz")
		if err == nil {
			return p, base
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("the worker's API at %s is not ready after 30 s: %v (log %s)", base, err, p.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// rawVersion is the versions row as the baseline answers it.
type rawVersion struct {
	Model          string          `json:"model"`
	Version        int             `json:"version"`
	Stage          string          `json:"stage"`
	IdempotencyKey string          `json:"idempotencyKey"`
	WorkflowID     string          `json:"workflowId"`
	ManifestURI    string          `json:"manifestUri"`
	ManifestDigest string          `json:"manifestDigest"`
	Metrics        json.RawMessage `json:"metrics"`
	Params         json.RawMessage `json:"params"`
	Tags           json.RawMessage `json:"tags"`
	SourceRun      string          `json:"sourceRun"`
	RegisteredBy   string          `json:"registeredBy"`
	Seq            int64           `json:"seq"`
	CreatedAt      time.Time       `json:"createdAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
}

// rawServer serves GET /raw/{model}: the row of the model's version by its primary key, through a
// prepared statement on a pool as large as the catalog's, as JSON. It runs in this process, next to
// the load generator, as a server as small as can be; it returns its base URL.
func rawServer(e *Env, dbURL string, version int) string {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { db.Close() })
	// The catalog's pool (catalog.Open): 16 connections, all kept idle.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	stmt, err := db.Prepare(`SELECT model, version, stage, idempotency_key, workflow_id, manifest_uri, manifest_digest,
		metrics, params, tags, source_run, registered_by, seq, created_at, updated_at
		FROM versions WHERE model = $1 AND version = $2`)
	if err != nil {
		e.T.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /raw/{model}", func(w http.ResponseWriter, r *http.Request) {
		var v rawVersion
		err := stmt.QueryRowContext(r.Context(), r.PathValue("model"), version).Scan(&v.Model, &v.Version, &v.Stage, &v.IdempotencyKey,
			&v.WorkflowID, &v.ManifestURI, &v.ManifestDigest, &v.Metrics, &v.Params, &v.Tags, &v.SourceRun, &v.RegisteredBy,
			&v.Seq, &v.CreatedAt, &v.UpdatedAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			http.Error(w, "not found", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.T.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	e.T.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String()
}
