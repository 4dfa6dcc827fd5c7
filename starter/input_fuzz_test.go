package main

// Fuzz tests for the starter's decoders of outside input: the metrics file a training job writes and
// the --threshold flag. Seeds live in testdata/fuzz/<FuzzName>/; fuzz one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzReadMetrics$' -fuzztime 60s ./starter/

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/modelreg/modelreg/workflows"
)

// FuzzReadMetrics writes arbitrary bytes as a metrics file. What readMetrics accepts must be one JSON
// object of finite numbers whose names the register request accepts, and must read back the same after
// being written out again.
func FuzzReadMetrics(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		p := filepath.Join(dir, "metrics.json")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := readMetrics(p)
		if err != nil {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("readMetrics error %q does not name the file", err)
			}
			return
		}
		if m == nil {
			t.Fatalf("readMetrics(%q) accepted with a nil map", content)
		}
		// readMetrics allows any trailing white space (bytes.TrimSpace), not just JSON's.
		if !json.Valid(bytes.TrimRightFunc(content, unicode.IsSpace)) {
			t.Fatalf("readMetrics accepted %q, which is not one JSON value", content)
		}
		if trimmed := bytes.TrimLeft(content, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatalf("readMetrics accepted %q, which is not a JSON object", content)
		}
		for k, v := range m {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("readMetrics accepted metric %q = %v", k, v)
			}
		}
		if err := workflows.ValidateMetrics(m); err != nil {
			t.Fatalf("readMetrics accepted metrics the register request refuses: %v", err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %v: %v", m, err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		m2, err := readMetrics(p)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("metrics changed when written out again: %v -> %s -> %v, %v", m, b, m2, err)
		}
	})
}

// FuzzParseThreshold feeds arbitrary --threshold values. An accepted threshold has a metric name, one of
// the four operators the validation activity knows, a finite value, and prints back to a flag value that
// parses to the same threshold.
func FuzzParseThreshold(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		th, err := parseThreshold(s)
		if err != nil {
			if !strings.Contains(err.Error(), "--threshold") {
				t.Fatalf("parseThreshold(%q) error %q does not name the flag", s, err)
			}
			return
		}
		if th.Metric == "" || strings.ContainsAny(th.Metric, " \t\r\n<>=") {
			t.Fatalf("parseThreshold(%q) accepted metric %q", s, th.Metric)
		}
		switch th.Op {
		case ">=", ">", "<=", "<":
		default:
			t.Fatalf("parseThreshold(%q) accepted operator %q", s, th.Op)
		}
		if math.IsNaN(th.Value) || math.IsInf(th.Value, 0) {
			t.Fatalf("parseThreshold(%q) accepted value %v", s, th.Value)
		}
		again := th.Metric + th.Op + strconv.FormatFloat(th.Value, 'g', -1, 64)
		th2, err := parseThreshold(again)
		if err != nil || th2 != th {
			t.Fatalf("parseThreshold(%q) = %+v, but its printed form %q parses to %+v, %v", s, th, again, th2, err)
		}
	})
}
