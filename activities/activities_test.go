package activities_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunWithServers(m)) }

const model = "fraud"

// harness is one backend combination: a real catalog, a real store, and the activities on top of them.
type harness struct {
	acts  *activities.Activities
	cat   *catalog.Catalog
	store artifact.Store
	dbURL string
	// src reads and writes the S3 server that registration sources come from (versitygw).
	src *s3.Client
	// overwriteBlob replaces a blob's bytes behind the store's back.
	overwriteBlob func(t *testing.T, sum string, data []byte)
	// deleteBlob removes a blob behind the store's back.
	deleteBlob func(t *testing.T, sum string)
	isS3       bool
}

type backend struct {
	name string
	new  func(t *testing.T, srv testenv.S3Server) *harness
}

var backends = []backend{
	{"SQLite+Dir", newDirHarness},
	{"Postgres+S3", newS3Harness},
}

var bucketSeq atomic.Int64

func uniqueBucket(kind string) string {
	return fmt.Sprintf("%s-%d-%d", kind, time.Now().UnixNano()%1e9, bucketSeq.Add(1))
}

func openCatalog(t *testing.T, url string) *catalog.Catalog {
	t.Helper()
	ctx := context.Background()
	c, err := catalog.Open(ctx, url)
	if err != nil {
		t.Fatalf("open catalog: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Migrate(ctx); err != nil {
		t.Fatalf("migrate catalog: %v", err)
	}
	return c
}

func s3Config(srv testenv.S3Server) artifact.S3Config {
	return artifact.S3Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey,
		SecretAccessKey: srv.SecretKey, PathStyle: true}
}

func sourceClient(t *testing.T, srv testenv.S3Server) *s3.Client {
	t.Helper()
	c, err := artifact.NewS3Client(context.Background(), s3Config(srv))
	if err != nil {
		t.Fatalf("S3 client: %v", err)
	}
	return c
}

func newDirHarness(t *testing.T, srv testenv.S3Server) *harness {
	url := "sqlite://" + filepath.Join(t.TempDir(), "catalog.db")
	cat := openCatalog(t, url)
	root := filepath.Join(t.TempDir(), "artifacts")
	store, err := artifact.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left, _ := os.ReadDir(filepath.Join(store.Root(), "tmp")); len(left) > 0 {
			t.Errorf("staging files left in the store: %v", left)
		}
	})
	h := &harness{cat: cat, store: store, dbURL: url, src: sourceClient(t, srv)}
	h.overwriteBlob = func(t *testing.T, sum string, data []byte) {
		p := filepath.Join(store.Root(), "blobs", "sha256", sum[:2], sum)
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.deleteBlob = func(t *testing.T, sum string) {
		if err := os.Remove(filepath.Join(store.Root(), "blobs", "sha256", sum[:2], sum)); err != nil {
			t.Fatal(err)
		}
	}
	h.acts = &activities.Activities{Catalog: cat, Store: store, SourceS3: h.src, TempDir: t.TempDir()}
	return h
}

func newS3Harness(t *testing.T, srv testenv.S3Server) *harness {
	url := testenv.Postgres(t)
	cat := openCatalog(t, url)
	ctx := context.Background()
	cfg := s3Config(srv)
	cfg.Bucket, cfg.Prefix = uniqueBucket("registry"), "models"
	store, err := artifact.NewS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureBucket(ctx); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	h := &harness{cat: cat, store: store, dbURL: url, src: sourceClient(t, srv), isS3: true}
	h.overwriteBlob = func(t *testing.T, sum string, data []byte) {
		key := "models/blobs/sha256/" + sum[:2] + "/" + sum
		if _, err := store.Client().PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(store.Bucket()), Key: &key, Body: bytes.NewReader(data)}); err != nil {
			t.Fatalf("raw PutObject %s: %v", key, err)
		}
	}
	h.deleteBlob = func(t *testing.T, sum string) {
		key := "models/blobs/sha256/" + sum[:2] + "/" + sum
		if _, err := store.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(store.Bucket()), Key: &key}); err != nil {
			t.Fatalf("raw DeleteObject %s: %v", key, err)
		}
	}
	h.acts = &activities.Activities{Catalog: cat, Store: store, SourceS3: h.src, TempDir: t.TempDir()}
	return h
}

// testWriter sends the SDK's log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// activityEnv is the SDK's activity test environment with h's activities registered, so heartbeats,
// heartbeat details and ApplicationErrors go through the SDK as they do in a worker.
func (h *harness) activityEnv(t *testing.T, acts *activities.Activities) *testsuite.TestActivityEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	env := s.NewTestActivityEnvironment()
	if acts == nil {
		acts = h.acts
	}
	env.RegisterActivity(acts)
	return env
}

// run executes one activity of h.acts in a fresh activity environment and decodes its result into out
// (which may be nil).
func (h *harness) run(t *testing.T, fn any, in any, out any) error {
	t.Helper()
	return runIn(t, h.activityEnv(t, nil), fn, in, out)
}

func runIn(t *testing.T, env *testsuite.TestActivityEnvironment, fn any, in any, out any) error {
	t.Helper()
	val, err := env.ExecuteActivity(fn, in)
	if err != nil {
		return err
	}
	if out != nil {
		if err := val.Get(out); err != nil {
			t.Fatalf("decode activity result: %v", err)
		}
	}
	return nil
}

// appError returns the ApplicationError err carries, failing t when there is none.
func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) carries no ApplicationError", err, err)
	}
	return ae
}

func wantBadSource(t *testing.T, what string, err error, mention ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want a %s error", what, activities.ErrTypeBadSource)
	}
	ae := appError(t, err)
	if ae.Type() != activities.ErrTypeBadSource || !ae.NonRetryable() {
		t.Fatalf("%s: error type %q non-retryable %t (%v), want non-retryable %s", what, ae.Type(), ae.NonRetryable(), err, activities.ErrTypeBadSource)
	}
	for _, m := range mention {
		if !strings.Contains(ae.Error(), m) {
			t.Errorf("%s: error %q does not mention %q", what, ae.Error(), m)
		}
	}
}

