package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
)

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stored puts content in the fixture's store, as an upload by any route would.
func (f *fixture) stored(content []byte) artifact.FileEntry {
	f.t.Helper()
	file := filepath.Join(f.t.TempDir(), "blob")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		f.t.Fatal(err)
	}
	e, err := f.store.PutFile(context.Background(), file, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// versionWithFiles mints a version whose manifest lists files (path → content).
func (f *fixture) versionWithFiles(model string, files map[string][]byte) catalog.Version {
	f.t.Helper()
	ctx := context.Background()
	v, _, err := f.cat.MintVersion(ctx, catalog.Version{Model: model, IdempotencyKey: fmt.Sprintf("files-%d", time.Now().UnixNano()), RegisteredBy: "ci"})
	if err != nil {
		f.t.Fatal(err)
	}
	m := artifact.Manifest{SchemaVersion: artifact.ManifestSchemaVersion, Model: model, Version: v.Version, CreatedAt: time.Now().UTC()}
	for p, c := range files {
		e := f.stored(c)
		e.Path = p
		m.Files = append(m.Files, e)
	}
	uri, dg, err := f.store.PutManifest(ctx, m)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.cat.SetManifest(ctx, model, v.Version, uri, dg); err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) put(url, token string, body io.Reader, length int64) response {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPut, f.url+url, body)
	if err != nil {
		f.t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/octet-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// TestUploadThroughAPIDirectoryStore is the training job's side with the directory store: a plan that
// deduplicates, uploads through the API that refuse other bytes and leave nothing behind, and the
// refusals of every route.
func TestUploadThroughAPIDirectoryStore(t *testing.T) {
	f := newFixture(t)
	dir := f.store.(*artifact.Dir)
	weights := bytes.Repeat([]byte("weights "), 40_000)
	config := []byte(`{"layers": 12}`)
	known := f.stored([]byte("already in the store"))
	plan := UploadPlanRequest{Files: []artifact.FileEntry{
		{Path: "model/weights.bin", Size: int64(len(weights)), SHA256: hexSHA(weights)},
		{Path: "copy-of-weights.bin", Size: int64(len(weights)), SHA256: hexSHA(weights)},
		{Path: "config.json", Size: int64(len(config)), SHA256: hexSHA(config)},
		{Path: "known.txt", Size: known.Size, SHA256: known.SHA256},
	}}
	const uploads = "/v1/models/fraud/uploads"
	f.want(f.do("POST", uploads, "", plan), 401, "unauthenticated")
	f.want(f.do("POST", uploads, "wrong-token", plan), 401, "unauthenticated")
	f.want(f.do("POST", uploads, tokens["alice"], plan), 403, "forbidden")

	r := f.do("POST", uploads, tokens["ci"], plan)
	f.want(r, 200, "")
	var got UploadPlan
	r.json(t, &got)
	if len(got.Blobs) != 3 {
		t.Fatalf("plan of 4 files with 3 distinct blobs = %s", r.body)
	}
	byDigest := map[string]BlobPlan{}
	for _, b := range got.Blobs {
		byDigest[b.SHA256] = b
	}
	if b := byDigest[known.SHA256]; !b.Present || b.Upload != nil {
		t.Fatalf("a stored blob is planned as %+v, want present", b)
	}
	w := byDigest[hexSHA(weights)]
	if w.Present || w.Upload == nil || !w.Upload.Bearer || w.Upload.Method != "PUT" || w.Upload.URL != uploads+"/"+hexSHA(weights) ||
		w.Upload.Headers["Content-Length"] != fmt.Sprint(len(weights)) {
		t.Fatalf("a missing blob is planned as %+v", w)
	}

	// Bytes that are not the blob: refused, and nothing is kept, neither at the address nor staged.
	bad := bytes.Clone(weights)
	bad[1000] ^= 1
	for name, body := range map[string][]byte{"a flipped byte": bad, "another file": config} {
		r := f.put(w.Upload.URL, tokens["ci"], bytes.NewReader(body), int64(len(body)))
		f.want(r, 400, "digest_mismatch")
		if _, err := f.store.StatBlob(context.Background(), w.SHA256); !errors.Is(err, artifact.ErrNotFound) {
			t.Fatalf("after refusing %s the blob's address holds something: %v", name, err)
		}
		if left, _ := os.ReadDir(filepath.Join(dir.Root(), "tmp")); len(left) != 0 {
			t.Fatalf("after refusing %s, staged files remain: %v", name, left)
		}
	}
	f.want(f.put(w.Upload.URL, "", bytes.NewReader(weights), int64(len(weights))), 401, "unauthenticated")
	f.want(f.put(w.Upload.URL, tokens["alice"], bytes.NewReader(weights), int64(len(weights))), 403, "forbidden")
	f.want(f.put(uploads+"/not-a-digest", tokens["ci"], bytes.NewReader(weights), int64(len(weights))), 422, "invalid_request")
	// A chunked body has no declared size.
	f.want(f.put(w.Upload.URL, tokens["ci"], io.MultiReader(bytes.NewReader(weights)), -1), 411, "length_required")

	for _, b := range got.Blobs {
		if b.Present {
			continue
		}
		body := weights
		if b.SHA256 == hexSHA(config) {
			body = config
		}
		r := f.put(b.Upload.URL, tokens["ci"], bytes.NewReader(body), int64(len(body)))
		f.want(r, 201, "")
		var sb StoredBlob
		r.json(t, &sb)
		if sb.SHA256 != b.SHA256 || sb.Size != b.Size {
			t.Fatalf("stored %+v, want %s of %d bytes", sb, b.SHA256, b.Size)
		}
		if err := f.store.VerifyBlob(context.Background(), artifact.FileEntry{SHA256: b.SHA256, Size: b.Size}, nil); err != nil {
			t.Fatal(err)
		}
	}
	r = f.do("POST", uploads, tokens["ci"], plan)
	r.json(t, &got)
	for _, b := range got.Blobs {
		if !b.Present {
			t.Fatalf("after the uploads the plan still asks for %s", b.SHA256)
		}
	}

	// Refused plans.
	f.want(f.do("POST", uploads, tokens["ci"], UploadPlanRequest{Files: []artifact.FileEntry{{Path: "../x", SHA256: known.SHA256}}}), 400, "bad_file")
	f.want(f.do("POST", uploads, tokens["ci"], UploadPlanRequest{Files: []artifact.FileEntry{{Path: "x", SHA256: strings.ToUpper(known.SHA256)}}}), 400, "bad_file")
	f.want(f.do("POST", uploads, tokens["ci"], UploadPlanRequest{Files: []artifact.FileEntry{
		{Path: "a", SHA256: known.SHA256, Size: 1}, {Path: "b", SHA256: known.SHA256, Size: 2}}}), 400, "bad_file")
	f.want(f.do("POST", uploads, tokens["ci"], UploadPlanRequest{}), 400, "bad_file")
	// Paths one version cannot hold: the same twice, or two that a case-insensitive filesystem takes for one.
	f.want(f.do("POST", uploads, tokens["ci"], UploadPlanRequest{Files: []artifact.FileEntry{
		{Path: "x", SHA256: known.SHA256, Size: known.Size}, {Path: "x", SHA256: hexSHA(config), Size: int64(len(config))}}}), 400, "bad_file")
	r = f.do("POST", uploads, tokens["ci"], UploadPlanRequest{Files: []artifact.FileEntry{
		{Path: "model/weights.bin", SHA256: hexSHA(weights), Size: int64(len(weights))}, {Path: "Model/Weights.bin", SHA256: hexSHA(config), Size: int64(len(config))}}})
	f.want(r, 400, "bad_file")
	if msg := string(r.body); !strings.Contains(msg, `paths \"model/weights.bin\" and \"Model/Weights.bin\" differ only in case`) {
		t.Fatalf("plan of Model/Weights.bin and model/weights.bin refused with %s, want both paths named", msg)
	}
	f.want(f.do("POST", uploads, tokens["ci"], []byte(`{"files":[]}`)), 422, "invalid_request")
	huge := []byte(`{"files":[{"path":"` + strings.Repeat("x", 2<<20) + `","size":1,"sha256":"` + known.SHA256 + `"}]}`)
	f.want(f.do("POST", uploads, tokens["ci"], huge), 413, "body_too_large")
	f.want(f.do("POST", "/v1/models/Not%20A%20Model/uploads", tokens["ci"], plan), 400, "bad_model_name")

	// A registry that takes smaller files through its API refuses larger ones before reading them.
	small := New(Options{Catalog: f.cat, Store: f.store, Auth: f.srv.opts.Auth, MaxUploadBytes: 1 << 10})
	hs := httptest.NewServer(small.Handler())
	defer hs.Close()
	f.url = hs.URL
	f.want(f.do("POST", uploads, tokens["ci"], plan), 413, "too_large")
	f.want(f.put(uploads+"/"+hexSHA(weights), tokens["ci"], bytes.NewReader(weights), int64(len(weights))), 413, "too_large")
}

// TestDownloadThroughAPIDirectoryStore is the deployer's side: a version's files by path, with the
// headers a client checks, ranges, revalidation, and the errors.
func TestDownloadThroughAPIDirectoryStore(t *testing.T) {
	f := newFixture(t)
	weights := bytes.Repeat([]byte("0123456789"), 10_000)
	v := f.versionWithFiles("fraud", map[string][]byte{"model/weights.bin": weights, "README.md": []byte("# fraud\n")})
	url := fmt.Sprintf("/v1/models/fraud/versions/%d/files/model/weights.bin", v.Version)

	r := f.do("GET", url, "", nil)
	f.want(r, 200, "")
	sum := sha256.Sum256(weights)
	if !bytes.Equal(r.body, weights) || r.header.Get("Content-Length") != fmt.Sprint(len(weights)) ||
		r.header.Get("ETag") != `"`+hexSHA(weights)+`"` || r.header.Get("Repr-Digest") != "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":" ||
		r.header.Get("Content-Type") != "application/octet-stream" || !strings.Contains(r.header.Get("Content-Disposition"), "weights.bin") {
		t.Fatalf("download: %d bytes, headers %v", len(r.body), r.header)
	}
	r = f.do("GET", url, "", nil, "Range", "bytes=10-19")
	f.want(r, 206, "")
	if !bytes.Equal(r.body, weights[10:20]) {
		t.Fatalf("range 10-19 = %q", r.body)
	}
	f.want(f.do("GET", url, "", nil, "If-None-Match", `"`+hexSHA(weights)+`"`), 304, "")
	f.want(f.do("GET", fmt.Sprintf("/v1/models/fraud/versions/%d/files/README.md", v.Version), "", nil), 200, "")

	f.want(f.do("GET", fmt.Sprintf("/v1/models/fraud/versions/%d/files/model/other.bin", v.Version), "", nil), 404, "file_not_found")
	f.want(f.do("GET", fmt.Sprintf("/v1/models/fraud/versions/%d/files/model", v.Version), "", nil), 404, "file_not_found")
	f.want(f.do("GET", "/v1/models/fraud/versions/99/files/model/weights.bin", "", nil), 404, "not_found")
	f.want(f.do("GET", "/v1/models/nope/versions/1/files/model/weights.bin", "", nil), 404, "not_found")
	f.want(f.do("GET", "/v1/models/Bad%20Name/versions/1/files/x", "", nil), 400, "bad_model_name")
	f.want(f.do("GET", url, "wrong-token", nil), 401, "unauthenticated")
	unstored, _, err := f.cat.MintVersion(context.Background(), catalog.Version{Model: "fraud", IdempotencyKey: "no-manifest"})
	if err != nil {
		t.Fatal(err)
	}
	f.want(f.do("GET", fmt.Sprintf("/v1/models/fraud/versions/%d/files/x", unstored.Version), "", nil), 404, "no_files")
}
