package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/testenv"
)

// TestArtifactsThroughHTTPAPI is one lifecycle through the worker's HTTP API only, on the S3 store: a
// training job with no credentials but a token registers a directory (its bytes go to presigned URLs
// of the store), an approver decides as the principal of their token, a deployer watching production
// sees the switch and pulls the version, every digest checked. Then the routes' refusals: tokens,
// bytes that are not what they claim (nothing left at their address), bodies too large, unknown models.
func TestArtifactsThroughHTTPAPI(t *testing.T) {
	start := time.Now()
	ctx := context.Background()
	tokens := map[string]string{
		"trainer": "tok-trainer-5f0c2a9e7b1d4c3a8e6f0b2d4a6c8e0f",
		"alice":   "tok-alice-0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6",
		"viewer":  "tok-viewer-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
	}
	roles := map[string]map[string][]string{
		"trainer": {"vision": {api.RoleRegister}},
		"alice":   {"vision": {api.RoleApprove}},
		"viewer":  {"other": {api.RoleApprove}},
	}
	var tf api.TokenFile
	for name, tok := range tokens {
		sum := sha256.Sum256([]byte(tok))
		tf.Principals = append(tf.Principals, api.PrincipalEntry{Name: name, TokenSHA256: hex.EncodeToString(sum[:]), Roles: roles[name]})
	}
	tokensFile := filepath.Join(t.TempDir(), "tokens.json")
	b, _ := json.Marshal(tf)
	if err := os.WriteFile(tokensFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	server := "http://" + addr
	h := newHarnessWith(t, harnessOptions{env: []string{"MODELREG_HTTP_ADDR=" + addr, "MODELREG_API_TOKENS_FILE=" + tokensFile}})
	waitHTTP(t, server+"/healthz")
	ready := time.Now()

	// What a training job, an approver and a deployer have: the registry's URL and maybe a token. No
	// Temporal address, no database, no store credentials (AWS_* included), no registry directory.
	clean := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MODELREG_") && !strings.HasPrefix(kv, "TEMPORAL_") && !strings.HasPrefix(kv, "AWS_") {
			clean = append(clean, kv)
		}
	}
	envFor := func(principal string) []string {
		env := append(append([]string(nil), clean...), "MODELREG_SERVER="+server, "MODELREG_DATA_DIR="+t.TempDir())
		if principal != "" {
			env = append(env, "MODELREG_TOKEN="+tokens[principal])
		}
		return env
	}
	as := func(principal string, args ...string) (string, string, error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, bins.starter, args...)
		cmd.Env, cmd.Dir = envFor(principal), t.TempDir()
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	mustAs := func(principal string, args ...string) (string, string) {
		t.Helper()
		out, errOut, err := as(principal, args...)
		if err != nil {
			t.Fatalf("starter %s (as %s): %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), principal, err, out, errOut)
		}
		return out, errOut
	}

	// The training job registers a directory.
	weights := bytes.Repeat([]byte("vision weights "), 70_000) // 1 MiB
	files := map[string]string{"model.bin": string(weights), "config/params.json": `{"depth": 50}`, "tokenizer/vocab.txt": "cat\ndog\n"}
	dir := filepath.Join(h.dir, "run-1")
	writeFiles(t, dir, files)
	writeFiles(t, h.dir, map[string]string{"metrics.json": `{"accuracy": 0.91}`})
	out, errOut := mustAs("trainer", "register", "--model", "vision", "--dir", dir, "--metrics", filepath.Join(h.dir, "metrics.json"),
		"--tag", "team=vision", "--tag", "dataset=imagenet=2026", "--wait")
	if !strings.Contains(out, "registered vision v1") || !strings.Contains(out, "PendingApproval") || !strings.Contains(errOut, "3 files: 3 blobs sent, 0 already stored") {
		t.Fatalf("register through the API:\nstdout: %s\nstderr: %s", out, errOut)
	}
	registered := time.Now()
	v, err := h.catalog.GetVersion(ctx, "vision", 1)
	if err != nil || v.RegisteredBy != "trainer" {
		t.Fatalf("v1 = %+v, %v; want registered by the token's principal", v, err)
	}
	// The tags went with the registration, and the API finds the version by them.
	if want := map[string]string{"team": "vision", "dataset": "imagenet=2026"}; !maps.Equal(v.Tags, want) {
		t.Fatalf("v1's tags = %v, want %v", v.Tags, want)
	}
	resp, err := http.Get(server + "/v1/models/vision/versions?tag=dataset=imagenet=2026")
	if err != nil {
		t.Fatal(err)
	}
	tagged, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(tagged), `"version":1`) {
		t.Fatalf("versions tagged dataset=imagenet=2026: %d %s", resp.StatusCode, tagged)
	}
	// Registering the same directory again sends nothing and names the same version.
	out, errOut = mustAs("trainer", "register", "--model", "vision", "--dir", dir, "--metrics", filepath.Join(h.dir, "metrics.json"))
	if !strings.Contains(out, "already registered") || !strings.Contains(errOut, "0 blobs sent, 3 already stored") {
		t.Fatalf("register again:\nstdout: %s\nstderr: %s", out, errOut)
	}
	// Not the trainer's to approve, nor the viewer's.
	if _, _, err := as("trainer", "approve", "--model", "vision", "--version", "1"); err == nil {
		t.Fatal("the trainer approved with a register-only token")
	}

	// A deployer watches production (no token: reads are open).
	watch := exec.Command(bins.starter, "production", "--model", "vision", "--wait")
	watch.Env = envFor("")
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var watchErr bytes.Buffer
	watch.Stderr = &watchErr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() { _ = watch.Process.Kill(); _ = watch.Wait() })

	// Alice approves as the principal of her token.
	out, _ = mustAs("alice", "approve", "--model", "vision", "--version", "1", "--comment", "eval ok")
	if !strings.Contains(out, "vision v1: Approved") {
		t.Fatalf("approve: %s", out)
	}
	ds, err := h.catalog.Decisions(ctx, "vision", 1)
	if err != nil || len(ds) != 1 || ds[0].Approver != "alice" || !ds[0].Accepted || ds[0].Comment != "eval ok" {
		t.Fatalf("decisions = %+v, %v; want alice's accepted approval", ds, err)
	}
	deadline := time.After(90 * time.Second)
	for seen := false; !seen; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("production --wait ended: %s", watchErr.String())
			}
			seen = strings.Contains(l, "vision v1 (stage Production)")
		case <-deadline:
			t.Fatalf("production --wait did not print the switch; stderr: %s", watchErr.String())
		}
	}
	switched := time.Now()
	_ = watch.Process.Signal(os.Interrupt)
	if err := watch.Wait(); err != nil {
		t.Fatalf("production --wait after Ctrl-C: %v (%s)", err, watchErr.String())
	}
	out, _ = mustAs("", "status", "--model", "vision", "--version", "1")
	if !strings.Contains(out, "vision v1: Production") {
		t.Fatalf("status through the API: %s", out)
	}

	// The deployer pulls production through the API; an operator pulls v1 straight from the store.
	check := func(out string) {
		t.Helper()
		for p, c := range files {
			if got, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(got) != c {
				t.Fatalf("%s pulled as %d bytes, %v", p, len(got), err)
			}
		}
	}
	pulled := filepath.Join(t.TempDir(), "deploy")
	out, _ = mustAs("", "pull", "--model", "vision", "--out", pulled)
	if !strings.Contains(out, "pulled vision v1") || !strings.Contains(out, "every size and SHA-256 verified") {
		t.Fatalf("pull: %s", out)
	}
	check(pulled)
	direct := filepath.Join(t.TempDir(), "direct")
	h.mustStarter("pull", "--model", "vision", "--version", "1", "--out", direct)
	check(direct)
	if _, errOut, err := as("", "pull", "--model", "nope", "--out", t.TempDir()); err == nil || !strings.Contains(errOut, `model "nope" not found`) {
		t.Fatalf("pull of an unknown model = %v: %s", err, errOut)
	}
	lifecycle := time.Since(start)

	// The routes themselves.
	call := func(method, path, token string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
		t.Helper()
		url := path
		if strings.HasPrefix(path, "/") {
			url = server + path
		}
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	code := func(b []byte) string {
		var e struct{ Code string }
		_ = json.Unmarshal(b, &e)
		return e.Code
	}
	fresh := []byte("bytes no version has yet")
	blob := artifact.FileEntry{Path: "fresh.bin", Size: int64(len(fresh)), SHA256: sha256hex(fresh)}
	plan, _ := json.Marshal(api.UploadPlanRequest{Files: []artifact.FileEntry{blob}})
	const uploads = "/v1/models/vision/uploads"
	for _, c := range []struct {
		token  string
		status int
		code   string
	}{{"", 401, "unauthenticated"}, {"not-a-token", 401, "unauthenticated"}, {tokens["viewer"], 403, "forbidden"}, {tokens["alice"], 403, "forbidden"}} {
		if st, _, b := call("POST", uploads, c.token, bytes.NewReader(plan), "Content-Type", "application/json"); st != c.status || code(b) != c.code {
			t.Errorf("plan with token %q: %d %s, want %d %s", c.token, st, b, c.status, c.code)
		}
	}
	st, _, b := call("POST", uploads, tokens["trainer"], bytes.NewReader(plan), "Content-Type", "application/json")
	var p api.UploadPlan
	if st != 200 || json.Unmarshal(b, &p) != nil || len(p.Blobs) != 1 || p.Blobs[0].Present || p.Blobs[0].Upload == nil || p.Blobs[0].Upload.Bearer ||
		!strings.HasPrefix(p.Blobs[0].Upload.URL, h.s3.Endpoint+"/") {
		t.Fatalf("plan on the S3 store: %d %s, want a presigned URL of the store", st, b)
	}
	target := p.Blobs[0].Upload
	other := bytes.Clone(fresh)
	other[0] ^= 1
	var hdr []string
	for k, v := range target.Headers {
		if k != "Content-Length" {
			hdr = append(hdr, k, v)
		}
	}
	if st, _, b := call(target.Method, target.URL, "", bytes.NewReader(other), hdr...); st < 400 || !bytes.Contains(b, []byte("BadDigest")) {
		t.Fatalf("presigned upload of other bytes: %d %s, want the store's BadDigest", st, b)
	}
	if st, _, b := call("PUT", uploads+"/"+blob.SHA256, tokens["trainer"], bytes.NewReader(other)); st != 400 || code(b) != "digest_mismatch" {
		t.Fatalf("API upload of other bytes: %d %s, want 400 digest_mismatch", st, b)
	}
	if _, err := h.store.StatBlob(ctx, blob.SHA256); !errors.Is(err, artifact.ErrNotFound) {
		t.Fatalf("refused bytes left something at the blob's address: %v", err)
	}
	if st, _, b := call("PUT", uploads+"/"+blob.SHA256, "", bytes.NewReader(fresh)); st != 401 {
		t.Fatalf("API upload without a token: %d %s", st, b)
	}
	if st, _, b := call(target.Method, target.URL, "", bytes.NewReader(fresh), hdr...); st != 200 {
		t.Fatalf("presigned upload of the right bytes: %d %s", st, b)
	}
	if err := h.store.VerifyBlob(ctx, blob, nil); err != nil {
		t.Fatal(err)
	}
	huge := []byte(`{"files":[{"path":"` + strings.Repeat("x", 2<<20) + `","size":1,"sha256":"` + blob.SHA256 + `"}]}`)
	if st, _, b := call("POST", uploads, tokens["trainer"], bytes.NewReader(huge), "Content-Type", "application/json"); st != 413 || code(b) != "body_too_large" {
		t.Fatalf("plan of 2 MiB: %d %.200s", st, b)
	}
	big, _ := json.Marshal(api.UploadPlanRequest{Files: []artifact.FileEntry{{Path: "big.bin", Size: artifact.MaxSinglePut + 1, SHA256: sha256hex([]byte("big"))}}})
	if st, _, b := call("POST", uploads, tokens["trainer"], bytes.NewReader(big), "Content-Type", "application/json"); st != 413 || code(b) != "too_large" {
		t.Fatalf("plan of a file larger than one PUT: %d %s", st, b)
	}
	st, rh, _ := call("GET", "/v1/models/vision/versions/1/files/model.bin", "", nil)
	if st != 307 || rh.Get("ETag") != `"`+sha256hex(weights)+`"` {
		t.Fatalf("download on the S3 store: %d %v, want a redirect", st, rh)
	}
	if st, _, body := call("GET", rh.Get("Location"), "", nil); st != 200 || !bytes.Equal(body, weights) {
		t.Fatalf("the presigned download: %d, %d bytes", st, len(body))
	}
	for _, path := range []string{"/v1/models/nope/versions/1/files/model.bin", "/v1/models/vision/versions/2/files/model.bin", "/v1/models/vision/versions/1/files/nope.bin"} {
		if st, _, b := call("GET", path, "", nil); st != 404 {
			t.Errorf("GET %s: %d %s, want 404", path, st, b)
		}
	}
	t.Logf("harness %s; through the API: registered (until PendingApproval) in %s, approved to production seen in %s, pulls and the rest %s; route checks %s",
		ready.Sub(start).Round(100*time.Millisecond), registered.Sub(ready).Round(100*time.Millisecond), switched.Sub(registered).Round(100*time.Millisecond),
		(lifecycle - switched.Sub(start)).Round(100*time.Millisecond), (time.Since(start) - lifecycle).Round(time.Millisecond))
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within 90 s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