func createVersion(t *testing.T, h *harness, n int, metrics map[string]float64) catalog.Version {
	t.Helper()
	v := catalog.Version{
		Model: model, Version: n, IdempotencyKey: fmt.Sprintf("key-%d", n),
		WorkflowID: fmt.Sprintf("model/%s/v%d", model, n), Metrics: metrics,
		Params: map[string]string{"lr": "0.01"}, SourceRun: fmt.Sprintf("run-%d", n), RegisteredBy: "trainer", Seq: 1,
	}
	if err := h.run(t, h.acts.CreateVersion, v, nil); err != nil {
		t.Fatalf("CreateVersion v%d: %v", n, err)
	}
	return v
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// upload stores files (path → content) the way `starter register --dir` does and returns their entries
// in map-iteration (i.e. arbitrary) order.
func upload(t *testing.T, h *harness, files map[string][]byte) []artifact.FileEntry {
	t.Helper()
	dir := t.TempDir()
	var out []artifact.FileEntry
	i := 0
	for p, content := range files {
		local := filepath.Join(dir, fmt.Sprintf("f%d", i))
		i++
		if err := os.WriteFile(local, content, 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := h.store.PutFile(context.Background(), local, nil)
		if err != nil {
			t.Fatalf("PutFile %s: %v", p, err)
		}
		e.Path = p
		out = append(out, e)
	}
	return out
}

func sortedEntries(es []artifact.FileEntry) []artifact.FileEntry {
	out := append([]artifact.FileEntry(nil), es...)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// registered creates version n with the given metrics and files and stores its artifacts.
func registered(t *testing.T, h *harness, n int, metrics map[string]float64, files map[string][]byte) activities.StoreArtifactsResult {
	t.Helper()
	createVersion(t, h, n, metrics)
	var res activities.StoreArtifactsResult
	if err := h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: n, Files: upload(t, h, files)}, &res); err != nil {
		t.Fatalf("StoreArtifacts v%d: %v", n, err)
	}
	return res
}

func getVersion(t *testing.T, h *harness, n int) catalog.Version {
	t.Helper()
	v, err := h.cat.GetVersion(context.Background(), model, n)
	if err != nil {
		t.Fatalf("GetVersion v%d: %v", n, err)
	}
	return v
}

var cases = []struct {
	name string
	run  func(t *testing.T, h *harness)
}{
	{"StoreUploadedFiles", testStoreUploadedFiles},
	{"StoreNeverUploaded", testStoreNeverUploaded},
	{"StoreFromS3Source", testStoreFromS3Source},
	{"StoreAfterCatalogOutage", testStoreAfterCatalogOutage},
	{"ValidatePasses", testValidatePasses},
	{"ValidateFailures", testValidateFailures},
	{"ValidateIntegrity", testValidateIntegrity},
	{"ValidateDeletedBlob", testValidateDeletedBlob},
	{"ValidateAttestedOrRehashed", testValidateAttestedOrRehashed},
	{"ValidateChampion", testValidateChampion},
	{"ArchivedMark", testArchivedMark},
	{"NotifyDeployment", testNotifyDeployment},
	{"NotifyWithoutWebhooks", testNotifyWithoutWebhooks},
}

func TestActivities(t *testing.T) {
	srv := testenv.S3(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, b.new(t, srv))
				})
			}
		})
	}
}

func testStoreUploadedFiles(t *testing.T, h *harness) {
	ctx := context.Background()
	v := createVersion(t, h, 1, map[string]float64{"accuracy": 0.93})
	// CreateVersion is idempotent; the same number under another key is refused for good.
	if err := h.run(t, h.acts.CreateVersion, v, nil); err != nil {
		t.Fatalf("CreateVersion retried: %v", err)
	}
	other := v
	other.IdempotencyKey = "another-key"
	err := h.run(t, h.acts.CreateVersion, other, nil)
	if ae := appError(t, err); ae.Type() != activities.ErrTypeBadRequest || !ae.NonRetryable() {
		t.Fatalf("CreateVersion under another key = %v, want non-retryable %s", err, activities.ErrTypeBadRequest)
	}

	files := map[string][]byte{
		"model.bin":          randomBytes(t, 300_000),
		"config/params.json": []byte(`{"lr": 0.01}`),
		"empty.txt":          nil,
	}
	entries := upload(t, h, files)
	var total int64
	for _, c := range files {
		total += int64(len(c))
	}
	in := activities.StoreArtifactsInput{Model: model, Version: 1, Files: entries}
	var res activities.StoreArtifactsResult
	if err := h.run(t, h.acts.StoreArtifacts, in, &res); err != nil {
		t.Fatalf("StoreArtifacts: %v", err)
	}
	if res.Files != 3 || res.TotalBytes != total {
		t.Errorf("result counts %d files, %d bytes; want 3, %d", res.Files, res.TotalBytes, total)
	}
	if res.ManifestURI != h.store.ManifestURI(model, 1) || !strings.HasPrefix(res.ManifestDigest, "sha256:") || len(res.ManifestDigest) != 7+64 {
		t.Errorf("result %+v, want manifest URI %s and a sha256:<hex> digest", res, h.store.ManifestURI(model, 1))
	}

	m, digest, err := h.store.GetManifest(ctx, model, 1)
	if err != nil {
		t.Fatalf("GetManifest: %v", err)
	}
	if digest != res.ManifestDigest {
		t.Errorf("stored manifest digest %s, result says %s", digest, res.ManifestDigest)
	}
	if !reflect.DeepEqual(m.Files, sortedEntries(entries)) {
		t.Errorf("manifest files %+v, want %+v sorted by path", m.Files, entries)
	}
	for _, f := range m.Files {
		if f.SHA256 != sha(files[f.Path]) || f.Size != int64(len(files[f.Path])) {
			t.Errorf("manifest entry %+v does not describe the registered bytes", f)
		}
	}
	row := getVersion(t, h, 1)
	if m.Model != model || m.Version != 1 || !m.CreatedAt.Equal(row.CreatedAt.UTC().Truncate(time.Second)) {
		t.Errorf("manifest is for %s v%d created %s; want %s v1 created at the catalog row's %s", m.Model, m.Version, m.CreatedAt, model, row.CreatedAt)
	}
	if row.ManifestURI != res.ManifestURI || row.ManifestDigest != res.ManifestDigest {
		t.Errorf("catalog row has manifest %q %q, want %q %q", row.ManifestURI, row.ManifestDigest, res.ManifestURI, res.ManifestDigest)
	}

	// A retry (the worker died after writing, say), even with the files listed in another order,
	// writes the same bytes: same digest, no conflict.
	for i := 0; i < 2; i++ {
		retry := in
		retry.Files = append([]artifact.FileEntry(nil), entries...)
		if i == 1 {
			sort.Slice(retry.Files, func(a, b int) bool { return retry.Files[a].Path > retry.Files[b].Path })
		}
		var again activities.StoreArtifactsResult
		if err := h.run(t, h.acts.StoreArtifacts, retry, &again); err != nil {
			t.Fatalf("StoreArtifacts retried: %v", err)
		}
		if again != res {
			t.Fatalf("StoreArtifacts retried = %+v, first run %+v", again, res)
		}
	}
	if _, d, _ := h.store.GetManifest(ctx, model, 1); d != res.ManifestDigest {
		t.Fatalf("manifest changed on retry: %s, was %s", d, res.ManifestDigest)
	}

	// Other files for the same version contradict the write-once manifest.
	changed := in
	changed.Files = upload(t, h, map[string][]byte{"model.bin": []byte("other weights")})
	wantBadSource(t, "StoreArtifacts with other files", h.run(t, h.acts.StoreArtifacts, changed, nil))
	if _, d, _ := h.store.GetManifest(ctx, model, 1); d != res.ManifestDigest {
		t.Fatalf("a conflicting StoreArtifacts changed the manifest: %s, was %s", d, res.ManifestDigest)
	}
}

