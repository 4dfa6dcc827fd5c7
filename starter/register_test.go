package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/workflows"
)

func writeMetrics(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "metrics.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadMetrics(t *testing.T) {
	good := []struct {
		content string
		want    map[string]float64
	}{
		{`{"accuracy": 0.93, "auc": 0.97}`, map[string]float64{"accuracy": 0.93, "auc": 0.97}},
		{"\n  {\"loss\": -1.5e-3, \"n\": 12}\n\n", map[string]float64{"loss": -1.5e-3, "n": 12}},
		{`{}`, map[string]float64{}},
		{`{"big": 1e308, "tiny": 5e-324, "zero": 0}`, map[string]float64{"big": 1e308, "tiny": 5e-324, "zero": 0}},
	}
	for _, c := range good {
		got, err := readMetrics(writeMetrics(t, c.content))
		if err != nil {
			t.Errorf("readMetrics(%s) = %v", c.content, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("readMetrics(%s) = %v, want %v", c.content, got, c.want)
		}
	}

	bad := []struct {
		name, content string
		want          []string // all must appear in the message, besides the file's path
	}{
		{"NaN literal", `{"accuracy": NaN}`, []string{"not a JSON object of numbers"}},
		{"Infinity literal", `{"accuracy": Infinity}`, []string{"not a JSON object of numbers"}},
		{"overflows to +Inf", `{"accuracy": 1e400}`, []string{`metric "accuracy"`}},
		{"string value", `{"accuracy": "0.93"}`, []string{`metric "accuracy"`, `string "0.93"`, "not a number"}},
		{"boolean value", `{"ok": true}`, []string{`metric "ok"`, "not a number"}},
		{"null value", `{"auc": null}`, []string{`metric "auc"`, "null"}},
		{"nested object", `{"eval": {"accuracy": 0.9}}`, []string{`metric "eval"`, "object", "not a number"}},
		{"array value", `{"folds": [0.9, 0.8]}`, []string{`metric "folds"`, "array"}},
		{"trailing object", `{"a": 1} {"b": 2}`, []string{"data after its JSON object"}},
		{"trailing garbage", `{"a": 1} x`, []string{"data after its JSON object"}},
		{"trailing brace", `{"a": 1}}`, []string{"data after its JSON object"}},
		{"trailing bracket", `{"a": 1}]`, []string{"data after its JSON object"}},
		{"array", `[0.9, 0.8]`, []string{"not a JSON object of numbers"}},
		{"number", `0.93`, []string{"not a JSON object of numbers"}},
		{"null", `null`, []string{"not a JSON object of numbers"}},
		{"empty file", ``, []string{"not a JSON object of numbers"}},
		{"truncated", `{"a": 1`, []string{"not a JSON object of numbers"}},
		{"empty metric name", `{"": 1}`, []string{`metric name ""`}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			p := writeMetrics(t, c.content)
			got, err := readMetrics(p)
			if err == nil {
				t.Fatalf("readMetrics(%s) = %v, want an error", c.content, got)
			}
			for _, w := range append([]string{p}, c.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("readMetrics(%s) = %q, want it to mention %q", c.content, err, w)
				}
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "nope.json")
		if _, err := readMetrics(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "metrics file") {
			t.Fatalf("readMetrics(missing) = %v, want an error naming the metrics file %s", err, p)
		}
	})
	t.Run("directory", func(t *testing.T) {
		p := t.TempDir()
		if _, err := readMetrics(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Fatalf("readMetrics(directory) = %v, want an error naming %s", err, p)
		}
	})
}

