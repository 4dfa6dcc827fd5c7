package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/workflows"
)

// apiFixture is the registry's real HTTP API on a SQLite catalog and a directory store, without
// Temporal: enough for everything the starter does through --server except what needs a workflow.
type apiFixture struct {
	t       *testing.T
	url     string
	token   string
	dataDir string
	cat     *catalog.Catalog
	store   *artifact.Dir
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cat, err := catalog.Open(ctx, "sqlite://"+filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	if err := cat.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := artifact.NewDir(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	const token = "tok-trainer-0123456789abcdef012345678"
	sum := sha256.Sum256([]byte(token))
	auth, err := api.NewAuthenticator(api.TokenFile{Principals: []api.PrincipalEntry{
		{Name: "trainer", TokenSHA256: hex.EncodeToString(sum[:]), Roles: map[string][]string{"*": {api.RoleRegister}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Catalog: cat, Store: store, Auth: auth})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	// Nothing of the registry in the environment but the data directory, which holds no token file.
	for _, k := range []string{"MODELREG_SERVER", "MODELREG_TOKEN", "MODELREG_S3_BUCKET", "MODELREG_DATABASE_URL", "MODELREG_ARTIFACT_ROOT"} {
		t.Setenv(k, "")
	}
	f := &apiFixture{t: t, url: hs.URL, token: token, dataDir: filepath.Join(dir, "data"), cat: cat, store: store}
	t.Setenv("MODELREG_DATA_DIR", f.dataDir)
	return f
}

// run runs the starter with args and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootWith(&out, &errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// version stores files as the worker would and records a version naming them.
func (f *apiFixture) version(model string, files map[string][]byte) int {
	f.t.Helper()
	ctx := context.Background()
	v, _, err := f.cat.MintVersion(ctx, catalog.Version{Model: model, IdempotencyKey: fmt.Sprint(time.Now().UnixNano())})
	if err != nil {
		f.t.Fatal(err)
	}
	m := artifact.Manifest{SchemaVersion: 1, Model: model, Version: v.Version, CreatedAt: time.Now().UTC()}
	for p, c := range files {
		src := filepath.Join(f.t.TempDir(), "f")
		if err := os.WriteFile(src, c, 0o644); err != nil {
			f.t.Fatal(err)
		}
		e, err := f.store.PutFile(ctx, src, nil)
		if err != nil {
			f.t.Fatal(err)
		}
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
	return v.Version
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRegisterThroughServerUploadsOnlyWhatIsMissing(t *testing.T) {
	f := newAPIFixture(t)
	dir := t.TempDir()
	files := map[string][]byte{
		"model.bin":        bytes.Repeat([]byte("w"), 300_000),
		"copy/model.bin":   bytes.Repeat([]byte("w"), 300_000),
		"config/empty.txt": nil,
		"config/cfg.json":  []byte(`{"depth": 8}`),
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), c, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// No token: the plan is refused, and the message says how to give one.
	_, _, err := run(t, "register", "--server", f.url, "--model", "fraud", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("register without a token = %v", err)
	}

	// With the token from the data directory (what `worker --dev` writes): every blob goes up, then the
	// registration itself needs Temporal, which this registry has not.
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dataDir, "api-token"), []byte(f.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "register", "--server", f.url, "--model", "fraud", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "temporal_unavailable") {
		t.Fatalf("register = %v, want the registry's temporal_unavailable", err)
	}
	if !strings.Contains(stderr, "4 files: 3 blobs sent, 0 already stored") {
		t.Fatalf("stderr = %q", stderr)
	}
	for _, c := range files {
		if err := f.store.VerifyBlob(context.Background(), artifact.FileEntry{SHA256: sha(c), Size: int64(len(c))}, nil); err != nil {
			t.Fatalf("after register through the server: %v", err)
		}
	}
	t.Setenv("MODELREG_SERVER", f.url)
	_, stderr, _ = run(t, "register", "--model", "fraud", "--dir", dir)
	if !strings.Contains(stderr, "4 files: 0 blobs sent, 3 already stored") {
		t.Fatalf("a second registration of the same files: stderr = %q", stderr)
	}

	// Flags the server decides, and commands it has no route for.
	for args, want := range map[string]string{
		"register --model fraud --dir " + dir + " --registered-by bob":      "--registered-by cannot be used with --server",
		"approve --model fraud --version 1 --approver bob":                  "--approver cannot be used with --server",
		"rollback --model fraud --actor bob":                                "--actor cannot be used with --server",
		"verdict --model fraud --version 1 --validator ci --token x --pass": "no HTTP API equivalent",
		"history --model fraud":                                             "no HTTP API equivalent",
		"check":                                                             "no HTTP API equivalent",
		"production --model fraud --at 2026-01-01T00:00:00Z":                "no HTTP API equivalent",
	} {
		if _, _, err := run(t, strings.Fields(args)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("starter %s = %v, want %q", args, err, want)
		}
	}
	t.Setenv("MODELREG_SERVER", "")
	if _, _, err := run(t, "production", "--model", "fraud", "--wait"); err == nil || !strings.Contains(err.Error(), "--server") {
		t.Errorf("production --wait without a server = %v", err)
	}
}

// TestRegisterThroughServerWithListing registers more files than a request may list inline: the list
// goes up as one more blob, which the registry can read back as what was listed.
func TestRegisterThroughServerWithListing(t *testing.T) {
	f := newAPIFixture(t)
	dir := t.TempDir()
	var entries []artifact.FileEntry
	// One content for every file: a thousand blobs would only measure the disk's fsyncs.
	c := []byte("shard")
	for i := range workflows.MaxInlineFiles + 1 {
		p := fmt.Sprintf("shard-%04d", i)
		if i == 0 {
			// A file of the version's own under the name the listing goes up with: the listing is planned
			// on its own, since a plan refuses a path listed twice.
			p = "listing.json"
		}
		if err := os.WriteFile(filepath.Join(dir, p), c, 0o644); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, artifact.FileEntry{Path: p, Size: int64(len(c)), SHA256: sha(c)})
	}
	_, stderr, err := run(t, "register", "--server", f.url, "--token", f.token, "--model", "shards", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "temporal_unavailable") {
		t.Fatalf("register = %v", err)
	}
	if !strings.Contains(stderr, fmt.Sprintf("%d files: 2 blobs sent, 0 already stored", len(entries))) {
		t.Fatalf("stderr = %q", stderr)
	}
	listing, err := artifact.EncodeListing(entries)
	if err != nil {
		t.Fatal(err)
	}
	got, err := artifact.ReadListing(context.Background(), f.store, artifact.ListingRef{SHA256: sha(listing), Count: len(entries)})
	if err != nil || len(got) != len(entries) {
		t.Fatalf("the listing the registry would read: %d files, %v", len(got), err)
	}
}

// TestRegisterRefusesPathsDifferingOnlyInCase: a directory on a case-sensitive filesystem may hold
// Model.bin and model.bin; the starter refuses it, naming both, before anything is uploaded, with
// --server or without.
func TestRegisterRefusesPathsDifferingOnlyInCase(t *testing.T) {
	f := newAPIFixture(t)
	dir := t.TempDir()
	for p, c := range map[string]string{"model.bin": "lower", "Model.bin": "upper", "config.json": "{}"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "MODEL.BIN")); err == nil {
		t.Skip("this filesystem is case-insensitive: it cannot hold both names")
	}
	const want = `paths "Model.bin" and "model.bin" differ only in case`
	t.Setenv("MODELREG_ARTIFACT_ROOT", f.store.Root())
	for _, args := range [][]string{
		{"register", "--server", f.url, "--token", f.token, "--model", "fraud", "--dir", dir},
		{"register", "--model", "fraud", "--dir", dir},
	} {
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("starter %s = %v, want %q", strings.Join(args, " "), err, want)
		}
	}
	for _, c := range []string{"lower", "upper", "{}"} {
		if _, err := f.store.StatBlob(context.Background(), sha([]byte(c))); err == nil {
			t.Errorf("%q was uploaded", c)
		}
	}
}

func TestSendRefusedBytesSayTheFileChanged(t *testing.T) {
	f := newAPIFixture(t)
	a := &app{errOut: io.Discard, serverURL: f.url, token: f.token}
	if err := a.serverSettings(f.dataDir); err != nil {
		t.Fatal(err)
	}
	c := a.api
	// The digest was computed from other bytes than the file now holds, as when a training job
	// rewrites a file while it is being registered.
	path := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(path, []byte("rewritten"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := localBlob{FileEntry: artifact.FileEntry{Path: "model.bin", Size: 9, SHA256: sha([]byte("original!"))}, abs: path}
	plans, err := c.plan(context.Background(), "fraud", []localBlob{b})
	if err != nil {
		t.Fatal(err)
	}
	err = c.send(context.Background(), *plans[0].Upload, b, nil)
	if err == nil || !strings.Contains(err.Error(), "model.bin changed while it was being uploaded") {
		t.Fatalf("send of other bytes = %v", err)
	}
	if _, err := f.store.StatBlob(context.Background(), b.SHA256); err == nil {
		t.Fatal("refused bytes were stored")
	}
}

func TestPullVerifiesEveryFile(t *testing.T) {
	f := newAPIFixture(t)
	files := map[string][]byte{
		"model/weights.bin": bytes.Repeat([]byte("0123456789"), 50_000),
		"README.md":         []byte("# fraud\n"),
		"empty":             nil,
	}
	v := f.version("fraud", files)
	check := func(out string) {
		t.Helper()
		for p, c := range files {
			got, err := os.ReadFile(filepath.Join(out, p))
			if err != nil || !bytes.Equal(got, c) {
				t.Fatalf("%s after pull: %d bytes, %v", p, len(got), err)
			}
		}
		leftovers, _ := filepath.Glob(filepath.Join(out, "*", ".*.pull-*"))
		more, _ := filepath.Glob(filepath.Join(out, ".*.pull-*"))
		if len(leftovers)+len(more) > 0 {
			t.Fatalf("pull left temporary files: %v %v", leftovers, more)
		}
	}

	// Through the API, with no token at all: reads are open.
	out := filepath.Join(t.TempDir(), "through-server")
	stdout, _, err := run(t, "pull", "--server", f.url, "--model", "fraud", "--version", fmt.Sprint(v), "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "3 files") || !strings.Contains(stdout, "3 downloaded, 0 already there") {
		t.Fatalf("pull printed %q", stdout)
	}
	check(out)
	stdout, _, err = run(t, "pull", "--server", f.url, "--model", "fraud", "--version", fmt.Sprint(v), "--out", out)
	if err != nil || !strings.Contains(stdout, "0 downloaded, 3 already there") {
		t.Fatalf("pull again = %q, %v", stdout, err)
	}

	// Straight from the store.
	t.Setenv("MODELREG_DATABASE_URL", "sqlite://"+filepath.Join(filepath.Dir(f.store.Root()), "catalog.db"))
	t.Setenv("MODELREG_ARTIFACT_ROOT", f.store.Root())
	direct := filepath.Join(t.TempDir(), "direct")
	if _, _, err := run(t, "pull", "--model", "fraud", "--version", fmt.Sprint(v), "--out", direct); err != nil {
		t.Fatal(err)
	}
	check(direct)

	// A blob the store has damaged (same size, one byte off): refused by either door, the file that
	// was there before is left as it was, and nothing is left half-written.
	weights := files["model/weights.bin"]
	blob := filepath.Join(f.store.Root(), "blobs", "sha256", sha(weights)[:2], sha(weights))
	bad := bytes.Clone(weights)
	bad[4242] ^= 1
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"server": {"pull", "--server", f.url, "--model", "fraud", "--version", fmt.Sprint(v)},
		"store":  {"pull", "--model", "fraud", "--version", fmt.Sprint(v)},
	} {
		out := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(filepath.Join(out, "model"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, "model", "weights.bin"), []byte("an older file"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := run(t, append(args, "--out", out)...)
		if err == nil || !strings.Contains(err.Error(), "refused, nothing written under its name") {
			t.Fatalf("pull (%s) of a damaged blob = %v", name, err)
		}
		if got, _ := os.ReadFile(filepath.Join(out, "model", "weights.bin")); string(got) != "an older file" {
			t.Fatalf("pull (%s) of a damaged blob replaced the file there with %d bytes", name, len(got))
		}
		if left, _ := filepath.Glob(filepath.Join(out, "model", ".*")); len(left) > 0 {
			t.Fatalf("pull (%s) left %v", name, left)
		}
	}

	for args, want := range map[string]string{
		"pull --server " + f.url + " --model nope --out " + t.TempDir():                   "not found",
		"pull --server " + f.url + " --model fraud --version 9 --out " + t.TempDir():      "not found",
		"pull --server " + f.url + " --model fraud --out " + t.TempDir():                  "no version in production",
		"pull --server " + f.url + " --model fraud --version latest --out " + t.TempDir(): "give a version number or production",
	} {
		if _, _, err := run(t, strings.Fields(args)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("starter %s = %v, want %q", args, err, want)
		}
	}
}