func testStoreNeverUploaded(t *testing.T, h *harness) {
	ctx := context.Background()
	createVersion(t, h, 1, nil)
	uploaded := upload(t, h, map[string][]byte{"model.bin": []byte("weights")})
	ghost := artifact.FileEntry{Path: "weights/ghost.bin", Size: 5, SHA256: sha([]byte("never stored"))}

	check := func(what string, err error, mention ...string) {
		t.Helper()
		wantBadSource(t, what, err, mention...)
		if _, _, err := h.store.GetManifest(ctx, model, 1); !errors.Is(err, artifact.ErrNotFound) {
			t.Fatalf("%s: GetManifest = %v, want ErrNotFound (nothing written)", what, err)
		}
		if row := getVersion(t, h, 1); row.ManifestURI != "" || row.ManifestDigest != "" {
			t.Fatalf("%s: catalog row has manifest %q %q, want none", what, row.ManifestURI, row.ManifestDigest)
		}
	}
	check("StoreArtifacts with a file never uploaded",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 1,
			Files: []artifact.FileEntry{uploaded[0], ghost}}, nil),
		"weights/ghost.bin", "never uploaded")

	// Paths a case-insensitive filesystem takes for one: the register update refuses them now, but a
	// request it accepted before it did may still reach this activity.
	cased := uploaded[0]
	cased.Path = "MODEL.bin"
	check("StoreArtifacts with paths differing only in case",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 1,
			Files: []artifact.FileEntry{uploaded[0], cased}}, nil),
		`"MODEL.bin"`, `"model.bin"`, "case-insensitive")

	wrongSize := uploaded[0]
	wrongSize.Size++
	check("StoreArtifacts with a wrong size",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 1,
			Files: []artifact.FileEntry{wrongSize}}, nil),
		"model.bin", fmt.Sprint(wrongSize.Size))

	check("StoreArtifacts with no files",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 1}, nil),
		"no artifact files")

	// The version can still be stored properly afterwards.
	if err := h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 1, Files: uploaded}, nil); err != nil {
		t.Fatalf("StoreArtifacts after the refusals: %v", err)
	}
}

