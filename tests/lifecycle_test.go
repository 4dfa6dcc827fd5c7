package tests

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
)

// TestLifecycleEndToEnd is the README walk-through: register v1 from a directory, watch it validate,
// approve it with the temporal CLI (update), register v2 from an s3:// prefix, approve it with the
// temporal CLI (signal), and see v1 archived — checking queries, catalog rows, S3 objects and webhooks.
func TestLifecycleEndToEnd(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	h.mustStarter("policy", "set", "--model", "fraud", "--threshold", "accuracy>=0.9", "--require-file", "model.bin",
		"--champion-metric", "accuracy", "--champion-tolerance", "0.02", "--webhook", h.hook.srv.URL+"/deploy")

	// v1 from a directory.
	d1 := filepath.Join(h.dir, "v1")
	writeFiles(t, d1, map[string]string{"model.bin": "weights-v1", "config/params.yaml": "depth: 6\n"})
	m1 := filepath.Join(h.dir, "m1.json")
	writeFiles(t, h.dir, map[string]string{"m1.json": `{"accuracy": 0.93, "auc": 0.97}`})
	out := h.mustStarter("register", "--model", "fraud", "--dir", d1, "--metrics", m1, "--param", "lr=0.1",
		"--source-run", "run-1", "--registered-by", "trainer", "--wait")
	if !strings.Contains(out, "registered fraud v1") || !strings.Contains(out, "PendingApproval") {
		t.Fatalf("register output:\n%s", out)
	}
	if got := h.queryStage("fraud", 1); got != "PendingApproval" {
		t.Fatalf("v1 stage %s", got)
	}
	// Registering the same thing again is idempotent: same version, no new workflow.
	out = h.mustStarter("register", "--model", "fraud", "--dir", d1, "--metrics", m1, "--param", "lr=0.1",
		"--source-run", "run-1", "--registered-by", "trainer")
	if !strings.Contains(out, "already registered") || !strings.Contains(out, "v1") {
		t.Fatalf("re-register output:\n%s", out)
	}
	// The registrant is not asked twice, the operator sees it pending.
	if ids := h.listIDs(`ModelName="fraud" AND ModelStage="PendingApproval"`); !slices.Equal(ids, []string{"model/fraud/v1"}) {
		t.Fatalf("pending list: %v", ids)
	}

	// The deployment webhook is down for its first two deliveries: the delivery is retried (after the
	// switch: production does not wait for it).
	h.hook.mu.Lock()
	h.hook.fail = 2
	h.hook.mu.Unlock()

	// Approve with the temporal CLI's update, as an approver would.
	// A decision names the manifest digest the approver reviewed.
	cv1, err := h.catalog.GetVersion(ctx, "fraud", 1)
	if err != nil {
		t.Fatal(err)
	}
	// What the Temporal UI shows whoever opens v1 (README, "What the Temporal UI shows"), read through the
	// same API by the CLI: the summary it was started with, and current details that say how to approve.
	out = h.mustCLI("workflow", "describe", "--workflow-id", "model/fraud/v1")
	if !strings.Contains(out, "StaticSummary  \"fraud v1 · model version lifecycle · registered by `trainer`\"") || !strings.Contains(out, "Source run: `run-1`") {
		t.Fatalf("describe v1 shows no summary:\n%s", out)
	}
	out = h.mustCLI("workflow", "metadata", "--workflow-id", "model/fraud/v1")
	for _, want := range []string{
		"fraud v1 · PendingApproval · accuracy 0.93 (nothing in production to compare with)",
		"`trainer` (who registered it) may not approve it",
		fmt.Sprintf(`temporal workflow update execute --workflow-id model/fraud/v1 --name approve --input '{"approver":"YOUR-NAME","digest":"%s"}'`, cv1.ManifestDigest),
		"starter approve --model fraud --version 1 --digest " + cv1.ManifestDigest,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("temporal workflow metadata of v1 does not show %q:\n%s", want, out)
		}
	}
	// The CLI lists the updates in the SDK's order, by name: the human decision first, then the internal
	// archive, marked as such.
	if !regexp.MustCompile(`(?s)Update Definitions:\s+approve\s+Approve this version \(a human decision.*\n\s+archive\s+INTERNAL \(sent by the registry's own workflows; refused from anyone else\)`).MatchString(out) {
		t.Fatalf("temporal workflow metadata of v1 does not list approve first and archive as internal:\n%s", out)
	}
	if out := h.mustCLI("workflow", "describe", "--workflow-id", "model/fraud"); !strings.Contains(out, `StaticSummary  "fraud · model registry`) {
		t.Fatalf("describe of the model's workflow shows no summary:\n%s", out)
	}

	out = h.mustCLI("workflow", "update", "execute", "--workflow-id", "model/fraud/v1", "--name", "approve",
		"--input", fmt.Sprintf(`{"approver": "alice", "comment": "offline eval ok", "digest": %q}`, cv1.ManifestDigest))
	if !strings.Contains(out, "Approved") {
		t.Fatalf("update output: %s", out)
	}
	h.waitStage("fraud", 1, "Production")
	// A newer switch supersedes a delivery still pending, so wait for this one before promoting v2.
	if _, events := h.hook.waitEvents(t, 1); len(events) != 1 {
		t.Fatalf("v1's deployment event was not delivered: %+v", events)
	}

	// v2 from an s3:// prefix written by a training job into its own bucket.
	raw := h.store.(*artifact.S3).Client()
	if _, err := raw.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("training")}); err != nil {
		t.Fatal(err)
	}
	for key, body := range map[string]string{"runs/2/model.bin": "weights-v2", "runs/2/config/params.yaml": "depth: 8\n"} {
		if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("training"), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, h.dir, map[string]string{"m2.json": `{"accuracy": 0.94}`})
	out = h.mustStarter("register", "--model", "fraud", "--source", "s3://training/runs/2", "--metrics", filepath.Join(h.dir, "m2.json"),
		"--idempotency-key", "run-2", "--wait")
	if !strings.Contains(out, "registered fraud v2") || !strings.Contains(out, "PendingApproval") {
		t.Fatalf("register v2 output:\n%s", out)
	}
	// Approve with a signal, for tools that only signal.
	cv2, err := h.catalog.GetVersion(ctx, "fraud", 2)
	if err != nil {
		t.Fatal(err)
	}
	h.mustCLI("workflow", "signal", "--workflow-id", "model/fraud/v2", "--name", "approve", "--input",
		fmt.Sprintf(`{"approver": "bob", "digest": %q}`, cv2.ManifestDigest))
	h.waitStage("fraud", 2, "Production")
	h.waitStage("fraud", 1, "Archived")

	out = waitFor(t, func() (string, bool) {
		o := h.mustCLI("workflow", "metadata", "--workflow-id", "model/fraud")
		return o, strings.Contains(o, "fraud · production v2 (seq 2) · last delivery delivered")
	})
	if !strings.Contains(out, "- Archived (latest first): v1") || !regexp.MustCompile(`promote\s+INTERNAL \(sent by`).MatchString(out) {
		t.Fatalf("temporal workflow metadata of the model:\n%s", out)
	}

	// Deployers ask the catalog.
	out = h.mustStarter("production", "--model", "fraud")
	if !strings.Contains(out, "fraud v2") || !strings.Contains(out, "s3://registry/manifests/fraud/v2") {
		t.Fatalf("production output:\n%s", out)
	}
	prod, err := h.catalog.Production(ctx, "fraud")
	if err != nil || prod.Version != 2 || prod.Stage != catalog.StageProduction {
		t.Fatalf("catalog production: %+v %v", prod, err)
	}
	v1, err := h.catalog.GetVersion(ctx, "fraud", 1)
	if err != nil || v1.Stage != catalog.StageArchived || v1.Metrics["accuracy"] != 0.93 || v1.Params["lr"] != "0.1" || v1.SourceRun != "run-1" {
		t.Fatalf("catalog v1: %+v %v", v1, err)
	}
	trs, err := h.catalog.Transitions(ctx, "fraud", 0)
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, tr := range trs {
		path = append(path, fmt.Sprintf("v%d:%s", tr.Version, tr.To))
	}
	want := []string{"v1:Registered", "v1:Validating", "v1:PendingApproval", "v1:Approved", "v1:Production",
		"v2:Registered", "v2:Validating", "v2:PendingApproval", "v2:Approved", "v1:Archived", "v2:Production"}
	if !slices.Equal(path, want) {
		t.Fatalf("audit trail:\n got %v\nwant %v", path, want)
	}
	if trs[3].Actor != "alice" || trs[8].Actor != "bob" {
		t.Fatalf("approvers in the audit trail: %q %q", trs[3].Actor, trs[8].Actor)
	}

	// Manifests and blobs are in S3 and verify.
	for v, files := range map[int]map[string]string{1: {"model.bin": "weights-v1"}, 2: {"model.bin": "weights-v2"}} {
		m, digest, err := h.store.GetManifest(ctx, "fraud", v)
		if err != nil {
			t.Fatal(err)
		}
		cv, _ := h.catalog.GetVersion(ctx, "fraud", v)
		if cv.ManifestDigest != digest || len(m.Files) != 2 {
			t.Fatalf("v%d manifest %+v digest %s, catalog says %s", v, m, digest, cv.ManifestDigest)
		}
		for _, f := range m.Files {
			if err := h.store.VerifyBlob(ctx, f, nil); err != nil {
				t.Fatalf("v%d %s: %v", v, f.Path, err)
			}
			if want, ok := files[f.Path]; ok && f.Size != int64(len(want)) {
				t.Fatalf("v%d %s size %d", v, f.Path, f.Size)
			}
		}
	}
	if archived, err := h.store.IsArchived(ctx, "fraud", 1); err != nil || !archived {
		t.Fatalf("v1 artifacts archived mark: %v %v", archived, err)
	}

	// Webhooks: one event per promotion, each delivered once.
	counts, events := h.hook.waitEvents(t, 2)
	if len(events) != 2 || events[0].Version != 1 || events[1].Version != 2 || events[1].PreviousVersion != 1 {
		t.Fatalf("webhook events: %+v", events)
	}
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("event %s delivered %d times", id, n)
		}
	}
	if h.hook.fail != 0 {
		t.Fatalf("the webhook's refusals were not retried past: %d left", h.hook.fail)
	}
	if events[1].ManifestDigest != prod.ManifestDigest || events[1].ManifestURI != prod.ManifestURI {
		t.Fatalf("event names manifest %s %s, catalog %s %s", events[1].ManifestURI, events[1].ManifestDigest, prod.ManifestURI, prod.ManifestDigest)
	}

	// The operator's view by search attributes.
	if ids := h.listIDs(`ModelName="fraud" AND ModelStage="Archived"`); !slices.Equal(ids, []string{"model/fraud/v1"}) {
		t.Fatalf("archived list: %v", ids)
	}
	if ids := h.listIDs(`ModelName="fraud" AND ModelStage="Production"`); !slices.Equal(ids, []string{"model/fraud/v2"}) {
		t.Fatalf("production list: %v", ids)
	}

	// Rollback brings v1 back and archives v2.
	out = h.mustStarter("rollback", "--model", "fraud", "--reason", "latency regression", "--actor", "oncall")
	if !strings.Contains(out, "v1 is in production again") {
		t.Fatalf("rollback output: %s", out)
	}
	h.waitStage("fraud", 1, "Production")
	h.waitStage("fraud", 2, "Archived")
	if p, _ := h.catalog.Production(ctx, "fraud"); p.Version != 1 {
		t.Fatalf("after rollback production is v%d", p.Version)
	}

	// A decision for a version that is not waiting for one is refused back to the CLI.
	out, err = h.cli("workflow", "update", "execute", "--workflow-id", "model/fraud/v2", "--name", "approve", "--input", `{"approver": "mallory"}`)
	if err == nil || !strings.Contains(out, "not waiting for a decision") {
		t.Fatalf("late approve: %v\n%s", err, out)
	}
	h.recordHistory("model/fraud", "model-promote-rollback")
	h.recordHistory("model/fraud/v1", "version-production-archived-restored")
	h.recordHistory("model/fraud/v2", "version-s3-source-signal-approved-archived")
}

