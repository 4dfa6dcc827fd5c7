package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// writePlots draws the report's curves and baseline sweep as SVG files in dir (docs/benchmarks.md
// shows them). SVG is written by hand: a plotting library would be the bench's heaviest dependency for
// two charts.
func writePlots(rep *Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	if c := rep.Curves["ingest_one_file_mib_per_s"]; len(c) > 0 {
		var reg, base []point
		for _, p := range c {
			reg = append(reg, point{p.X, p.Registry})
			base = append(base, point{p.X, p.Baseline})
		}
		path := filepath.Join(dir, "ingest-rate.svg")
		svg := lineChart("Ingest rate against artifact size (one file, to PendingApproval)", "artifact size (MiB, log scale)", "MiB/s",
			[]series{{"registry (hash, upload, catalog, validation)", "#1f77b4", reg}, {"baseline: fastest SDK upload manager configuration", "#ff7f0e", base}}, true)
		if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
			return nil, err
		}
		written = append(written, path)
	}
	if len(rep.Sweep) > 0 {
		byManager := map[string][]point{}
		for _, s := range rep.Sweep {
			// One line per manager and part size, over concurrency.
			k := fmt.Sprintf("%s %d MiB parts", strings.TrimPrefix(s.Manager, "feature/s3/"), s.PartMiB)
			byManager[k] = append(byManager[k], point{float64(s.Concurrency), s.MiBps})
		}
		var keys []string
		for k := range byManager {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}
		var ss []series
		for i, k := range keys {
			ss = append(ss, series{k, colors[i%len(colors)], byManager[k]})
		}
		path := filepath.Join(dir, "upload-sweep.svg")
		svg := lineChart(fmt.Sprintf("Baseline sweep: the SDK's upload managers, %s", sizeName(rep.Options.IngestBytes)), "parts in flight", "MiB/s", ss, false)
		if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
			return nil, err
		}
		written = append(written, path)
	}
	return written, nil
}

// plotFromFile reads a report written by -json and draws its plots.
func plotFromFile(path, dir, mdPath string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if mdPath != "" {
		var b strings.Builder
		rep.WriteMarkdown(&b)
		if err := os.WriteFile(mdPath, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
	}
	return writePlots(&rep, dir)
}

type point struct{ x, y float64 }

type series struct {
	name  string
	color string
	pts   []point
}

// lineChart is an SVG line chart of the series, x on a log scale when logX.
func lineChart(title, xlabel, ylabel string, ss []series, logX bool) string {
	const w, left, right, top = 760.0, 70.0, 20.0, 40.0
	bottom := 70.0 + 16*float64(len(ss))
	h := 300 + bottom
	fx := func(x float64) float64 {
		if logX {
			return math.Log2(x)
		}
		return x
	}
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range ss {
		for _, p := range s.pts {
			minX, maxX, maxY = math.Min(minX, fx(p.x)), math.Max(maxX, fx(p.x)), math.Max(maxY, p.y)
		}
	}
	if maxX == minX {
		minX, maxX = minX-1, maxX+1
	}
	maxY = niceCeil(maxY * 1.1)
	px := func(x float64) float64 { return left + (fx(x)-minX)/(maxX-minX)*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/maxY*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, esc(title))
	for i := 0; i <= 5; i++ {
		y := maxY * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, w-right, py(y), py(y), left-6, py(y)+4, tick(y))
	}
	xs := map[float64]bool{}
	for _, s := range ss {
		for _, p := range s.pts {
			xs[p.x] = true
		}
	}
	for x := range xs {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), h-bottom+18, tick(x))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+(w-left-right)/2, h-bottom+36, esc(xlabel))
	fmt.Fprintf(&b, `<text transform="translate(16,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+(h-top-bottom)/2, esc(ylabel))
	for i, s := range ss {
		pts := slices.Clone(s.pts)
		slices.SortFunc(pts, func(a, b point) int { return int(math.Copysign(1, a.x-b.x)) })
		var path []string
		for _, p := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", px(p.x), py(p.y)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", px(p.x), py(p.y), s.color)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(path, " "))
		ly := h - bottom + 56 + float64(i)*16
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/><text x="%.0f" y="%.1f">%s</text>`+"\n",
			left, left+24, ly-4, ly-4, s.color, left+30, ly, esc(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// tick prints an axis value without trailing zeros.
func tick(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 3, 4, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