func testStoreFromS3Source(t *testing.T, h *harness) {
	ctx := context.Background()
	bucket := uniqueBucket("training")
	if _, err := h.src.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("CreateBucket %s: %v", bucket, err)
	}
	objects := map[string][]byte{
		"model.bin":          randomBytes(t, 6<<20+123), // above the multipart threshold
		"config/params.json": []byte(`{"depth": 8}`),
		"empty.txt":          nil,
	}
	put := func(key string, body []byte) {
		if _, err := h.src.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatalf("PutObject %s: %v", key, err)
		}
	}
	for p, body := range objects {
		put("runs/8812/"+p, body)
	}
	put("runs/88120/not-mine.bin", []byte("a sibling run sharing the string prefix"))

	createVersion(t, h, 1, nil)
	env := h.activityEnv(t, nil)
	var res activities.StoreArtifactsResult
	in := activities.StoreArtifactsInput{Model: model, Version: 1, SourceURI: "s3://" + bucket + "/runs/8812/"}
	if err := runIn(t, env, h.acts.StoreArtifacts, in, &res); err != nil {
		t.Fatalf("StoreArtifacts from %s: %v", in.SourceURI, err)
	}
	var total int64
	for _, b := range objects {
		total += int64(len(b))
	}
	if res.Files != len(objects) || res.TotalBytes != total {
		t.Errorf("result %+v, want %d files and %d bytes", res, len(objects), total)
	}
	m, _, err := h.store.GetManifest(ctx, model, 1)
	if err != nil {
		t.Fatalf("GetManifest: %v", err)
	}
	var paths []string
	for _, f := range m.Files {
		paths = append(paths, f.Path)
		body, ok := objects[f.Path]
		if !ok || f.SHA256 != sha(body) || f.Size != int64(len(body)) {
			t.Errorf("manifest entry %+v does not match the source object", f)
			continue
		}
		if err := h.store.VerifyBlob(ctx, f, nil); err != nil {
			t.Errorf("imported blob %s: %v", f.Path, err)
		}
	}
	if want := []string{"config/params.json", "empty.txt", "model.bin"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("manifest paths %v, want %v", paths, want)
	}
	if row := getVersion(t, h, 1); row.ManifestDigest != res.ManifestDigest {
		t.Errorf("catalog digest %q, result %q", row.ManifestDigest, res.ManifestDigest)
	}
	// A retry imports again and lands on the same manifest.
	var again activities.StoreArtifactsResult
	if err := h.run(t, h.acts.StoreArtifacts, in, &again); err != nil || again != res {
		t.Fatalf("StoreArtifacts retried = %+v, %v; want %+v", again, err, res)
	}
	if left, _ := os.ReadDir(h.acts.TempDir); len(left) > 0 {
		t.Errorf("import left files in its temp dir: %v", left)
	}

	createVersion(t, h, 2, nil)
	missing := "s3://" + uniqueBucket("no-such-bucket") + "/runs/1"
	wantBadSource(t, "StoreArtifacts from a bucket that does not exist",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 2, SourceURI: missing}, nil),
		"does not exist")
	wantBadSource(t, "StoreArtifacts from an empty prefix",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 2, SourceURI: "s3://" + bucket + "/runs/nothing"}, nil),
		"no objects")
	// S3 keys are case-sensitive, a version's paths may not be: refused for good before any download.
	put("runs/cased/Model.bin", []byte("upper"))
	put("runs/cased/model.bin", []byte("lower"))
	wantBadSource(t, "StoreArtifacts from a prefix holding Model.bin and model.bin",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 2, SourceURI: "s3://" + bucket + "/runs/cased"}, nil),
		`"Model.bin"`, `"model.bin"`, "differ only in case")
	if left, _ := os.ReadDir(h.acts.TempDir); len(left) > 0 {
		t.Errorf("a refused import left files in its temp dir: %v", left)
	}
	noS3 := *h.acts
	noS3.SourceS3 = nil
	wantBadSource(t, "StoreArtifacts from s3:// without a source client",
		runIn(t, h.activityEnv(t, &noS3), noS3.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 2, SourceURI: in.SourceURI}, nil),
		"no S3 client")
	if _, _, err := h.store.GetManifest(ctx, model, 2); !errors.Is(err, artifact.ErrNotFound) {
		t.Fatalf("a refused import wrote a manifest: %v", err)
	}
}

// testStoreAfterCatalogOutage: an attempt that fails because the catalog is unreachable must not leave
// a manifest behind that the next attempt contradicts (the manifest is write-once, so that would fail
// the version for good over a transient error).
func testStoreAfterCatalogOutage(t *testing.T, h *harness) {
	createVersion(t, h, 1, nil)
	files := upload(t, h, map[string][]byte{"model.bin": []byte("weights")})
	in := activities.StoreArtifactsInput{Model: model, Version: 1, Files: files}

	down := *h.acts
	down.Catalog = openCatalog(t, h.dbURL)
	down.Catalog.Close()
	if err := runIn(t, h.activityEnv(t, &down), down.StoreArtifacts, in, nil); err == nil {
		t.Fatal("StoreArtifacts with the catalog down succeeded")
	} else if ae := appError(t, err); ae.NonRetryable() {
		t.Fatalf("StoreArtifacts with the catalog down = %v, want a retryable error", err)
	}

	var res activities.StoreArtifactsResult
	if err := h.run(t, h.acts.StoreArtifacts, in, &res); err != nil {
		t.Fatalf("StoreArtifacts once the catalog is back: %v", err)
	}
	m, _, err := h.store.GetManifest(context.Background(), model, 1)
	if err != nil {
		t.Fatal(err)
	}
	if row := getVersion(t, h, 1); !m.CreatedAt.Equal(row.CreatedAt.UTC().Truncate(time.Second)) {
		t.Fatalf("manifest createdAt %s, want the catalog row's %s", m.CreatedAt, row.CreatedAt)
	}
}

func setPolicy(t *testing.T, h *harness, p catalog.Policy) {
	t.Helper()
	if err := h.cat.SetPolicy(context.Background(), model, p); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
}

func validate(t *testing.T, h *harness, n int, metrics map[string]float64) activities.ValidationReport {
	t.Helper()
	var rep activities.ValidationReport
	if err := h.run(t, h.acts.Validate, activities.ValidateInput{Model: model, Version: n, Metrics: metrics}, &rep); err != nil {
		t.Fatalf("Validate v%d: %v", n, err)
	}
	return rep
}

func check(t *testing.T, rep activities.ValidationReport, name string) activities.ValidationCheck {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("report has no check %q: %+v", name, rep.Checks)
	return activities.ValidationCheck{}
}

// wantFailed asserts the report failed exactly the named checks, each with a detail containing the
// given text, and that Failures() lists them.
func wantFailed(t *testing.T, rep activities.ValidationReport, failed map[string]string) {
	t.Helper()
	if rep.Passed {
		t.Fatalf("report passed, want failures %v: %+v", failed, rep.Checks)
	}
	for name, detail := range failed {
		c := check(t, rep, name)
		if c.Passed || !strings.Contains(c.Detail, detail) {
			t.Errorf("check %q = passed %t, %q; want failed with %q", name, c.Passed, c.Detail, detail)
		}
	}
	for _, c := range rep.Checks {
		if _, want := failed[c.Name]; !want && !c.Passed {
			t.Errorf("check %q failed unexpectedly: %s", c.Name, c.Detail)
		}
	}
	if got := len(rep.Failures()); got != len(failed) {
		t.Errorf("Failures() = %q, want %d entries", rep.Failures(), len(failed))
	}
	for _, f := range rep.Failures() {
		name, _, _ := strings.Cut(f, ": ")
		if _, ok := failed[name]; !ok {
			t.Errorf("Failures() lists %q", f)
		}
	}
}

