package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/modelreg/modelreg/internal/check"
)

func TestPrintReport(t *testing.T) {
	rep := check.Report{Models: 2, Versions: 5, Findings: []check.Finding{
		{Model: "fraud", Version: 3, Kind: check.KindStage, Detail: "catalog stage Approved, workflow stage Production"},
		{Model: "fraud", Kind: check.KindNextVersion, Detail: "model workflow's next version is 7, catalog's highest version is v5 (want next 6)"},
	}}
	var b bytes.Buffer
	printReport(&b, rep)
	want := "fraud v3: catalog stage Approved, workflow stage Production\n" +
		"fraud: model workflow's next version is 7, catalog's highest version is v5 (want next 6)\n" +
		"checked 2 models, 5 versions: 2 findings\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if got := errFindings(2).Error(); got != "consistency check: 2 findings" {
		t.Fatalf("error %q", got)
	}

	b.Reset()
	a := &app{out: &b, json: true}
	if err := a.printJSON(rep); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	fs := back["findings"].([]any)
	f0 := fs[0].(map[string]any)
	if back["models"] != 2.0 || back["versions"] != 5.0 || len(fs) != 2 || f0["model"] != "fraud" || f0["version"] != 3.0 || f0["kind"] != "stage" || f0["detail"] == "" {
		t.Fatalf("json %s", b.String())
	}
}

func TestCheckRefusesUnsafeModel(t *testing.T) {
	root := newRoot()
	root.SetArgs([]string{"check", "--model", "../etc"})
	if err := root.Execute(); err == nil {
		t.Fatal("check --model ../etc succeeded")
	}
}
