package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/catalog/catalogtest"
)

func init() { suites["scale"] = scale }

// scalePage is the page the API reads for a listing of 50: one more row tells it there is a next page.
const scalePage = 51

// scale measures the catalog at a million versions, one model holding a tenth of them: a listing and
// two searches of that model through the catalog and through the API, each against the same on a model
// of a thousand versions, and the time to mint the next version of it against a model of one version.
// Each is one caller at a time, so the figures are latencies rather than throughput under load: a
// catalog that degrades with size shows here first.
func scale(e *Env, r *Report) {
	ctx := context.Background()
	small := catalogtest.Models{Prefix: "scale", Count: 900, Versions: 1000}
	big := catalogtest.Models{Prefix: "scale-big", Count: 1, Versions: 100_000}
	mints, d := 500, 2*time.Second
	if e.Opts.Short {
		small.Count, big.Versions, mints, d = 9, 1000, 20, 200*time.Millisecond
	}
	// Every mint of the baseline is the second version of its own model: the next version of a model
	// with one version, every time.
	one := catalogtest.Models{Prefix: "scale-one", Count: mints * e.Opts.Rounds, Versions: 1}
	dbURL, cat := e.freshCatalog()
	t0 := time.Now()
	if err := catalogtest.Seed(ctx, dbURL, small, big, one); err != nil {
		e.T.Fatal(err)
	}
	e.logf("scale: %d versions seeded and analyzed in %s", small.Total()+big.Total()+one.Total(), time.Since(t0).Round(time.Millisecond))

	_, api := e.startAPI(dbURL)
	defer e.StopWorker()

	bigName, smallName := big.Name(1), small.Name(1)
	size := func(m catalogtest.Models) string { return thousands(m.Versions) + " versions" }
	queries := []struct {
		name   string
		filter func(*catalog.VersionFilter)
		query  url.Values
	}{
		{"list newest page", func(*catalog.VersionFilter) {}, url.Values{}},
		{"search accuracy>=0.9", func(f *catalog.VersionFilter) {
			f.Metrics = []catalog.MetricFilter{{Name: "accuracy", Op: ">=", Value: 0.9}}
		}, url.Values{"metric": {"accuracy>=0.9"}}},
		{"search tag team=team-3", func(f *catalog.VersionFilter) {
			f.Tags = []catalog.TagFilter{{Key: "team", Value: "team-3", HasValue: true}}
		}, url.Values{"tag": {"team=team-3"}}},
	}
	type probe struct {
		fig       *Figure
		reg, base func() error
	}
	var probes []probe
	for _, q := range queries {
		viaCatalog := func(model string) func() error {
			f := catalog.VersionFilter{Model: model, Limit: scalePage}
			q.filter(&f)
			return func() error {
				vs, err := cat.FindVersions(ctx, f)
				if err == nil && len(vs) != scalePage {
					err = fmt.Errorf("%s of %s: %d versions, want %d", q.name, model, len(vs), scalePage)
				}
				return err
			}
		}
		viaAPI := func(model string) func() error {
			u := fmt.Sprintf("%s/v1/models/%s/versions?limit=%d", api, model, scalePage-1)
			if len(q.query) > 0 {
				u += "&" + q.query.Encode()
			}
			checked := false
			return func() error {
				// The first answer is checked whole; after that only its status, so that decoding does
				// not count as the API's time.
				want := -1
				if !checked {
					want, checked = scalePage-1, true
				}
				return getPage(u, want)
			}
		}
		for _, via := range []struct {
			name string
			f    func(string) func() error
		}{{"catalog", viaCatalog}, {"API", viaAPI}} {
			probes = append(probes, probe{
				fig: &Figure{Suite: "scale", Name: fmt.Sprintf("%s, model of %s (%s)", q.name, size(big), via.name), Unit: "queries/s",
					Baseline: fmt.Sprintf("the same on a model of %s", size(small))},
				reg: via.f(bigName), base: via.f(smallName),
			})
		}
	}
	// Each probe once: a wrong answer fails here, and the first reads warm the caches on both sides.
	for _, p := range probes {
		for _, f := range []func() error{p.base, p.reg} {
			if err := f(); err != nil {
				e.T.Fatalf("scale: %s: %v", p.fig.Name, err)
			}
		}
	}

	mintFig := &Figure{Suite: "scale", Name: fmt.Sprintf("mint the next version, model of %s", size(big)), Unit: "mints/s",
		Baseline: "the same on a model of one version", Target: 0.9}
	mint := func(model string, n int) error {
		_, existing, err := cat.MintVersion(ctx, catalog.Version{Model: model, IdempotencyKey: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), n),
			RegisteredBy: "bench", Metrics: map[string]float64{"accuracy": 0.9}, Tags: map[string]string{"team": "team-1"}})
		if err == nil && existing {
			err = fmt.Errorf("mint on %s found an existing version", model)
		}
		return err
	}
	for round := range e.Opts.Rounds {
		for _, p := range probes {
			bRate, bLat, err := timed(d, p.base)
			if err != nil {
				e.T.Fatalf("scale: %s: baseline: %v", p.fig.Name, err)
			}
			gRate, gLat, err := timed(d, p.reg)
			if err != nil {
				e.T.Fatalf("scale: %s: %v", p.fig.Name, err)
			}
			p.fig.Base = append(p.fig.Base, bRate)
			p.fig.Registry = append(p.fig.Registry, gRate)
			p.fig.Note("p99_ms", millis(percentile(gLat, 0.99)))
			p.fig.Note("baseline_p99_ms", millis(percentile(bLat, 0.99)))
		}
		bRate, bLat, err := timedN(mints, func(i int) error { return mint(one.Name(round*mints+i+1), i) })
		if err != nil {
			e.T.Fatalf("scale: mint: baseline: %v", err)
		}
		gRate, gLat, err := timedN(mints, func(i int) error { return mint(bigName, i) })
		if err != nil {
			e.T.Fatalf("scale: mint: %v", err)
		}
		mintFig.Base = append(mintFig.Base, bRate)
		mintFig.Registry = append(mintFig.Registry, gRate)
		mintFig.Note("p99_ms", millis(percentile(gLat, 0.99)))
		mintFig.Note("baseline_p99_ms", millis(percentile(bLat, 0.99)))
		e.logf("scale round %d: mint %.0f/s on the big model, %.0f/s on one-version models", round+1, gRate, bRate)
	}
	for _, p := range probes {
		r.Add(p.fig)
	}
	r.Add(mintFig)
}

// timedN runs f n times one after another and returns its rate and the latencies.
func timedN(n int, f func(i int) error) (rate float64, lat []time.Duration, err error) {
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		if err := f(i); err != nil {
			return 0, nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	return float64(n) / time.Since(start).Seconds(), lat, nil
}

// getPage reads a listing and checks it answered 200 and, unless want < 0, that it holds want versions
// and a next page.
func getPage(u string, want int) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	if want < 0 {
		return nil
	}
	var page struct {
		Versions   []json.RawMessage `json:"versions"`
		NextCursor string            `json:"nextCursor"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(page.Versions) != want || page.NextCursor == "" {
		return fmt.Errorf("GET %s: %d versions (next cursor %q), want %d and a next page", u, len(page.Versions), page.NextCursor, want)
	}
	return nil
}

// thousands writes n with thousands separators: 100,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