func wantPassed(t *testing.T, rep activities.ValidationReport, checks ...string) {
	t.Helper()
	if !rep.Passed || len(rep.Failures()) != 0 {
		t.Fatalf("report failed: %q", rep.Failures())
	}
	for _, name := range checks {
		if c := check(t, rep, name); !c.Passed {
			t.Errorf("check %q failed: %s", name, c.Detail)
		}
	}
	if len(rep.Checks) != len(checks) {
		t.Errorf("report has %d checks, want %d (%v): %+v", len(rep.Checks), len(checks), checks, rep.Checks)
	}
}

var gates = catalog.Policy{
	Thresholds: []catalog.Threshold{
		{Metric: "accuracy", Op: ">=", Value: 0.9},
		{Metric: "loss", Op: "<", Value: 0.5},
	},
	RequiredFiles: []string{"model.bin", "config/params.json"},
}

var twoFiles = map[string][]byte{"model.bin": []byte("weights"), "config/params.json": []byte("{}")}

func testValidatePasses(t *testing.T, h *harness) {
	metrics := map[string]float64{"accuracy": 0.93, "loss": 0.2}
	registered(t, h, 1, metrics, twoFiles)

	// No policy set at all: integrity is the only check.
	rep := validate(t, h, 1, metrics)
	wantPassed(t, rep, "integrity")
	if d := check(t, rep, "integrity").Detail; !strings.Contains(d, "2 files") {
		t.Errorf("integrity detail %q, want it to count 2 files", d)
	}

	setPolicy(t, h, gates)
	rep = validate(t, h, 1, metrics)
	wantPassed(t, rep, "integrity", "required-files", "threshold accuracy >= 0.9", "threshold loss < 0.5")
	if !reflect.DeepEqual(rep.Policy, gates) {
		t.Errorf("report carries policy %+v, want the one validated against %+v", rep.Policy, gates)
	}
	// Boundaries: >= accepts equality.
	wantPassed(t, validate(t, h, 1, map[string]float64{"accuracy": 0.9, "loss": 0.4999}),
		"integrity", "required-files", "threshold accuracy >= 0.9", "threshold loss < 0.5")
}

func testValidateFailures(t *testing.T, h *harness) {
	registered(t, h, 1, nil, twoFiles)
	setPolicy(t, h, gates)

	wantFailed(t, validate(t, h, 1, map[string]float64{"accuracy": 0.85, "loss": 0.2}),
		map[string]string{"threshold accuracy >= 0.9": "accuracy = 0.85"})
	wantFailed(t, validate(t, h, 1, map[string]float64{"accuracy": 0.95, "loss": 0.5}),
		map[string]string{"threshold loss < 0.5": "loss = 0.5"})
	wantFailed(t, validate(t, h, 1, map[string]float64{"accuracy": 0.95}),
		map[string]string{"threshold loss < 0.5": `metric "loss" was not reported`})

	p := gates
	p.RequiredFiles = []string{"model.bin", "tokenizer.json", "config/params.json", "vocab.txt"}
	setPolicy(t, h, p)
	wantFailed(t, validate(t, h, 1, map[string]float64{"accuracy": 0.95, "loss": 0.1}),
		map[string]string{"required-files": "missing tokenizer.json, vocab.txt"})

	// An unknown operator cannot be stored (the catalog refuses the policy), so Validate never sees one.
	p.Thresholds = append(p.Thresholds, catalog.Threshold{Metric: "auc", Op: "==", Value: 1})
	if err := h.cat.SetPolicy(context.Background(), model, p); err == nil || !strings.Contains(err.Error(), "thresholds[2].op") {
		t.Fatalf("SetPolicy with op ==: %v, want a refusal naming thresholds[2].op", err)
	}

	// Validating a version with no manifest is an error to retry, not a verdict.
	createVersion(t, h, 2, nil)
	if err := h.run(t, h.acts.Validate, activities.ValidateInput{Model: model, Version: 2}, nil); err == nil ||
		!strings.Contains(err.Error(), "manifest") {
		t.Fatalf("Validate without a manifest = %v, want an error about the manifest", err)
	}
}

func testValidateIntegrity(t *testing.T, h *harness) {
	weights := randomBytes(t, 70_000)
	registered(t, h, 1, nil, map[string][]byte{"model.bin": weights, "config/params.json": []byte("{}")})
	wantPassed(t, validate(t, h, 1, nil), "integrity")

	sum := sha(weights)
	corrupt := bytes.Clone(weights)
	corrupt[len(corrupt)/2] ^= 0x01
	h.overwriteBlob(t, sum, corrupt) // same size, one bit flipped
	rep := validate(t, h, 1, nil)
	wantFailed(t, rep, map[string]string{"integrity": "model.bin"})
	if d := check(t, rep, "integrity").Detail; !strings.Contains(d, "1 of 2 files") || strings.Contains(d, "params.json") {
		t.Errorf("integrity detail %q, want exactly model.bin named", d)
	}

	h.overwriteBlob(t, sum, weights[:100]) // truncated
	wantFailed(t, validate(t, h, 1, nil), map[string]string{"integrity": "model.bin"})

	h.overwriteBlob(t, sum, weights) // repaired
	wantPassed(t, validate(t, h, 1, nil), "integrity")
}

