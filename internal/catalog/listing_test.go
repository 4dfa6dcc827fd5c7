package catalog_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
)

// testListing covers what the HTTP API lists with: filters on stage, tags, metrics and registrant,
// keyset cursors, model summaries, and the production view, identically on every backend.
func testListing(t *testing.T, url string) {
	ctx := context.Background()
	c := open(t, url)
	mint := func(model string, acc float64, tags map[string]string, by string) catalog.Version {
		t.Helper()
		v, _, err := c.MintVersion(ctx, catalog.Version{Model: model, IdempotencyKey: fmt.Sprintf("%s-%v-%d", model, acc, time.Now().UnixNano()),
			Metrics: map[string]float64{"accuracy": acc, `odd "name"`: 1}, Tags: tags, RegisteredBy: by})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	mint("fraud", 0.91, map[string]string{"team": "risk"}, "ci")
	mint("fraud", 0.95, map[string]string{"team": "risk", "gpu": "a100"}, "ci")
	mint("fraud", 0.97, nil, "alice")
	mint("churn", 0.80, map[string]string{"team": "growth"}, "ci")
	record(t, c, catalog.Transition{Model: "fraud", Version: 2, Seq: 2, From: catalog.StageRegistered, To: catalog.StageProduction})

	find := func(f catalog.VersionFilter) []string {
		t.Helper()
		vs, err := c.FindVersions(ctx, f)
		if err != nil {
			t.Fatalf("FindVersions(%+v): %v", f, err)
		}
		var out []string
		for _, v := range vs {
			out = append(out, fmt.Sprintf("%s/%d", v.Model, v.Version))
		}
		return out
	}
	for _, tc := range []struct {
		f    catalog.VersionFilter
		want []string
	}{
		{catalog.VersionFilter{Model: "fraud"}, []string{"fraud/3", "fraud/2", "fraud/1"}},
		{catalog.VersionFilter{}, []string{"churn/1", "fraud/3", "fraud/2", "fraud/1"}},
		{catalog.VersionFilter{Stages: []string{catalog.StageProduction}}, []string{"fraud/2"}},
		{catalog.VersionFilter{Tags: []catalog.TagFilter{{Key: "team", Value: "risk", HasValue: true}}}, []string{"fraud/2", "fraud/1"}},
		{catalog.VersionFilter{Tags: []catalog.TagFilter{{Key: "gpu"}}}, []string{"fraud/2"}},
		{catalog.VersionFilter{Metrics: []catalog.MetricFilter{{Name: "accuracy", Op: ">=", Value: 0.95}}}, []string{"fraud/3", "fraud/2"}},
		{catalog.VersionFilter{Metrics: []catalog.MetricFilter{{Name: `odd "name"`, Op: "=", Value: 1}}, Model: "churn"}, []string{"churn/1"}},
		{catalog.VersionFilter{Metrics: []catalog.MetricFilter{{Name: "missing", Op: "<", Value: 1}}}, nil},
		{catalog.VersionFilter{RegisteredBy: "alice"}, []string{"fraud/3"}},
		{catalog.VersionFilter{Model: "fraud", Limit: 2}, []string{"fraud/3", "fraud/2"}},
		{catalog.VersionFilter{Model: "fraud", After: &catalog.VersionCursor{Version: 2}}, []string{"fraud/1"}},
	} {
		if got := find(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("FindVersions(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
	// A cross-model cursor continues after the version it names.
	all, _ := c.FindVersions(ctx, catalog.VersionFilter{Limit: 2})
	last := all[1]
	rest := find(catalog.VersionFilter{After: &catalog.VersionCursor{CreatedAt: last.CreatedAt, Model: last.Model, Version: last.Version}})
	if !slices.Equal(rest, []string{"fraud/2", "fraud/1"}) {
		t.Errorf("after %s/%d: %v", last.Model, last.Version, rest)
	}
	if _, err := c.FindVersions(ctx, catalog.VersionFilter{Stages: []string{"Deployed"}}); err == nil {
		t.Error("an unknown stage was accepted")
	}

	ms, err := c.ListModelSummaries(ctx, "", 10)
	if err != nil || len(ms) != 2 || ms[0].Name != "churn" || ms[1].LatestVersion != 3 {
		t.Fatalf("ListModelSummaries = %+v, %v", ms, err)
	}
	if ms, _ := c.ListModelSummaries(ctx, "churn", 10); len(ms) != 1 || ms[0].Name != "fraud" {
		t.Errorf("after churn: %+v", ms)
	}

	// The production view: none, then the pointed version with its row.
	st, v, err := c.ProductionView(ctx, "fraud")
	if err != nil || st.Version != nil || v != nil {
		t.Fatalf("ProductionView before the pointer = %+v, %+v, %v", st, v, err)
	}
	two := 2
	if _, err := c.SetProduction(ctx, "fraud", &two, 1); err != nil {
		t.Fatal(err)
	}
	st, v, err = c.ProductionView(ctx, "fraud")
	if err != nil || st.Version == nil || *st.Version != 2 || st.Seq != 1 || st.Stage != catalog.StageProduction || v == nil ||
		v.Version != 2 || v.Tags["gpu"] != "a100" || v.Metrics["accuracy"] != 0.95 {
		t.Fatalf("ProductionView = %+v, %+v, %v", st, v, err)
	}
	if _, _, err := c.ProductionView(ctx, "nope"); err == nil {
		t.Error("ProductionView of an unknown model")
	}
	states, err := c.AllProductionStates(ctx)
	if err != nil || len(states) != 2 {
		t.Fatalf("AllProductionStates = %+v, %v", states, err)
	}
}
