package artifact

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func testManifest() Manifest {
	return Manifest{
		Model:   "fraud",
		Version: 7,
		Files: []FileEntry{
			{Path: "weights/model.bin", Size: 10, SHA256: strings.Repeat("ab", 32)},
			{Path: "config.json", Size: 0, SHA256: strings.Repeat("0", 64)},
			{Path: "a.b", Size: 1, SHA256: strings.Repeat("1", 64)},
		},
		CreatedAt: time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("X", -7200)),
	}
}

func TestEncodeManifestCanonical(t *testing.T) {
	m := testManifest()
	b, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	// Same manifest with files in another order and the time in another zone: same bytes.
	m2 := testManifest()
	m2.Files[0], m2.Files[2] = m2.Files[2], m2.Files[0]
	m2.CreatedAt = m2.CreatedAt.In(time.UTC)
	b2, err := EncodeManifest(m2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("equal manifests encode differently:\n%s\n%s", b, b2)
	}
	if m.Files[0].Path != "weights/model.bin" {
		t.Fatal("EncodeManifest reordered the caller's slice")
	}
	got, err := DecodeManifest(b)
	if err != nil {
		t.Fatalf("DecodeManifest(EncodeManifest(m)): %v", err)
	}
	var paths []string
	for _, f := range got.Files {
		paths = append(paths, f.Path)
	}
	// "a.b" < "config.json" < "weights/…" by bytes.
	if strings.Join(paths, ",") != "a.b,config.json,weights/model.bin" || got.SchemaVersion != 1 || !got.CreatedAt.Equal(m.CreatedAt) {
		t.Fatalf("round trip = %+v", got)
	}
	b3, _ := EncodeManifest(got)
	if !bytes.Equal(b, b3) {
		t.Fatal("decode then encode changed the bytes")
	}
	if !strings.Contains(string(b), `"schemaVersion": 1`) || !strings.HasSuffix(string(b), "}\n") {
		t.Fatalf("unexpected encoding:\n%s", b)
	}
}

func TestEncodeManifestRejects(t *testing.T) {
	for name, edit := range map[string]func(*Manifest){
		"duplicate path":      func(m *Manifest) { m.Files[1].Path = m.Files[0].Path },
		"file and directory":  func(m *Manifest) { m.Files[1].Path = "weights" },
		"uppercase sha":       func(m *Manifest) { m.Files[0].SHA256 = strings.Repeat("AB", 32) },
		"short sha":           func(m *Manifest) { m.Files[0].SHA256 = "abcd" },
		"prefixed sha":        func(m *Manifest) { m.Files[0].SHA256 = "sha256:" + strings.Repeat("a", 57) },
		"negative size":       func(m *Manifest) { m.Files[0].Size = -1 },
		"dotdot path":         func(m *Manifest) { m.Files[0].Path = "../model.bin" },
		"absolute path":       func(m *Manifest) { m.Files[0].Path = "/etc/passwd" },
		"unclean path":        func(m *Manifest) { m.Files[0].Path = "weights//model.bin" },
		"backslash path":      func(m *Manifest) { m.Files[0].Path = `weights\model.bin` },
		"empty path":          func(m *Manifest) { m.Files[0].Path = "" },
		"no files":            func(m *Manifest) { m.Files = nil },
		"bad model":           func(m *Manifest) { m.Model = "Fraud Model" },
		"zero version":        func(m *Manifest) { m.Version = 0 },
		"other schemaVersion": func(m *Manifest) { m.SchemaVersion = 2 },
		"case-variant paths":  func(m *Manifest) { m.Files[1].Path = "Weights/Model.bin" },
		"case-variant dir":    func(m *Manifest) { m.Files[1].Path = "WEIGHTS" },
	} {
		m := testManifest()
		edit(&m)
		if b, err := EncodeManifest(m); err == nil {
			t.Errorf("%s: EncodeManifest accepted it:\n%s", name, b)
		}
	}
}

func TestDecodeManifestStrict(t *testing.T) {
	good, err := EncodeManifest(testManifest())
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	for name, doc := range map[string]string{
		"unknown field":   strings.Replace(s, `"model"`, `"extra": 1, "model"`, 1),
		"schemaVersion 2": strings.Replace(s, `"schemaVersion": 1`, `"schemaVersion": 2`, 1),
		"no schema":       strings.Replace(s, `"schemaVersion": 1,`, ``, 1),
		"trailing data":   s + "{}",
		"unsorted":        strings.Replace(s, `"a.b"`, `"zz"`, 1),
		"bad sha":         strings.Replace(s, strings.Repeat("ab", 32), strings.Repeat("AB", 32), 1),
		"escaping":        strings.Replace(s, `"weights/model.bin"`, `"../model.bin"`, 1),
		"not json":        "manifest",
		"empty":           "",
		"files null":      strings.Replace(s, `"files": [`, `"files": null, "x": [`, 1),
		"wrong types":     strings.Replace(s, `"version": 7`, `"version": "7"`, 1),
		"negative len":    strings.Replace(s, `"size": 10`, `"size": -10`, 1),
	} {
		if m, err := DecodeManifest([]byte(doc)); err == nil {
			t.Errorf("%s: DecodeManifest accepted it: %+v", name, m)
		}
	}
	if _, err := DecodeManifest(good); err != nil {
		t.Fatalf("DecodeManifest(good): %v", err)
	}
}

func TestManifestDigest(t *testing.T) {
	if got, want := ManifestDigest(nil), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Fatalf("ManifestDigest(nil) = %s, want %s", got, want)
	}
}

// TestManifestCaseCollisions: a manifest whose paths a case-insensitive filesystem takes for one is not
// written (the error names both), but one written before that rule still reads, so its version can
// still be validated, checked and pulled where it always could.
func TestManifestCaseCollisions(t *testing.T) {
	m := testManifest()
	m.Files = append(m.Files, FileEntry{Path: "Config.JSON", Size: 1, SHA256: strings.Repeat("2", 64)})
	_, err := EncodeManifest(m)
	if err == nil || !strings.Contains(err.Error(), `"Config.JSON"`) || !strings.Contains(err.Error(), `"config.json"`) || !strings.Contains(err.Error(), "fraud v7") {
		t.Fatalf("EncodeManifest(Config.JSON and config.json) = %v, want an error naming both", err)
	}
	old := `{
  "schemaVersion": 1,
  "model": "fraud",
  "version": 7,
  "files": [
    {"path": "Model.bin", "size": 1, "sha256": "` + strings.Repeat("1", 64) + `"},
    {"path": "model.bin", "size": 1, "sha256": "` + strings.Repeat("2", 64) + `"}
  ],
  "createdAt": "2026-03-04T07:06:07Z"
}
`
	got, err := DecodeManifest([]byte(old))
	if err != nil || len(got.Files) != 2 {
		t.Fatalf("DecodeManifest(a manifest written before the case rule) = %+v, %v", got, err)
	}
}