func TestParseParams(t *testing.T) {
	good := []struct {
		in   []string
		want map[string]string
	}{
		{nil, nil},
		{[]string{}, nil},
		{[]string{"lr=0.01"}, map[string]string{"lr": "0.01"}},
		{[]string{"lr=0.01", "depth=8"}, map[string]string{"lr": "0.01", "depth": "8"}},
		{[]string{"expr=a=b"}, map[string]string{"expr": "a=b"}}, // only the first '=' splits
		{[]string{"empty="}, map[string]string{"empty": ""}},
		{[]string{"note=with spaces and ünïcödé"}, map[string]string{"note": "with spaces and ünïcödé"}},
		{[]string{"k=1", "k=2"}, map[string]string{"k": "2"}}, // the last one wins, like most CLIs
	}
	for _, c := range good {
		got, err := parseParams(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseParams(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range [][]string{{"lr"}, {"=0.01"}, {""}, {"lr=0.01", "depth"}} {
		got, err := parseParams(in)
		if err == nil {
			t.Errorf("parseParams(%q) = %v, want an error", in, got)
			continue
		}
		bad := in[len(in)-1]
		if !strings.Contains(err.Error(), "--param") || !strings.Contains(err.Error(), `"`+bad+`"`) || !strings.Contains(err.Error(), "key=value") {
			t.Errorf("parseParams(%q) = %q, want it to name --param %q and key=value", in, err, bad)
		}
	}
}

func TestParseTags(t *testing.T) {
	good := []struct {
		in   []string
		want map[string]string
	}{
		{nil, nil},
		{[]string{"team=risk"}, map[string]string{"team": "risk"}},
		{[]string{"team=risk", "dataset=tx-2026"}, map[string]string{"team": "risk", "dataset": "tx-2026"}},
		{[]string{"expr=a=b"}, map[string]string{"expr": "a=b"}}, // the first '=' ends the key
		{[]string{"flag="}, map[string]string{"flag": ""}},
		{[]string{"k=1", "k=2"}, map[string]string{"k": "2"}}, // the last one wins, as with --param
	}
	for _, c := range good {
		got, err := parseTags(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseTags(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for in, want := range map[string]string{
		"team":                             `--tag "team" is not key=value`,
		"=risk":                            `--tag "=risk" is not key=value`,
		" team=risk":                       `--tag: tag " team": keys may not begin or end with white space`,
		"team\t=risk":                      `--tag: tag "team\t": keys may not contain control characters`,
		strings.Repeat("k", 129) + "=v":    "keys must be 1-128 bytes",
		"team=" + strings.Repeat("v", 257): "values at most 256 bytes",
	} {
		got, err := parseTags([]string{"ok=1", in})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseTags(%q) = %v, %v; want an error containing %q", in, got, err, want)
		}
	}
}

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	shaC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

func baseRequest() workflows.RegisterRequest {
	return workflows.RegisterRequest{
		SchemaVersion: workflows.SchemaVersion,
		Model:         "fraud",
		Source: workflows.ArtifactSource{Files: []artifact.FileEntry{
			{Path: "model.bin", Size: 10, SHA256: shaA},
			{Path: "config/params.json", Size: 20, SHA256: shaB},
			{Path: "tokenizer.json", Size: 30, SHA256: shaC},
		}},
		Metrics:      map[string]float64{"accuracy": 0.93, "auc": 0.97},
		Params:       map[string]string{"lr": "0.01"},
		SourceRun:    "run-1",
		RegisteredBy: "alice",
	}
}

func TestContentKey(t *testing.T) {
	base := baseRequest()
	key := contentKey(base)
	if !strings.HasPrefix(key, "content-") || len(key) != len("content-")+40 {
		t.Fatalf("contentKey = %q, want content-<40 hex>", key)
	}
	// The key must be usable as an idempotency key.
	req := base
	req.IdempotencyKey = key
	if err := req.Validate(); err != nil {
		t.Fatalf("a request keyed with contentKey does not validate: %v", err)
	}
	if again := contentKey(baseRequest()); again != key {
		t.Fatalf("contentKey is not deterministic: %s then %s", key, again)
	}

	// Things that do not change what is registered keep the key.
	same := map[string]func(r *workflows.RegisterRequest){
		"files reversed": func(r *workflows.RegisterRequest) {
			f := r.Source.Files
			r.Source.Files = []artifact.FileEntry{f[2], f[1], f[0]}
		},
		"files rotated": func(r *workflows.RegisterRequest) {
			f := r.Source.Files
			r.Source.Files = []artifact.FileEntry{f[1], f[2], f[0]}
		},
		"metrics map rebuilt in another order": func(r *workflows.RegisterRequest) {
			r.Metrics = map[string]float64{"auc": 0.97, "accuracy": 0.93}
		},
		"registered by someone else": func(r *workflows.RegisterRequest) { r.RegisteredBy = "bob" },
		"explicit key already set":   func(r *workflows.RegisterRequest) { r.IdempotencyKey = "whatever" },
	}
	for name, mutate := range same {
		r := baseRequest()
		mutate(&r)
		if got := contentKey(r); got != key {
			t.Errorf("%s: contentKey = %s, want the unchanged %s", name, got, key)
		}
	}
	// contentKey must not reorder the caller's slice.
	r := baseRequest()
	r.Source.Files[0], r.Source.Files[2] = r.Source.Files[2], r.Source.Files[0]
	before := append([]artifact.FileEntry(nil), r.Source.Files...)
	contentKey(r)
	if !reflect.DeepEqual(r.Source.Files, before) {
		t.Errorf("contentKey reordered the request's files: %v, was %v", r.Source.Files, before)
	}

	// Anything that changes what is registered changes the key.
	differ := map[string]func(r *workflows.RegisterRequest){
		"a digest":           func(r *workflows.RegisterRequest) { r.Source.Files[1].SHA256 = shaC },
		"a size":             func(r *workflows.RegisterRequest) { r.Source.Files[0].Size++ },
		"a path":             func(r *workflows.RegisterRequest) { r.Source.Files[0].Path = "model2.bin" },
		"a file dropped":     func(r *workflows.RegisterRequest) { r.Source.Files = r.Source.Files[:2] },
		"a metric value":     func(r *workflows.RegisterRequest) { r.Metrics["accuracy"] = 0.931 },
		"a metric added":     func(r *workflows.RegisterRequest) { r.Metrics["f1"] = 0.5 },
		"a metric removed":   func(r *workflows.RegisterRequest) { delete(r.Metrics, "auc") },
		"a metric renamed":   func(r *workflows.RegisterRequest) { r.Metrics = map[string]float64{"acc": 0.93, "auc": 0.97} },
		"a param":            func(r *workflows.RegisterRequest) { r.Params["lr"] = "0.02" },
		"the source run":     func(r *workflows.RegisterRequest) { r.SourceRun = "run-2" },
		"the model":          func(r *workflows.RegisterRequest) { r.Model = "fraud2" },
		"an s3 source":       func(r *workflows.RegisterRequest) { r.Source = workflows.ArtifactSource{URI: "s3://b/runs/1"} },
		"digests swapped":    func(r *workflows.RegisterRequest) { r.Source.Files[0].SHA256, r.Source.Files[1].SHA256 = shaB, shaA },
		"no metrics at all":  func(r *workflows.RegisterRequest) { r.Metrics = nil },
		"no params at all":   func(r *workflows.RegisterRequest) { r.Params = nil },
		"no source run":      func(r *workflows.RegisterRequest) { r.SourceRun = "" },
		"metric moved slots": func(r *workflows.RegisterRequest) { r.Metrics = map[string]float64{"accuracy": 0.97, "auc": 0.93} },
	}
	seen := map[string]string{key: "base"}
	for name, mutate := range differ {
		r := baseRequest()
		mutate(&r)
		got := contentKey(r)
		if prev, dup := seen[got]; dup {
			t.Errorf("changing %s gives the same key as %s: %s", name, prev, got)
		}
		seen[got] = name
	}
	// Two different s3 sources differ too.
	a, b := baseRequest(), baseRequest()
	a.Source = workflows.ArtifactSource{URI: "s3://b/runs/1"}
	b.Source = workflows.ArtifactSource{URI: "s3://b/runs/2"}
	if contentKey(a) == contentKey(b) {
		t.Errorf("two s3 sources give the same key")
	}
}

// The default idempotency key names the files, not how they travel: a directory registered with its
// files inline and again (by a newer starter, or above the inline limit) with a listing is one version.
func TestContentKeySameForInlineAndListing(t *testing.T) {
	files := []artifact.FileEntry{{Path: "b.bin", Size: 2, SHA256: strings.Repeat("b", 64)}, {Path: "a.bin", Size: 1, SHA256: strings.Repeat("a", 64)}}
	inline := workflows.RegisterRequest{Model: "fraud", Source: workflows.ArtifactSource{Files: files}, SourceRun: "r"}
	listed := workflows.RegisterRequest{Model: "fraud", Source: workflows.ArtifactSource{Listing: &artifact.ListingRef{SHA256: strings.Repeat("c", 64), Count: 2}}, SourceRun: "r"}
	if a, b := contentKey(inline), contentKeyFiles(listed, files); a != b {
		t.Fatalf("key with the files inline %s, with a listing %s", a, b)
	}
	other := append([]artifact.FileEntry(nil), files...)
	other[0].SHA256 = strings.Repeat("d", 64)
	if contentKeyFiles(listed, other) == contentKey(inline) {
		t.Fatal("other files gave the same key")
	}
}
