package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/codec"
	"github.com/modelreg/modelreg/internal/testenv"
	"github.com/modelreg/modelreg/workflows"
)

// signedReceiver records every POST with its headers, for signature checks. It answers 503 to the
// first failFirst requests of each path.
type signedReceiver struct {
	srv       *httptest.Server
	mu        sync.Mutex
	reqs      []receivedPost
	failFirst int
	failed    map[string]int
	validate  chan activities.ValidationRequest
}

type receivedPost struct {
	path string
	sig  string
	body []byte
}

func newSignedReceiver(t *testing.T, failFirst int) *signedReceiver {
	r := &signedReceiver{failFirst: failFirst, failed: map[string]int{}, validate: make(chan activities.ValidationRequest, 4)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.failed[req.URL.Path] < r.failFirst {
			r.failed[req.URL.Path]++
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		r.reqs = append(r.reqs, receivedPost{path: req.URL.Path, sig: req.Header.Get(activities.SignatureHeader), body: body})
		if req.URL.Path == "/validate" {
			var vr activities.ValidationRequest
			if err := json.Unmarshal(body, &vr); err == nil {
				select {
				case r.validate <- vr:
				default:
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *signedReceiver) posts() []receivedPost {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedPost(nil), r.reqs...)
}

func randomString(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// withPassword puts a password into a postgres:// URL's user info.
func withPassword(t *testing.T, pgURL, password string) string {
	t.Helper()
	const prefix = "postgres://postgres@"
	if !strings.HasPrefix(pgURL, prefix) {
		t.Fatalf("unexpected test database URL shape %q", pgURL)
	}
	return "postgres://postgres:" + password + "@" + strings.TrimPrefix(pgURL, prefix)
}

// TestSecretsNeverLeak runs a lifecycle with every secret configured — S3 credentials, a catalog URL
// with a password, the webhook secret and a payload key — and then looks for those secrets, and for the
// lifecycle's plaintext, where they must not be: Temporal's raw history, the worker's log and the
// starter's output. Webhooks and validation requests must carry a valid signature.
func TestSecretsNeverLeak(t *testing.T) {
	h := newHarness(t)
	recv := newSignedReceiver(t, 1)

	const model = "secretive"
	approver := "approver-" + randomString(t, 4)
	registrant := "trainer-" + randomString(t, 4)
	webhookSecret := "whsec-" + randomString(t, 16)
	keyBytes := make([]byte, codec.KeySize)
	_, _ = rand.Read(keyBytes)
	payloadKey := base64.StdEncoding.EncodeToString(keyBytes)
	const keyID = "e2e-2026"
	// The tests' PostgreSQL trusts local connections, so it accepts any password: the worker and the
	// starter still carry this one in their configuration, where it must not leak from.
	dbPassword := "dbpw-" + randomString(t, 12)

	h.stopWorker()
	h.env = append(h.env,
		"MODELREG_DATABASE_URL="+withPassword(t, h.pgURL, dbPassword),
		"MODELREG_WEBHOOK_SECRET="+webhookSecret,
		"MODELREG_PAYLOAD_KEY="+payloadKey,
		"MODELREG_PAYLOAD_KEY_ID="+keyID,
	)
	h.startWorker()

	secrets := map[string]string{
		"S3 secret key":   h.s3.SecretKey,
		"S3 access key":   h.s3.AccessKey,
		"webhook secret":  webhookSecret,
		"payload key":     payloadKey,
		"payload key hex": hex.EncodeToString(keyBytes),
		"DB password":     dbPassword,
	}

	// Everything the starter prints, to search afterwards.
	var starterOut bytes.Buffer
	var outMu sync.Mutex
	run := func(args ...string) (string, error) {
		out, errOut, err := h.starter(args...)
		outMu.Lock()
		starterOut.WriteString(out + errOut)
		outMu.Unlock()
		if err != nil {
			return out + errOut, fmt.Errorf("starter %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out, nil
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	mustRun("policy", "set", "--model", model, "--threshold", "accuracy>=0.9", "--require-file", "model.bin",
		"--webhook", recv.srv.URL+"/deploy", "--validator", "ci="+recv.srv.URL+"/validate")
	dir := filepath.Join(h.dir, "run1")
	writeFiles(t, dir, map[string]string{"model.bin": "weights-" + randomString(t, 8)})
	writeFiles(t, h.dir, map[string]string{"m.json": `{"accuracy": 0.95}`})

	// register --wait follows the version until it waits for approval, which it does only after the CI
	// validator's verdict: send it when the (signed) validation request arrives.
	regDone := make(chan error, 1)
	var regOut string
	go func() {
		out, err := run("register", "--model", model, "--dir", dir, "--metrics", filepath.Join(h.dir, "m.json"),
			"--registered-by", registrant, "--wait")
		regOut = out
		regDone <- err
	}()
	var vr activities.ValidationRequest
	select {
	case vr = <-recv.validate:
	case err := <-regDone:
		t.Fatalf("register ended before the validation request: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("no validation request")
	}
	mustRun("verdict", "--model", model, "--version", "1", "--validator", "ci", "--token", vr.Token, "--pass")
	select {
	case err := <-regDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("register --wait did not return")
	}
	if !strings.Contains(regOut, "PendingApproval") {
		t.Fatalf("register output:\n%s", regOut)
	}

	// A refused decision comes back to the starter readable: failures are encrypted too, and decrypted
	// by the client.
	if out, err := run("approve", "--model", model, "--version", "1", "--approver", registrant); err == nil || !strings.Contains(out, "may not approve it") {
		t.Fatalf("self-approval: %v\n%s", err, out)
	}
	mustRun("approve", "--model", model, "--version", "1", "--approver", approver, "--comment", "looks fine")

	// The describe query through the starter (which has the key) works.
	var d workflows.VersionDescription
	deadline := time.Now().Add(90 * time.Second)
	for {
		out := mustRun("status", "--model", model, "--version", "1", "--json")
		d = workflows.VersionDescription{}
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("status output %q: %v", out, err)
		}
		if d.State.Stage == workflows.StageProduction {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v1 stage %s, want Production", d.State.Stage)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(d.State.Decisions) != 1 || d.State.Decisions[0].Approver != approver || d.State.ManifestDigest == "" {
		t.Fatalf("describe: %+v", d.State)
	}
	digestHex := strings.TrimPrefix(d.State.ManifestDigest, "sha256:")
	mustRun("history", "--model", model)
	// An error path of the starter, too.
	_, _ = run("status", "--model", model, "--version", "9")

	// (c) Every POST carried a valid signature over its exact body. The deployment event is delivered
	// after the switch, so it may arrive just after the stage moved.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n := 0
		for _, p := range recv.posts() {
			if p.path == "/deploy" {
				n++
			}
		}
		if n > 0 {
			break
		}
	}
	var deploys, validations int
	for _, p := range recv.posts() {
		if err := activities.VerifySignature([]byte(webhookSecret), p.sig, p.body, 5*time.Minute, time.Now()); err != nil {
			t.Fatalf("POST %s: signature %q: %v", p.path, p.sig, err)
		}
		if err := activities.VerifySignature([]byte("another secret"), p.sig, p.body, 5*time.Minute, time.Now()); err == nil {
			t.Fatalf("POST %s verifies with another secret", p.path)
		}
		switch p.path {
		case "/deploy":
			deploys++
			var ev activities.DeploymentEvent
			if err := json.Unmarshal(p.body, &ev); err != nil || ev.Kind != "promote" || ev.Model != model || ev.ManifestDigest != d.State.ManifestDigest {
				t.Fatalf("deployment event %s: %v", p.body, err)
			}
		case "/validate":
			validations++
		}
	}
	if deploys != 1 || validations != 1 {
		t.Fatalf("%d deployment events and %d validation requests received, want 1 and 1", deploys, validations)
	}

	// (a) The raw histories hold no secret and, outside the search attributes, no plaintext.
	plaintext := map[string]string{
		"model name": model, "metric name": "accuracy", "approver": approver, "registrant": registrant,
		"manifest digest": digestHex, "approval comment": "looks fine", "validation token": vr.Token,
	}
	for _, id := range []string{"model/" + model, "model/" + model + "/v1"} {
		out, err := h.cli("workflow", "show", "--workflow-id", id, "-o", "json")
		if err != nil {
			t.Fatalf("temporal workflow show %s: %v\n%s", id, err, out)
		}
		for what, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("history of %s contains the %s", id, what)
			}
		}
		// Failure messages are encrypted too: the webhook's first refusal is in the history only as an
		// encoded failure.
		for what, s := range map[string]string{"metric name": "accuracy", "approver": approver, "registrant": registrant,
			"manifest digest": digestHex, "webhook refusal": "Service Unavailable", "validation token": vr.Token} {
			if i := strings.Index(out, s); i >= 0 {
				t.Errorf("history of %s contains the %s (%q) in plaintext: …%s…", id, what, s, out[max(0, i-300):min(len(out), i+100)])
			}
		}
		// Each workflow's first POST was refused once; the activity's last failure is in its history,
		// encoded.
		if !strings.Contains(out, `"lastFailure"`) || !strings.Contains(out, "Encoded failure") {
			t.Errorf("history of %s has no encoded last failure of the refused POST", id)
		}
		var doc any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("history of %s is not JSON: %v", id, err)
		}
		n, sa := 0, 0
		walkPayloads(doc, "", func(path string, meta map[string]string, data []byte) {
			for what, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("%s %s: payload contains the %s", id, path, what)
				}
			}
			// Search attributes must stay readable for `temporal workflow list --query`: they are the
			// documented exception (model name, version number, stage).
			if strings.Contains(path, "indexedFields") {
				sa++
				return
			}
			n++
			if meta["encoding"] != codec.EncodingEncrypted || meta[codec.MetadataKeyID] != keyID {
				t.Errorf("%s %s: payload metadata %v, want encoding %s with key id %s", id, path, meta, codec.EncodingEncrypted, keyID)
			}
			for what, s := range plaintext {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("%s %s: payload contains the %s (%q) in plaintext", id, path, what, s)
				}
			}
		})
		if n < 5 || sa == 0 {
			t.Fatalf("history of %s: only %d payloads and %d search attributes found; the walk is broken", id, n, sa)
		}
		t.Logf("%s: %d encrypted payloads, %d search attribute payloads", id, n, sa)
	}
	// The temporal CLI, without the key, cannot read the stage.
	if out, err := h.cli("workflow", "query", "--workflow-id", "model/"+model+"/v1", "--name", "stage", "-o", "json"); err == nil && strings.Contains(out, "Production") {
		t.Fatalf("the temporal CLI read the stage without the key:\n%s", out)
	}

	// With the starter's codec server, the temporal CLI reads it (what README tells operators).
	codecURL, codecOut := startCodecServer(t, h)
	out, err := h.cli("workflow", "query", "--workflow-id", "model/"+model+"/v1", "--name", "stage", "-o", "json", "--codec-endpoint", codecURL)
	if err != nil || !strings.Contains(out, `"Production"`) {
		t.Fatalf("temporal workflow query --codec-endpoint: %v\n%s", err, out)
	}
	// What the Temporal UI shows (summary, current details) is encrypted like any payload: without the
	// codec the CLI shows none of it, with it the details and the summary naming the registrant.
	if out, err := h.cli("workflow", "metadata", "--workflow-id", "model/"+model+"/v1"); err == nil && strings.Contains(out, "· Production") {
		t.Fatalf("the temporal CLI read the current details without the key:\n%s", out)
	}
	out, err = h.cli("workflow", "metadata", "--workflow-id", "model/"+model+"/v1", "--codec-endpoint", codecURL)
	if err != nil || !strings.Contains(out, model+" v1 · Production") {
		t.Fatalf("temporal workflow metadata --codec-endpoint: %v\n%s", err, out)
	}
	out, err = h.cli("workflow", "describe", "--workflow-id", "model/"+model+"/v1", "--codec-endpoint", codecURL)
	if err != nil || !strings.Contains(out, "registered by `"+registrant+"`") {
		t.Fatalf("temporal workflow describe --codec-endpoint: %v\n%s", err, out)
	}
	out, err = h.cli("workflow", "show", "--workflow-id", "model/"+model+"/v1", "-o", "json", "--codec-endpoint", codecURL)
	if err != nil {
		t.Fatalf("temporal workflow show --codec-endpoint: %v\n%s", err, out)
	}
	var shown any
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatal(err)
	}
	sawApprover := false
	walkPayloads(shown, "", func(path string, meta map[string]string, data []byte) {
		if meta["encoding"] == codec.EncodingEncrypted {
			t.Errorf("temporal workflow show --codec-endpoint left %s encrypted", path)
		}
		sawApprover = sawApprover || bytes.Contains(data, []byte(approver))
	})
	if !sawApprover {
		t.Fatal("temporal workflow show --codec-endpoint does not show the approver's decision")
	}
	starterOut.WriteString(codecOut())

	// (b) Neither the worker's log nor the starter's output holds a secret.
	h.stopWorker()
	logBytes, err := os.ReadFile(filepath.Join(h.dir, "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logBytes, []byte(`"payloadEncryptionKeyID":"`+keyID+`"`)) {
		t.Fatalf("the worker log does not show it ran with the key:\n%s", tail(logBytes, 4000))
	}
	outMu.Lock()
	printed := starterOut.String()
	outMu.Unlock()
	if !strings.Contains(printed, approver) {
		t.Fatalf("starter output was not captured:\n%s", printed)
	}
	for what, s := range secrets {
		if bytes.Contains(logBytes, []byte(s)) {
			t.Errorf("the worker log contains the %s", what)
		}
		if strings.Contains(printed, s) {
			t.Errorf("the starter's output contains the %s", what)
		}
	}
}

// walkPayloads calls fn for every Temporal payload ({"metadata": {...}, "data": "<base64>"}) in a
// protojson history, with its path, its decoded metadata and its decoded data.
func walkPayloads(v any, path string, fn func(path string, meta map[string]string, data []byte)) {
	switch x := v.(type) {
	case map[string]any:
		if meta, ok := x["metadata"].(map[string]any); ok {
			if _, hasEnc := meta["encoding"]; hasEnc {
				m := map[string]string{}
				for k, mv := range meta {
					s, _ := mv.(string)
					b, _ := base64.StdEncoding.DecodeString(s)
					m[k] = string(b)
				}
				s, _ := x["data"].(string)
				data, _ := base64.StdEncoding.DecodeString(s)
				fn(path, m, data)
				return
			}
		}
		for k, child := range x {
			walkPayloads(child, path+"."+k, fn)
		}
	case []any:
		for i, child := range x {
			walkPayloads(child, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

// TestSecretsDevModeLogsNoDatabasePassword starts `worker --dev` with a catalog URL that holds a
// password: the embedded default logs where its catalog is, without the password.
func TestSecretsDevModeLogsNoDatabasePassword(t *testing.T) {
	buildBinaries(t)
	bin := testenv.TemporalBinary(t)
	pg := withPassword(t, testenv.Postgres(t), "devpw-"+randomString(t, 8))
	password := strings.SplitN(strings.TrimPrefix(pg, "postgres://postgres:"), "@", 2)[0]
	dir := t.TempDir()
	logPath := filepath.Join(dir, "worker.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.worker, "--dev", "--headless", "--dev-port", "0", "--data-dir", filepath.Join(dir, "data"), "--http", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "MODELREG_TEMPORAL_BIN="+bin, "MODELREG_DATABASE_URL="+pg, "MODELREG_S3_BUCKET=",
		"TEMPORAL_ADDRESS=", "MODELREG_PAYLOAD_KEY=", "MODELREG_PAYLOAD_KEY_ID=", "MODELREG_PAYLOAD_KEY_PREVIOUS=")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var b []byte
	for {
		b, _ = os.ReadFile(logPath)
		if bytes.Contains(b, []byte("worker started")) {
			break
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("worker --dev did not start:\n%s", tail(b, 6000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	_ = cmd.Wait()
	b, _ = os.ReadFile(logPath)
	if !bytes.Contains(b, []byte(`"catalog":"postgres://postgres:xxxxx@`)) {
		t.Fatalf("the embedded default's log does not show the redacted catalog URL:\n%s", tail(b, 6000))
	}
	if bytes.Contains(b, []byte(password)) {
		t.Fatalf("the worker log shows the database password:\n%s", tail(b, 6000))
	}
}

// startCodecServer runs `starter codec-server` on a free loopback port until the test ends, and
// returns its URL and a function that returns what it printed.
func startCodecServer(t *testing.T, h *harness) (string, func() string) {
	t.Helper()
	cmd := exec.Command(bins.starter, "codec-server", "--listen", "127.0.0.1:0")
	cmd.Env = h.env
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, rest, ok := strings.Cut(out.String(), "codec server on "); ok {
			if u, _, ok := strings.Cut(rest, " "); ok {
				return u, out.String
			}
		}
		select {
		case <-done:
			t.Fatalf("codec-server exited:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("codec-server did not start:\n%s", out.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