// TestValidationRejectsAndBadInput covers validation failures and the bad input a user can send, each
// with a clear error and nothing half-written.
func TestValidationRejectsAndBadInput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.mustStarter("policy", "set", "--model", "churn", "--threshold", "accuracy>=0.9", "--require-file", "model.bin")

	good := filepath.Join(h.dir, "good")
	writeFiles(t, good, map[string]string{"model.bin": "w"})
	writeFiles(t, h.dir, map[string]string{
		"low.json": `{"accuracy": 0.5}`, "nan.json": `{"accuracy": NaN}`, "notjson.json": `accuracy=0.9`,
		"str.json": `{"accuracy": "high"}`,
	})

	// Validation failure: metric below threshold and a required file missing.
	noModel := filepath.Join(h.dir, "nomodel")
	writeFiles(t, noModel, map[string]string{"weights.pt": "w"})
	out, _, err := h.starter("register", "--model", "churn", "--dir", noModel, "--metrics", filepath.Join(h.dir, "low.json"), "--wait")
	if err == nil || !strings.Contains(out, "Rejected") || !strings.Contains(out, "missing model.bin") || !strings.Contains(out, "accuracy = 0.5") {
		t.Fatalf("expected rejection with reasons, got %v\n%s", err, out)
	}
	if v, err := h.catalog.GetVersion(ctx, "churn", 1); err != nil || v.Stage != catalog.StageRejected {
		t.Fatalf("catalog: %+v %v", v, err)
	}

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unsafe model name", []string{"register", "--model", "../etc", "--dir", good}, "not a safe identifier"},
		{"missing dir", []string{"register", "--model", "churn", "--dir", filepath.Join(h.dir, "nope")}, "nope"},
		{"empty dir", []string{"register", "--model", "churn", "--dir", mkdir(t, filepath.Join(h.dir, "empty"))}, "empty"},
		{"metrics not JSON", []string{"register", "--model", "churn", "--dir", good, "--metrics", filepath.Join(h.dir, "notjson.json")}, "not a JSON object"},
		{"metrics NaN", []string{"register", "--model", "churn", "--dir", good, "--metrics", filepath.Join(h.dir, "nan.json")}, "not a JSON object"},
		{"metric not a number", []string{"register", "--model", "churn", "--dir", good, "--metrics", filepath.Join(h.dir, "str.json")}, "not a number"},
		{"unknown version status", []string{"status", "--model", "churn", "--version", "99"}, "has no version 99"},
		{"unknown model approve", []string{"approve", "--model", "ghost", "--version", "1"}, "has no version 1"},
		{"approve a rejected version", []string{"approve", "--model", "churn", "--version", "1"}, "not waiting for a decision"},
		{"unknown model production", []string{"production", "--model", "ghost"}, "ghost"},
	}
	escape := filepath.Join(h.dir, "escape")
	writeFiles(t, escape, map[string]string{"model.bin": "w"})
	if err := os.Symlink("/etc/hostname", filepath.Join(escape, "leak")); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct {
		name string
		args []string
		want string
	}{"symlink escaping the directory", []string{"register", "--model", "churn", "--dir", escape}, "outside"})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, err := h.starter(c.args...)
			if err == nil {
				t.Fatalf("expected failure, got success:\n%s", out)
			}
			if !strings.Contains(errOut, c.want) {
				t.Fatalf("error should mention %q, got:\n%s", c.want, errOut)
			}
		})
	}
	// A training job sending JSON itself (any SDK, or the temporal CLI) is held to the same rules: the
	// register update's validator refuses a path that escapes the artifact directory, back to the sender.
	bad := fmt.Sprintf(`{"schemaVersion":1,"model":"churn","idempotencyKey":"escape","source":{"files":[{"path":"../../etc/passwd","size":1,"sha256":"%s"}]}}`, strings.Repeat("a", 64))
	out, err = h.cli("workflow", "update", "execute", "--workflow-id", "model/churn", "--name", "register", "--input", bad)
	if err == nil || !strings.Contains(out, "escapes the artifact directory") {
		t.Fatalf("register with ../ path: %v\n%s", err, out)
	}

	// None of the refused registrations minted a version or wrote a row.
	if vs, err := h.catalog.ListVersions(ctx, "churn", ""); err != nil || len(vs) != 1 {
		t.Fatalf("versions after bad input: %+v %v", vs, err)
	}

	// An s3:// source that does not exist: the version ends Failed with the reason, and no manifest.
	out, _, err = h.starter("register", "--model", "churn", "--source", "s3://no-such-bucket/runs/1", "--idempotency-key", "missing-src", "--wait")
	if err == nil || !strings.Contains(out, "Failed") || !strings.Contains(out, "no-such-bucket") {
		t.Fatalf("missing source: %v\n%s", err, out)
	}
	if _, _, err := h.store.GetManifest(ctx, "churn", 2); !errors.Is(err, artifact.ErrNotFound) {
		t.Fatalf("a failed version must have no manifest, got %v", err)
	}
	if v, err := h.catalog.GetVersion(ctx, "churn", 2); err != nil || v.Stage != catalog.StageFailed {
		t.Fatalf("catalog v2: %+v %v", v, err)
	}

	// A malformed signal is recorded with its reason and the workflow keeps waiting.
	writeFiles(t, h.dir, map[string]string{"ok.json": `{"accuracy": 0.95}`})
	h.mustStarter("register", "--model", "churn", "--dir", good, "--metrics", filepath.Join(h.dir, "ok.json"), "--wait")
	// Malformed JSON: the CLI refuses to send it as JSON, so it goes as raw bytes.
	h.mustCLI("workflow", "signal", "--workflow-id", "model/churn/v3", "--name", "approve",
		"--input-meta", "encoding=binary/plain", "--input-base64", "--input", base64.StdEncoding.EncodeToString([]byte(`{"approver": "x",`)))
	h.mustCLI("workflow", "signal", "--workflow-id", "model/churn/v3", "--name", "approve", "--input", `{"approver": 7}`)
	h.mustCLI("workflow", "signal", "--workflow-id", "model/churn/v3", "--name", "approve", "--input", `{"approver": "x", "colour": "blue"}`)
	h.mustCLI("workflow", "signal", "--workflow-id", "model/churn/v3", "--name", "approve", "--input", `{"approver": "x", "digest": "sha256:00"}`)
	out = waitFor(t, func() (string, bool) {
		o := h.mustStarter("status", "--model", "churn", "--version", "3")
		return o, strings.Count(o, "approve (signal)") == 4
	})
	if !strings.Contains(out, "PendingApproval") || !strings.Contains(out, "cannot unmarshal number") || !strings.Contains(out, `payload encoding "binary/plain" is not json/plain`) || !strings.Contains(out, `unknown field "colour"`) ||
		!strings.Contains(out, "the decision names digest sha256:00 but churn v3 has manifest digest sha256:") {
		t.Fatalf("status after malformed signals:\n%s", out)
	}
	out = h.mustStarter("reject", "--model", "churn", "--version", "3", "--approver", "carol", "--comment", "not this quarter")
	if !strings.Contains(out, "Rejected") {
		t.Fatalf("reject output: %s", out)
	}
	h.recordHistory("model/churn/v1", "version-rejected-by-validation")
	h.recordHistory("model/churn/v2", "version-failed-missing-source")
	h.recordHistory("model/churn/v3", "version-malformed-signals-rejected")
}

func mkdir(t *testing.T, p string) string {
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitFor(t *testing.T, f func() (string, bool)) string {
	t.Helper()
	var last string
	for i := 0; i < 100; i++ {
		var ok bool
		if last, ok = f(); ok {
			return last
		}
		sleep()
	}
	t.Fatalf("condition not reached; last:\n%s", last)
	return last
}
