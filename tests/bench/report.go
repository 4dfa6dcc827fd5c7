package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelreg/modelreg/internal/config"
)

// Report is what a run measured: the JSON file written by -json, and the table printed.
type Report struct {
	Started     time.Time `json:"started"`
	WallSeconds float64   `json:"wallSeconds"`
	Machine     Machine   `json:"machine"`
	Options     Options   `json:"options"`
	// Settings are the tunables both sides ran with (README, "Configuration"), as the workers read them.
	Settings map[string]string `json:"settings"`
	Figures  []*Figure         `json:"figures"`
	// Sweep is every baseline configuration the ingest suite tried, with its rate.
	Sweep []SweepPoint `json:"sweep,omitempty"`
	// Curves are figures measured at several sizes (ingest rate against artifact size), for plots.
	Curves map[string][]CurvePoint `json:"curves,omitempty"`
}

// SweepPoint is one upload configuration of the baseline sweep.
type SweepPoint struct {
	Manager     string  `json:"manager"`
	PartMiB     int64   `json:"partMiB"`
	Concurrency int     `json:"concurrency"`
	MiBps       float64 `json:"mibPerSecond"`
}

// CurvePoint is a registry and a baseline value at X.
type CurvePoint struct {
	X        float64 `json:"x"`
	Registry float64 `json:"registry"`
	Baseline float64 `json:"baseline"`
}

// Machine is where the run happened; figures from different machines are not comparable, their ratios
// roughly are.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
	OS        string `json:"os"`
	CPUModel  string `json:"cpuModel,omitempty"`
	MemoryMiB int64  `json:"memoryMiB,omitempty"`
}

// Figure is one row: the registry's value and the baseline's in each round (the same work, measured
// right after each other), in Unit, where a higher value is better (a rate). The ratio of a round is
// registry / baseline; Target is the ratio the registry must reach, 0 when there is none.
type Figure struct {
	Suite    string    `json:"suite"`
	Name     string    `json:"name"`
	Unit     string    `json:"unit"`
	Baseline string    `json:"baseline,omitempty"` // what the baseline is
	Registry []float64 `json:"registry"`
	Base     []float64 `json:"base,omitempty"`
	Target   float64   `json:"target,omitempty"`
	// Extra holds other measurements of the registry's side, by name (p99 latency, peak RSS...), the
	// worst round's value.
	Extra map[string]float64 `json:"extra,omitempty"`
	// Limits are ceilings for Extra values (name → maximum) that a run is checked against.
	Limits map[string]float64 `json:"limits,omitempty"`
	// Computed by Finish.
	RatioMin    float64 `json:"ratioMin,omitempty"`
	RatioMedian float64 `json:"ratioMedian,omitempty"`
	Median      float64 `json:"median"`
	BaseMedian  float64 `json:"baseMedian,omitempty"`
	Met         *bool   `json:"met,omitempty"`
}

// Add records a figure after computing its medians and ratios.
func (r *Report) Add(f *Figure) {
	f.finish()
	r.Figures = append(r.Figures, f)
}

// Note records an extra measurement, keeping the worst (largest) over rounds.
func (f *Figure) Note(name string, v float64) {
	if f.Extra == nil {
		f.Extra = map[string]float64{}
	}
	if old, ok := f.Extra[name]; !ok || v > old {
		f.Extra[name] = v
	}
}

func (f *Figure) finish() {
	f.Median = median(f.Registry)
	if len(f.Base) > 0 {
		f.BaseMedian = median(f.Base)
		var ratios []float64
		for i := range f.Registry {
			if i < len(f.Base) && f.Base[i] > 0 {
				ratios = append(ratios, f.Registry[i]/f.Base[i])
			}
		}
		if len(ratios) > 0 {
			f.RatioMin = slices.Min(ratios)
			f.RatioMedian = median(ratios)
		}
	}
	if f.Target > 0 || len(f.Limits) > 0 {
		met := f.Target == 0 || f.RatioMedian >= f.Target
		for k, max := range f.Limits {
			if v, ok := f.Extra[k]; ok && v > max {
				met = false
			}
		}
		f.Met = &met
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// WriteTable prints the figures as a table.
func (r *Report) WriteTable(w io.Writer) {
	rounds := fmt.Sprintf("%d round(s)", r.Options.Rounds)
	if contains(r.Options.Suites, "pending") && r.Options.PendingRounds != r.Options.Rounds {
		rounds += fmt.Sprintf(" (pending: %d)", r.Options.PendingRounds)
	}
	fmt.Fprintf(w, "modelreg bench, %s, %d CPUs, %s; %s, %.0f s\n", r.Started.Format(time.RFC3339), r.Machine.CPUs, r.Machine.CPUModel, rounds, r.WallSeconds)
	var set []string
	for _, k := range slices.Sorted(maps.Keys(r.Settings)) {
		set = append(set, k+"="+r.Settings[k])
	}
	fmt.Fprintf(w, "settings: %s\n\n", strings.Join(set, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "suite\tfigure\tregistry\tbaseline\tratio median (min)\ttarget\textra")
	for _, f := range r.Figures {
		fmt.Fprintln(tw, strings.Join(f.cells(false, " met", " NOT MET"), "\t"))
	}
	tw.Flush()
}

// WriteMarkdown writes the figures as a Markdown table (docs/benchmarks.md shows one).
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "| suite | figure | registry | baseline | ratio median (min) | target | extra |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, f := range r.Figures {
		fmt.Fprintf(w, "| %s |\n", strings.Join(f.cells(true, " ✓", " ✗"), " | "))
	}
}

// cells are the figure's columns as both tables print them; withBaseline adds what the baseline is,
// and met and notMet mark the target.
func (f *Figure) cells(withBaseline bool, met, notMet string) []string {
	base, ratio := "—", "—"
	if len(f.Base) > 0 {
		base = fmt.Sprintf("%s %s", num(f.BaseMedian), f.Unit)
		if withBaseline {
			base += " (" + f.Baseline + ")"
		}
		ratio = fmt.Sprintf("%.2f (%.2f)", f.RatioMedian, f.RatioMin)
	}
	var target []string
	if f.Target > 0 {
		target = append(target, fmt.Sprintf("≥ %.2f", f.Target))
	}
	for _, k := range sortedKeys(f.Limits) {
		target = append(target, fmt.Sprintf("%s ≤ %s", k, num(f.Limits[k])))
	}
	t := strings.Join(target, ", ")
	if f.Met != nil {
		if *f.Met {
			t += met
		} else {
			t += notMet
		}
	}
	var extra []string
	for _, k := range sortedKeys(f.Extra) {
		extra = append(extra, fmt.Sprintf("%s %s", k, num(f.Extra[k])))
	}
	return []string{f.Suite, f.Name, num(f.Median) + " " + f.Unit, base, ratio, t, strings.Join(extra, ", ")}
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func sortedKeys(m map[string]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// num prints v with about three significant digits.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb >> 10
		}
	}
	return m
}

// settings are the tunables of worker and client connections in the bench's environment (which both
// sides' workers inherit), with the defaults of those that are unset and the benchmark moved.
func settings() map[string]string {
	m := map[string]string{"MODELREG_TEMPORAL_GRPC_COMPRESSION": config.DefaultGrpcCompression}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MODELREG_WORKER_") || k == "MODELREG_TEMPORAL_GRPC_COMPRESSION" {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