// testValidateAttestedOrRehashed: on S3, validation believes the store's own full-object SHA-256
// checksum instead of reading every byte back, and the policy's rehashArtifacts reads them back. A blob
// replaced by hand is caught either way: with no checksum, with the checksum of its own bytes, or as a
// multipart object whose composite checksum is genuine and the address copied into its metadata (which
// S3 cannot attest, so it is re-hashed).
func testValidateAttestedOrRehashed(t *testing.T, h *harness) {
	weights := randomBytes(t, 70_000)
	registered(t, h, 1, nil, map[string][]byte{"model.bin": weights, "config/params.json": []byte("{}")})
	rep := validate(t, h, 1, nil)
	wantPassed(t, rep, "integrity")
	d := check(t, rep, "integrity").Detail
	if !h.isS3 {
		// A directory store re-reads every byte: it has no checksum of its own to believe.
		if !strings.Contains(d, "every SHA-256 verified") {
			t.Fatalf("integrity detail on a directory store %q", d)
		}
		return
	}
	if !strings.Contains(d, "2 attested by the store's SHA-256 checksums, 0 re-hashed") {
		t.Fatalf("integrity detail %q, want both files attested", d)
	}
	sum := sha(weights)
	corrupt := bytes.Clone(weights)
	corrupt[0] ^= 0x01
	// The checksum of the corrupt bytes themselves: the store does not attest the address.
	s3store := h.store.(*artifact.S3)
	key := strings.TrimPrefix(s3store.BlobURI(sum), "s3://"+s3store.Bucket()+"/")
	ctx := context.Background()
	if _, err := s3store.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s3store.Bucket()), Key: &key,
		Body: bytes.NewReader(corrupt), ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256}); err != nil {
		t.Fatal(err)
	}
	wantFailed(t, validate(t, h, 1, nil), map[string]string{"integrity": "model.bin"})
	// A multipart object of other bytes with the address in its metadata: not attested, so re-hashed.
	up, err := s3store.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s3store.Bucket()), Key: &key,
		ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256, Metadata: map[string]string{"sha256": sum}})
	if err != nil {
		t.Fatal(err)
	}
	part, err := s3store.Client().UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(s3store.Bucket()), Key: &key, UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(corrupt), ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3store.Client().CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(s3store.Bucket()), Key: &key, UploadId: up.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag, ChecksumSHA256: part.ChecksumSHA256}}}}); err != nil {
		t.Fatal(err)
	}
	wantFailed(t, validate(t, h, 1, nil), map[string]string{"integrity": "model.bin"})
	setPolicy(t, h, catalog.Policy{RehashArtifacts: true})
	wantFailed(t, validate(t, h, 1, nil), map[string]string{"integrity": "model.bin"})
	h.overwriteBlob(t, sum, weights)
	rep = validate(t, h, 1, nil)
	wantPassed(t, rep, "integrity")
	if d := check(t, rep, "integrity").Detail; !strings.Contains(d, "every SHA-256 verified") {
		t.Fatalf("integrity detail with rehashArtifacts %q", d)
	}
}

// testValidateDeletedBlob: a blob that vanished from the store between registration and validation is
// a failed integrity check naming the file — a verdict that rejects the version — not an error that
// would retry Validate for as long as the blob stays gone.
func testValidateDeletedBlob(t *testing.T, h *harness) {
	weights := randomBytes(t, 70_000)
	registered(t, h, 1, nil, map[string][]byte{"model.bin": weights, "config/params.json": []byte("{}")})
	h.deleteBlob(t, sha(weights))
	rep := validate(t, h, 1, nil)
	wantFailed(t, rep, map[string]string{"integrity": "model.bin"})
	d := check(t, rep, "integrity").Detail
	if !strings.Contains(d, "1 of 2 files") || strings.Contains(d, "params.json") || !strings.Contains(d, "not found") {
		t.Errorf("integrity detail %q, want model.bin alone, as not found", d)
	}
}

