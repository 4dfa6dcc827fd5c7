package workflows

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
)

func TestRegisterRequestLimits(t *testing.T) {
	base := func() RegisterRequest {
		return RegisterRequest{SchemaVersion: SchemaVersion, Model: "fraud", IdempotencyKey: "k",
			Source: ArtifactSource{Files: []artifact.FileEntry{{Path: "model.bin", Size: 1, SHA256: strings.Repeat("a", 64)}}}}
	}
	files := func(n int) []artifact.FileEntry {
		out := make([]artifact.FileEntry, n)
		for i := range out {
			out[i] = artifact.FileEntry{Path: fmt.Sprintf("f%05d", i), Size: 1, SHA256: fmt.Sprintf("%064x", i)}
		}
		return out
	}
	listing := &artifact.ListingRef{SHA256: strings.Repeat("b", 64), Count: 100_000}

	good := map[string]func(r *RegisterRequest){
		"inline files at the limit": func(r *RegisterRequest) { r.Source.Files = files(MaxInlineFiles) },
		"listing":                   func(r *RegisterRequest) { r.Source.Files, r.Source.Listing = nil, listing },
		"paths that differ other than in case": func(r *RegisterRequest) {
			r.Source.Files = append(r.Source.Files, artifact.FileEntry{Path: "model.bin.sha256", Size: 1, SHA256: strings.Repeat("b", 64)},
				artifact.FileEntry{Path: "Data/a", Size: 1, SHA256: strings.Repeat("c", 64)}, artifact.FileEntry{Path: "data/b", Size: 1, SHA256: strings.Repeat("d", 64)})
		},
		"tags": func(r *RegisterRequest) {
			r.Tags = map[string]string{"team": "risk", "dataset": "tx-2026=q3", "a b": " padded value ", "é": ""}
		},
		"metrics at the limit": func(r *RegisterRequest) {
			r.Metrics = map[string]float64{}
			for i := range MaxMetrics {
				r.Metrics[fmt.Sprintf("m%d", i)] = float64(i)
			}
		},
	}
	for name, mod := range good {
		r := base()
		mod(&r)
		if err := r.Validate(); err != nil {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}

	bad := map[string]struct {
		mod  func(r *RegisterRequest)
		want []string
	}{
		"a NUL in a tag value": {func(r *RegisterRequest) { r.Tags = map[string]string{"k": "v\x00"} }, []string{"NUL character"}},
		"a NUL in a param":     {func(r *RegisterRequest) { r.Params = map[string]string{"lr\x00": "1"} }, []string{"NUL character"}},
		"too many inline files": {func(r *RegisterRequest) { r.Source.Files = files(MaxInlineFiles + 1) },
			[]string{"1001 files listed inline", "at most 1000", "source.listing"}},
		"20,001 inline files": {func(r *RegisterRequest) { r.Source.Files = files(20_001) }, []string{"20001 files listed inline"}},
		"too many metrics": {func(r *RegisterRequest) {
			r.Metrics = map[string]float64{}
			for i := range MaxMetrics + 1 {
				r.Metrics[fmt.Sprintf("m%d", i)] = 1
			}
		}, []string{"1001 metrics", "at most 1000"}},
		"too many params": {func(r *RegisterRequest) {
			r.Params = map[string]string{}
			for i := range MaxParams + 1 {
				r.Params[fmt.Sprintf("p%d", i)] = "v"
			}
		}, []string{"1001 params", "at most 1000"}},
		"request too large": {func(r *RegisterRequest) {
			r.Params = map[string]string{}
			for i := range 100 {
				r.Params[fmt.Sprintf("p%d", i)] = strings.Repeat("x", 4000)
			}
		}, []string{"bytes as JSON", fmt.Sprint(MaxRequestBytes)}},
		"paths that differ only in case": {func(r *RegisterRequest) {
			r.Source.Files = append(r.Source.Files, artifact.FileEntry{Path: "Model.bin", Size: 1, SHA256: strings.Repeat("b", 64)})
		}, []string{"source.files", `"model.bin"`, `"Model.bin"`, "case-insensitive"}},
		"paths equal under Unicode case folding": {func(r *RegisterRequest) {
			r.Source.Files = append(r.Source.Files, artifact.FileEntry{Path: "weights/STRASSE.bin", Size: 1, SHA256: strings.Repeat("b", 64)},
				artifact.FileEntry{Path: "weights/straße.bin", Size: 1, SHA256: strings.Repeat("c", 64)})
		}, []string{`"weights/STRASSE.bin"`, `"weights/straße.bin"`, "Unicode case folding"}},
		"a file and a directory that differ only in case": {func(r *RegisterRequest) {
			r.Source.Files = append(r.Source.Files, artifact.FileEntry{Path: "Config", Size: 1, SHA256: strings.Repeat("b", 64)},
				artifact.FileEntry{Path: "config/params.yaml", Size: 1, SHA256: strings.Repeat("c", 64)})
		}, []string{`"Config"`, `"config/params.yaml"`, "directory"}},
		"tag key with '='":           {func(r *RegisterRequest) { r.Tags = map[string]string{"team=risk": "x"} }, []string{`tag "team=risk"`, "'='"}},
		"tag key with a newline":     {func(r *RegisterRequest) { r.Tags = map[string]string{"team\n": "x"} }, []string{`tag "team\n"`, "control"}},
		"tag key with a DEL":         {func(r *RegisterRequest) { r.Tags = map[string]string{"te\x7fam": "x"} }, []string{`tag "te\x7fam"`, "control"}},
		"tag key with leading space": {func(r *RegisterRequest) { r.Tags = map[string]string{" team": "x"} }, []string{`tag " team"`, "white space"}},
		"tag key with trailing NBSP": {func(r *RegisterRequest) { r.Tags = map[string]string{"team\u00a0": "x"} }, []string{`tag "team\u00a0"`, "white space"}},
		"empty tag key":              {func(r *RegisterRequest) { r.Tags = map[string]string{"": "x"} }, []string{`tag ""`, "1-128 bytes"}},
		"files and listing":          {func(r *RegisterRequest) { r.Source.Listing = listing }, []string{"exactly one of uri, files or listing"}},
		"uri and listing":            {func(r *RegisterRequest) { r.Source = ArtifactSource{URI: "s3://b/p", Listing: listing} }, []string{"exactly one"}},
		"listing bad digest": {func(r *RegisterRequest) {
			r.Source = ArtifactSource{Listing: &artifact.ListingRef{SHA256: "xyz", Count: 2}}
		}, []string{"source.listing", "sha256"}},
		"listing zero count": {func(r *RegisterRequest) {
			r.Source = ArtifactSource{Listing: &artifact.ListingRef{SHA256: listing.SHA256}}
		}, []string{"source.listing", "count 0"}},
		"listing beyond limit": {func(r *RegisterRequest) {
			r.Source = ArtifactSource{Listing: &artifact.ListingRef{SHA256: listing.SHA256, Count: MaxListingFiles + 1}}
		}, []string{"source.listing", "count"}},
	}
	for name, c := range bad {
		r := base()
		c.mod(&r)
		err := r.Validate()
		if err == nil {
			t.Errorf("%s: Validate accepted the request", name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Validate = %q, want it to mention %q", name, err, w)
			}
		}
	}
}

// An update whose input Temporal could not record (over 2 MB it fails the workflow task, and Temporal
// terminates the workflow) or that is far larger than its request is refused before it is accepted, by
// the data converter as it decodes the input; so is one that smuggles payloads its handler never reads.
func TestOversizedUpdatesRefusedBeforeAcceptance(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 1}, promotion: map[int]PromotionInfo{1: approved()}}
	env := newModelEnvV1(t, fc)
	type result struct{ accepted, rejected bool }
	send := func(name string, args ...any) *result {
		r := &result{}
		env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnAccept:   func() { r.accepted = true },
			OnReject:   func(err error) { r.rejected = true; t.Logf("%s refused: %v", name, err) },
			OnComplete: func(any, error) {},
		}, args...)
		return r
	}
	var big, junk, twoArgs, fine, bigRegister *result
	env.RegisterDelayedCallback(func() {
		big = send(UpdatePromote, map[string]any{"schemaVersion": 1, "version": 1, "reason": strings.Repeat("x", 2<<20)})
		junk = send(UpdatePromote, map[string]any{"schemaVersion": 1, "version": 1, "junk": strings.Repeat("x", 100<<10)})
		twoArgs = send(UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 1}, strings.Repeat("y", 100<<10))
		bigRegister = send(UpdateRegister, map[string]any{"schemaVersion": 1, "model": "fraud", "idempotencyKey": "k",
			"source": map[string]any{"files": []any{}}, "padding": strings.Repeat("z", 1<<20)})
		fine = send(UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 1, Reason: strings.Repeat("r", MaxReasonBytes)})
	}, time.Second)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	for name, r := range map[string]*result{"2 MB reason": big, "100 KiB unknown field": junk, "second payload": twoArgs, "1 MiB register": bigRegister} {
		if !r.rejected || r.accepted {
			t.Errorf("%s: accepted %v, rejected %v; want refused before acceptance", name, r.accepted, r.rejected)
		}
	}
	if !fine.accepted {
		t.Errorf("a promote at its fields' limits was not accepted")
	}

	// Decisions and verdicts arrive as RawPayload (their handlers audit what they refuse); their
	// validators refuse the same way from the sizes the converter records.
	dc := NewDataConverter()
	for _, tc := range []struct {
		name string
		args []any
		ok   bool
	}{
		{"decision", []any{Decision{Approver: "alice"}}, true},
		{"70 KiB comment", []any{map[string]any{"approver": "alice", "comment": strings.Repeat("c", 70<<10)}}, false},
		{"second payload", []any{Decision{Approver: "alice"}, "x"}, false},
	} {
		ps, err := dc.ToPayloads(tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		var raw RawPayload
		if err := dc.FromPayloads(ps, &raw); err != nil {
			t.Fatal(err)
		}
		if err := checkRawMessage(raw, MaxSmallRequestBytes); (err == nil) != tc.ok {
			t.Errorf("%s: checkRawMessage = %v", tc.name, err)
		}
	}
}
