package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelreg/modelreg/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunWithServers(m)) }

// TestBenchShort runs every suite at -short sizes, as the test command does, so that the benchmark
// command keeps working: each suite reports its figures, with a baseline measured in the same run where
// the figure has one, and the JSON report reads back. It checks no target: -short sizes measure nothing.
func TestBenchShort(t *testing.T) {
	opts := defaults(true)
	rep := Run(t, opts)
	bySuite := map[string]int{}
	for _, f := range rep.Figures {
		bySuite[f.Suite]++
		rounds := opts.roundsOf(f.Suite)
		if len(f.Registry) != rounds {
			t.Errorf("%s/%s: %d registry values for %d rounds", f.Suite, f.Name, len(f.Registry), rounds)
		}
		for _, v := range append(append([]float64{}, f.Registry...), f.Base...) {
			if !(v > 0) {
				t.Errorf("%s/%s: value %v is not a measurement: %+v", f.Suite, f.Name, v, f)
			}
		}
		if f.Baseline != "" && (len(f.Base) != rounds || !(f.RatioMedian > 0)) {
			t.Errorf("%s/%s: baseline %q measured %d times, ratio %v", f.Suite, f.Name, f.Baseline, len(f.Base), f.RatioMedian)
		}
	}
	for _, s := range opts.Suites {
		if bySuite[s] == 0 {
			t.Errorf("suite %s reported no figure", s)
		}
	}
	path := filepath.Join(t.TempDir(), "bench.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Figures) != len(rep.Figures) {
		t.Fatalf("report does not read back: %v (%d figures)", err, len(back.Figures))
	}
	// The plots of the report are well-formed SVG.
	plots, err := writePlots(&back, t.TempDir())
	if err != nil || len(plots) != 2 {
		t.Fatalf("plots %v: %v", plots, err)
	}
	for _, p := range plots {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(bytes.NewReader(b))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s is not well-formed: %v", p, err)
			}
		}
	}
	var md strings.Builder
	back.WriteMarkdown(&md)
	if n := strings.Count(md.String(), "\n"); n != len(rep.Figures)+2 {
		t.Fatalf("Markdown table has %d lines for %d figures:\n%s", n, len(rep.Figures), md.String())
	}
	var table strings.Builder
	rep.WriteTable(&table)
	t.Log("\n" + table.String())
}