// promoteV1 puts v1 (accuracy 0.95) in production through the catalog, as ModelWorkflow would.
func promoteV1(t *testing.T, h *harness, seq ...int64) {
	t.Helper()
	ctx := context.Background()
	v := catalog.Version{Model: model, Version: 1, IdempotencyKey: "key-1", WorkflowID: "model/fraud/v1",
		Metrics: map[string]float64{"accuracy": 0.95, "loss": 0.1}, Seq: 1}
	if err := h.cat.CreateVersion(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cat.RecordTransition(ctx, catalog.Transition{Model: model, Version: 1, Seq: 2,
		From: catalog.StageRegistered, To: catalog.StageProduction, Actor: "alice", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	one, at := 1, int64(1)
	if len(seq) > 0 {
		at = seq[0]
	}
	if applied, err := h.cat.SetProduction(ctx, model, &one, at); err != nil || !applied {
		t.Fatalf("SetProduction = %t, %v", applied, err)
	}
}

func testValidateChampion(t *testing.T, h *harness) {
	const name = "champion accuracy"
	registered(t, h, 2, nil, twoFiles)
	setPolicy(t, h, catalog.Policy{ChampionMetric: "accuracy", ChampionTolerance: 0.02})

	// Nothing in production yet: nothing to lose against.
	rep := validate(t, h, 2, map[string]float64{"accuracy": 0.5})
	wantPassed(t, rep, "integrity", name)
	if rep.ChampionVersion != 0 || rep.ChampionValue != nil || !strings.Contains(check(t, rep, name).Detail, "no production version") {
		t.Errorf("without production: champion v%d, detail %q", rep.ChampionVersion, check(t, rep, name).Detail)
	}

	// The pointer caught between its two writes (it names v3, whose stage is not Production yet): the
	// activity fails, to be retried, instead of failing the challenger's check.
	ctx := context.Background()
	if err := h.cat.CreateVersion(ctx, catalog.Version{Model: model, Version: 3, IdempotencyKey: "key-3", WorkflowID: "model/fraud/v3", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	three := 3
	if _, err := h.cat.SetProduction(ctx, model, &three, 1); err != nil {
		t.Fatal(err)
	}
	var inc activities.ValidationReport
	err := h.run(t, h.acts.Validate, activities.ValidateInput{Model: model, Version: 2, Metrics: map[string]float64{"accuracy": 0.5}}, &inc)
	if err == nil || !strings.Contains(err.Error(), "inconsistent") {
		t.Fatalf("Validate while the pointer names a version not in Production = %+v, %v; want a retryable error", inc, err)
	}
	if _, err := h.cat.SetProduction(ctx, model, nil, 2); err != nil {
		t.Fatal(err)
	}

	promoteV1(t, h, 3)
	for _, c := range []struct {
		accuracy    float64
		lowerBetter bool
		pass        bool
	}{
		{0.94, false, true},  // 0.01 worse, within 0.02
		{0.93, false, true},  // exactly the tolerance
		{0.99, false, true},  // better
		{0.90, false, false}, // 0.05 worse
		{0.929, false, false},
		{0.94, true, true},  // lower is better: 0.94 beats 0.95
		{0.90, true, true},  // much better
		{0.96, true, true},  // 0.01 worse, within tolerance
		{0.98, true, false}, // 0.03 worse
	} {
		setPolicy(t, h, catalog.Policy{ChampionMetric: "accuracy", ChampionTolerance: 0.02, ChampionLowerIsBetter: c.lowerBetter})
		rep := validate(t, h, 2, map[string]float64{"accuracy": c.accuracy})
		if rep.ChampionVersion != 1 || rep.ChampionValue == nil || *rep.ChampionValue != 0.95 {
			t.Errorf("accuracy %g: champion v%d (value %v), want v1 with 0.95", c.accuracy, rep.ChampionVersion, rep.ChampionValue)
		}
		got := check(t, rep, name)
		if got.Passed != c.pass || rep.Passed != c.pass {
			t.Errorf("accuracy %g (lower is better %t) vs production 0.95, tolerance 0.02: check passed %t, report %t; want %t (%s)",
				c.accuracy, c.lowerBetter, got.Passed, rep.Passed, c.pass, got.Detail)
		}
		if want := fmt.Sprintf("v2 %g vs production v1 0.95", c.accuracy); !strings.Contains(got.Detail, want) {
			t.Errorf("detail %q, want it to contain %q", got.Detail, want)
		}
	}

	setPolicy(t, h, catalog.Policy{ChampionMetric: "accuracy", ChampionTolerance: 0.02})
	wantFailed(t, validate(t, h, 2, map[string]float64{"loss": 0.1}), map[string]string{name: `metric "accuracy" was not reported`})
	setPolicy(t, h, catalog.Policy{ChampionMetric: "f1"})
	wantPassed(t, validate(t, h, 2, map[string]float64{"f1": 0.1}), "integrity", "champion f1")
}

func transition(t *testing.T, h *harness, n int, seq int64, from, to string) error {
	t.Helper()
	return h.run(t, h.acts.RecordTransition, catalog.Transition{Model: model, Version: n, Seq: seq, From: from, To: to,
		Actor: "registry", Reason: from + " to " + to}, nil)
}

func wantArchived(t *testing.T, h *harness, n int, want bool, stage string) {
	t.Helper()
	got, err := h.store.IsArchived(context.Background(), model, n)
	if err != nil {
		t.Fatalf("IsArchived v%d: %v", n, err)
	}
	if got != want {
		t.Errorf("v%d archived mark = %t, want %t", n, got, want)
	}
	if row := getVersion(t, h, n); row.Stage != stage {
		t.Errorf("v%d catalog stage %s, want %s", n, row.Stage, stage)
	}
}

func testArchivedMark(t *testing.T, h *harness) {
	const (
		reg  = catalog.StageRegistered
		prod = catalog.StageProduction
		arch = catalog.StageArchived
	)
	registered(t, h, 1, nil, twoFiles)
	registered(t, h, 2, nil, twoFiles)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(transition(t, h, 1, 2, reg, prod))
	wantArchived(t, h, 1, false, prod)
	must(transition(t, h, 1, 3, prod, arch))
	wantArchived(t, h, 1, true, arch)
	must(transition(t, h, 1, 3, prod, arch)) // a retry
	wantArchived(t, h, 1, true, arch)
	must(transition(t, h, 1, 4, arch, prod)) // rollback
	wantArchived(t, h, 1, false, prod)

	// A late retry of the archive (seq 3), arriving after the rollback (seq 4), is fenced off in the
	// catalog and answered with an error (Temporal has discarded that attempt anyway; a run of the
	// workflow that gets it is not the lifecycle's own); the archived mark must not disagree with it.
	if err := transition(t, h, 1, 3, prod, arch); err == nil || !strings.Contains(err.Error(), "newer state") {
		t.Fatalf("late archive after the rollback: %v", err)
	}
	wantArchived(t, h, 1, false, prod)

	// v2 cannot enter production while v1 is there.
	if err := transition(t, h, 2, 2, reg, prod); err == nil {
		t.Fatal("a second version entered production")
	}
	wantArchived(t, h, 2, false, reg)
	// Nor can it be restored there: the refused restore must leave v2's mark alone.
	must(transition(t, h, 1, 5, prod, arch))
	must(transition(t, h, 2, 2, reg, prod))
	must(transition(t, h, 2, 3, prod, arch))
	wantArchived(t, h, 2, true, arch)
	must(transition(t, h, 1, 6, arch, prod))
	if err := transition(t, h, 2, 4, arch, prod); err == nil {
		t.Fatal("restoring v2 while v1 is in production succeeded")
	}
	wantArchived(t, h, 2, true, arch)
	wantArchived(t, h, 1, false, prod)

	trail, err := h.cat.Transitions(context.Background(), model, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(trail) != 6 { // registered, 2..6
		t.Errorf("v1 audit trail has %d rows, want 6 (each transition once): %+v", len(trail), trail)
	}
}

// webhookServer records the deployment events it receives, per path; paths listed in fail answer 503.
type webhookServer struct {
	*httptest.Server
	mu       sync.Mutex
	calls    map[string]int
	bodies   map[string][]byte
	headers  map[string]http.Header
	failing  map[string]bool
	received []string
}

func newWebhookServer(t *testing.T) *webhookServer {
	w := &webhookServer{calls: map[string]int{}, bodies: map[string][]byte{}, headers: map[string]http.Header{}, failing: map[string]bool{}}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.calls[r.URL.Path]++
		w.bodies[r.URL.Path] = body
		w.headers[r.URL.Path] = r.Header.Clone()
		w.received = append(w.received, r.Method+" "+r.URL.Path)
		if w.failing[r.URL.Path] {
			http.Error(rw, "not now", http.StatusServiceUnavailable)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(w.Close)
	if !strings.HasPrefix(w.URL, "http://127.0.0.1:") {
		t.Fatalf("webhook server at %s, want loopback", w.URL)
	}
	return w
}

func (w *webhookServer) setFailing(path string, fail bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failing[path] = fail
}

func (w *webhookServer) count(path string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[path]
}

func testNotifyDeployment(t *testing.T, h *harness) {
	stored := registered(t, h, 1, nil, twoFiles)
	hooks := newWebhookServer(t)
	urlA, urlB := hooks.URL+"/a", hooks.URL+"/b"
	setPolicy(t, h, catalog.Policy{Webhooks: []string{urlA, urlB}})

	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ev := activities.DeploymentEvent{SchemaVersion: 1, EventID: "fraud/1/promote/v1", Kind: "promote", Model: model,
		Version: 1, Stage: catalog.StageProduction, At: at,
		// Whatever the caller says, the manifest comes from the catalog.
		ManifestURI: "s3://elsewhere/manifest.json", ManifestDigest: "sha256:bogus"}

	// First attempt: b is down.
	hooks.setFailing("/b", true)
	var beats []map[string]bool
	env := h.activityEnv(t, nil)
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
		var done map[string]bool
		if d.HasValues() && d.Get(&done) == nil {
			beats = append(beats, done)
		}
	})
	err := runIn(t, env, h.acts.NotifyDeployment, ev, nil)
	if err == nil {
		t.Fatal("NotifyDeployment succeeded while a webhook answered 503")
	}
	if ae := appError(t, err); ae.NonRetryable() || !strings.Contains(ae.Error(), urlB) || !strings.Contains(ae.Error(), "503") {
		t.Fatalf("NotifyDeployment = %v, want a retryable error naming %s and its 503", err, urlB)
	}
	if hooks.count("/a") != 1 || hooks.count("/b") != 1 {
		t.Fatalf("calls a=%d b=%d, want 1 each", hooks.count("/a"), hooks.count("/b"))
	}
	if len(beats) == 0 || !reflect.DeepEqual(beats[len(beats)-1], map[string]bool{urlA: true}) {
		t.Fatalf("heartbeat details %v, want the last to record %s as delivered", beats, urlA)
	}

	hooks.mu.Lock()
	body, hdr := hooks.bodies["/a"], hooks.headers["/a"]
	hooks.mu.Unlock()
	var got activities.DeploymentEvent
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("event body %s: %v", body, err)
	}
	want := ev
	want.ManifestURI, want.ManifestDigest = stored.ManifestURI, stored.ManifestDigest
	if row := getVersion(t, h, 1); row.ManifestURI != want.ManifestURI || row.ManifestDigest != want.ManifestDigest {
		t.Fatalf("catalog manifest %s %s, stored %s %s", row.ManifestURI, row.ManifestDigest, want.ManifestURI, want.ManifestDigest)
	}
	if !got.At.Equal(want.At) {
		t.Errorf("event at %s, want %s", got.At, want.At)
	}
	got.At = want.At
	if got != want {
		t.Errorf("event body %+v, want %+v", got, want)
	}
	if hdr.Get("Idempotency-Key") != ev.EventID || hdr.Get("Content-Type") != "application/json" ||
		hdr.Get("Digest") != "sha-256="+sha(body) {
		t.Errorf("headers Idempotency-Key %q Content-Type %q Digest %q; want %q, application/json, sha-256=<body hash>",
			hdr.Get("Idempotency-Key"), hdr.Get("Content-Type"), hdr.Get("Digest"), ev.EventID)
	}

	// The retry carries the heartbeat details: a is not called again, b now answers.
	hooks.setFailing("/b", false)
	env = h.activityEnv(t, nil)
	env.SetHeartbeatDetails(map[string]bool{urlA: true})
	if err := runIn(t, env, h.acts.NotifyDeployment, ev, nil); err != nil {
		t.Fatalf("NotifyDeployment retried: %v", err)
	}
	if hooks.count("/a") != 1 || hooks.count("/b") != 2 {
		t.Fatalf("after the retry calls a=%d b=%d, want a=1 (already delivered) b=2", hooks.count("/a"), hooks.count("/b"))
	}
	hooks.mu.Lock()
	bodyB := hooks.bodies["/b"]
	hooks.mu.Unlock()
	if !bytes.Equal(bodyB, body) {
		t.Errorf("b received %s, a received %s: the same event must be delivered to every webhook", bodyB, body)
	}

	// A fresh run without details delivers to both again (receivers deduplicate on eventId).
	if err := h.run(t, h.acts.NotifyDeployment, ev, nil); err != nil {
		t.Fatal(err)
	}
	if hooks.count("/a") != 2 || hooks.count("/b") != 3 {
		t.Fatalf("calls a=%d b=%d, want 2 and 3", hooks.count("/a"), hooks.count("/b"))
	}

	// An unreachable webhook is a retryable error too.
	setPolicy(t, h, catalog.Policy{Webhooks: []string{"http://127.0.0.1:1/nothing-listens"}})
	if err := h.run(t, h.acts.NotifyDeployment, ev, nil); err == nil || appError(t, err).NonRetryable() {
		t.Fatalf("NotifyDeployment to a closed port = %v, want a retryable error", err)
	}
	// An unknown version is an error, not a silent success.
	if err := h.run(t, h.acts.NotifyDeployment, activities.DeploymentEvent{Model: model, Version: 9, EventID: "x"}, nil); err == nil {
		t.Fatal("NotifyDeployment for an unknown version succeeded")
	}
}

func testNotifyWithoutWebhooks(t *testing.T, h *harness) {
	registered(t, h, 1, nil, twoFiles)
	hooks := newWebhookServer(t)
	setPolicy(t, h, catalog.Policy{RequiredFiles: []string{"model.bin"}})
	if err := h.run(t, h.acts.NotifyDeployment, activities.DeploymentEvent{SchemaVersion: 1, EventID: "e", Kind: "promote",
		Model: model, Version: 1, Stage: catalog.StageProduction, At: time.Now()}, nil); err != nil {
		t.Fatalf("NotifyDeployment without webhooks: %v", err)
	}
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	if len(hooks.received) != 0 {
		t.Fatalf("requests sent without webhooks: %v", hooks.received)
	}
}
