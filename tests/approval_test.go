package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

// digestOf is the manifest digest the catalog holds for a version (what an approver reviews).
func (h *harness) digestOf(model string, version int) string {
	h.t.Helper()
	// A query of the one column, not the catalog package: the upgrade test asks while the schema is
	// still an older release's, which lacks columns today's version rows have.
	db, err := sql.Open("postgres", h.pgURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer db.Close()
	var digest string
	err = db.QueryRowContext(context.Background(), `SELECT manifest_digest FROM versions WHERE model = $1 AND version = $2`, model, version).Scan(&digest)
	if err != nil || digest == "" {
		h.t.Fatalf("%s v%d digest: %q %v", model, version, digest, err)
	}
	return digest
}

// decide sends approve or reject with the temporal CLI's update, as an approver at 3 a.m. would.
func (h *harness) decide(kind, model string, version int, approver, digest string) (string, error) {
	h.t.Helper()
	in := fmt.Sprintf(`{"approver": %q, "digest": %q}`, approver, digest)
	return h.cli("workflow", "update", "execute", "--workflow-id", fmt.Sprintf("model/%s/v%d", model, version), "--name", kind, "--input", in)
}

func (h *harness) registerSmall(model, key, by, accuracy string) int {
	h.t.Helper()
	dir := filepath.Join(h.dir, "art-"+model+"-"+key)
	writeFiles(h.t, dir, map[string]string{"model.bin": "weights " + model + key, "m.json": `{"accuracy": ` + accuracy + `}`})
	out := h.mustStarter("register", "--model", model, "--dir", dir, "--metrics", filepath.Join(dir, "m.json"),
		"--idempotency-key", key, "--registered-by", by, "--json", "--wait")
	var d struct {
		Version int `json:"version"`
		State   struct {
			Stage string `json:"stage"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		h.t.Fatalf("register output %q: %v", out, err)
	}
	return d.Version
}

// TestApprovalPolicy drives quorum, allowed approvers, self-approval, digest binding, reject-wins, the
// approval deadline with reminders, and the audit trail with the real temporal CLI.
func TestApprovalPolicy(t *testing.T) {
	h := newHarness(t)
	h.mustStarter("policy", "set", "--model", "fraud", "--required-approvals", "2",
		"--allowed-approver", "alice", "--allowed-approver", "bob", "--allowed-approver", "trainer",
		"--webhook", h.hook.srv.URL)

	v1 := h.registerSmall("fraud", "run-1", "trainer", "0.9")
	d1 := h.digestOf("fraud", v1)
	refusals := []struct{ approver, digest, want string }{
		{"trainer", d1, "trainer registered fraud v1 and may not approve it"},
		{"mallory", d1, "mallory is not an allowed approver of model fraud"},
		{"alice", "sha256:" + strings.Repeat("0", 64), "the decision names digest sha256:000"},
	}
	for _, r := range refusals {
		out, err := h.decide("approve", "fraud", v1, r.approver, r.digest)
		if err == nil || !strings.Contains(out, r.want) {
			t.Fatalf("approve by %s: want refusal %q, got %v\n%s", r.approver, r.want, err, out)
		}
	}
	out, err := h.decide("approve", "fraud", v1, "alice", d1)
	if err != nil || !strings.Contains(out, "approvals:1 required:2") || !strings.Contains(out, "PendingApproval") {
		t.Fatalf("first approval: %v\n%s", err, out)
	}
	if out, err := h.decide("approve", "fraud", v1, "alice", d1); err == nil || !strings.Contains(out, "alice already approved fraud v1; 1 of 2") {
		t.Fatalf("same approver twice: %v\n%s", err, out)
	}
	if got := h.queryStage("fraud", v1); got != "PendingApproval" {
		t.Fatalf("one approval of two moved the stage to %s", got)
	}
	out = h.mustStarter("approve", "--model", "fraud", "--version", "1", "--approver", "bob", "--comment", "second pair of eyes")
	if !strings.Contains(out, "Approved") {
		t.Fatalf("second approval: %s", out)
	}
	h.waitStage("fraud", v1, "Production")

	// A reject wins over an approval.
	v2 := h.registerSmall("fraud", "run-2", "trainer", "0.9")
	d2 := h.digestOf("fraud", v2)
	h.mustCLI("workflow", "signal", "--workflow-id", "model/fraud/v2", "--name", "approve", "--input", fmt.Sprintf(`{"approver":"alice","digest":%q}`, d2))
	if out, err := h.decide("reject", "fraud", v2, "bob", d2); err != nil || !strings.Contains(out, "Rejected") {
		t.Fatalf("reject: %v\n%s", err, out)
	}
	if ids := h.listIDs(`ModelName="fraud" AND ModelStage="Rejected"`); !slices.Equal(ids, []string{"model/fraud/v2"}) {
		t.Fatalf("rejected list: %v", ids)
	}

	// The deadline: no decision within 4 s rejects the version as expired, after reminders every second.
	h.mustStarter("policy", "set", "--model", "fraud", "--approval-timeout", "4s", "--reminder-interval", "1s", "--webhook", h.hook.srv.URL)
	v3 := h.registerSmall("fraud", "run-3", "trainer", "0.9")
	h.waitStage("fraud", v3, "Rejected")
	if out, err := h.decide("approve", "fraud", v3, "alice", h.digestOf("fraud", v3)); err == nil {
		t.Fatalf("approval after the deadline was accepted:\n%s", out)
	}
	out = h.mustStarter("status", "--model", "fraud", "--version", "3")
	if !strings.Contains(out, "expired: the approval deadline passed") {
		t.Fatalf("status of expired version:\n%s", out)
	}
	_, events := h.hook.snapshot()
	reminders := 0
	for _, ev := range events {
		if ev.Kind == "reminder" && ev.Version == v3 {
			reminders++
		}
	}
	if reminders < 2 || reminders > 4 {
		t.Fatalf("want about 3 reminders before a 4 s deadline at a 1 s interval, got %d", reminders)
	}

	// The audit trail: every transition and every decision, accepted or refused.
	out = h.mustStarter("history", "--model", "fraud", "--version", "1")
	for _, want := range []string{"PendingApproval -> Approved", "approve accepted", "alice", "bob", "Approved -> Production"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history lacks %q:\n%s", want, out)
		}
	}
	ds, err := h.catalog.Decisions(context.Background(), "fraud", 2)
	if err != nil || len(ds) != 2 || ds[0].Via != "signal" || !ds[0].Accepted || ds[1].Kind != "reject" {
		t.Fatalf("decisions of v2: %+v %v", ds, err)
	}
	h.recordHistory("model/fraud/v1", "version-quorum-approved")
	h.recordHistory("model/fraud/v3", "version-expired-with-reminders")
}

// TestConcurrentApprovalsAndRollback approves two versions of one model at the same moment, then rolls
// back, and asks the catalog which version was in production at each point in time.
func TestConcurrentApprovalsAndRollback(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.registerSmall("race", "a", "trainer", "0.9")
	v2 := h.registerSmall("race", "b", "trainer", "0.9")
	var wg sync.WaitGroup
	for _, v := range []int{v1, v2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, _, err := h.starter("approve", "--model", "race", "--version", fmt.Sprint(v), "--approver", "alice"); err != nil {
				t.Errorf("approve v%d: %v %s", v, err, out)
			}
		}()
	}
	wg.Wait()
	var prod, archived int
	waitFor(t, func() (string, bool) {
		s1, s2 := h.queryStage("race", v1), h.queryStage("race", v2)
		switch {
		case s1 == "Production" && s2 == "Archived":
			prod, archived = v1, v2
		case s2 == "Production" && s1 == "Archived":
			prod, archived = v2, v1
		default:
			return s1 + " " + s2, false
		}
		return "", true
	})
	vs, err := h.catalog.ListVersions(ctx, "race", catalog.StageProduction)
	if err != nil || len(vs) != 1 || vs[0].Version != prod {
		t.Fatalf("catalog production rows: %+v %v", vs, err)
	}
	if p, err := h.catalog.Production(ctx, "race"); err != nil || p.Version != prod {
		t.Fatalf("catalog pointer: v%d %v, workflows say v%d", p.Version, err, prod)
	}
	beforeRollback := time.Now().UTC()

	out := h.mustStarter("rollback", "--model", "race", "--to", fmt.Sprint(archived), "--actor", "oncall", "--reason", "p99 latency")
	if !strings.Contains(out, fmt.Sprintf("v%d is in production again", archived)) {
		t.Fatalf("rollback: %s", out)
	}
	h.waitStage("race", prod, "Archived")
	out = h.mustStarter("production", "--model", "race", "--at", beforeRollback.Format(time.RFC3339Nano))
	if !strings.Contains(out, fmt.Sprintf("race v%d was in production", prod)) {
		t.Fatalf("production before the rollback:\n%s", out)
	}
	out = h.mustStarter("production", "--model", "race", "--at", time.Now().UTC().Format(time.RFC3339Nano))
	if !strings.Contains(out, fmt.Sprintf("race v%d was in production", archived)) {
		t.Fatalf("production after the rollback:\n%s", out)
	}
	out = h.mustStarter("production", "--model", "race", "--at", "2020-01-01T00:00:00Z")
	if !strings.Contains(out, "had no version in production") {
		t.Fatalf("production before any:\n%s", out)
	}
	out = h.mustStarter("history", "--model", "race")
	if !strings.Contains(out, "oncall") || !strings.Contains(out, "p99 latency") {
		t.Fatalf("rollback not in the audit trail:\n%s", out)
	}
	h.recordHistory("model/race", "model-concurrent-promotions-rollback")
}

// validatorCI is an external validator: it records validation requests and answers 202.
type validatorCI struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs map[string]activities.ValidationRequest // by "<validator>/v<version>"
}

func newValidatorCI(t *testing.T) *validatorCI {
	v := &validatorCI{reqs: map[string]activities.ValidationRequest{}}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req activities.ValidationRequest
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		v.mu.Lock()
		v.reqs[fmt.Sprintf("%s/v%d", req.Validator, req.Version)] = req
		v.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *validatorCI) request(t *testing.T, key string) activities.ValidationRequest {
	t.Helper()
	var r activities.ValidationRequest
	waitFor(t, func() (string, bool) {
		v.mu.Lock()
		defer v.mu.Unlock()
		var ok bool
		r, ok = v.reqs[key]
		return key, ok
	})
	return r
}

// TestExternalValidators: a CI gate that passes (verdict through the starter), one that fails (through
// the temporal CLI), one that never answers, a verdict for the wrong version and a late verdict.
func TestExternalValidators(t *testing.T) {
	h := newHarness(t)
	ci := newValidatorCI(t)
	h.mustStarter("policy", "set", "--model", "gated", "--validator", "ci="+ci.srv.URL+"/ci",
		"--validator", "fairness="+ci.srv.URL+"/fair", "--validator-timeout", "6s")

	register := func(key string) int {
		dir := filepath.Join(h.dir, "gated-"+key)
		writeFiles(t, dir, map[string]string{"model.bin": "gated " + key})
		out := h.mustStarter("register", "--model", "gated", "--dir", dir, "--idempotency-key", key, "--json")
		var r struct{ Version int }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.Version
	}
	verdictCLI := func(version int, body string) (string, error) {
		return h.cli("workflow", "update", "execute", "--workflow-id", fmt.Sprintf("model/gated/v%d", version), "--name", "verdict", "--input", body)
	}

	// v1: both pass.
	v1 := register("one")
	r := ci.request(t, "ci/v1")
	if r.ManifestDigest != h.digestOf("gated", v1) || r.WorkflowID != "model/gated/v1" {
		t.Fatalf("validation request: %+v", r)
	}
	h.mustStarter("verdict", "--model", "gated", "--version", "1", "--validator", "ci", "--token", r.Token, "--pass", "--report-url", "https://ci.example/runs/1")
	fr := ci.request(t, "fairness/v1")
	if out, err := verdictCLI(v1, fmt.Sprintf(`{"validator":"fairness","token":%q,"passed":true,"reportUrl":"https://ci.example/fair/1"}`, fr.Token)); err != nil {
		t.Fatalf("verdict via temporal CLI: %v\n%s", err, out)
	}
	h.waitStage("gated", v1, "PendingApproval")
	out := h.mustStarter("status", "--model", "gated", "--version", "1")
	if !strings.Contains(out, "validator ci: passed, report https://ci.example/runs/1") || !strings.Contains(out, "validator fairness: passed") {
		t.Fatalf("verdicts missing from the validation report:\n%s", out)
	}

	// v2: fairness fails; a verdict carrying v2's token sent to v1's workflow is refused.
	v2 := register("two")
	r2 := ci.request(t, "ci/v2")
	if out, err := verdictCLI(v1, fmt.Sprintf(`{"validator":"ci","token":%q,"passed":true}`, r2.Token)); err == nil || !strings.Contains(out, "no pending validation") && !strings.Contains(out, "token does not match") {
		t.Fatalf("verdict for the wrong version: %v\n%s", err, out)
	}
	h.mustStarter("verdict", "--model", "gated", "--version", "2", "--validator", "ci", "--token", r2.Token, "--pass")
	f2 := ci.request(t, "fairness/v2")
	h.mustStarter("verdict", "--model", "gated", "--version", "2", "--validator", "fairness", "--token", f2.Token, "--fail", "--detail", "disparate impact 0.71")
	h.waitStage("gated", v2, "Rejected")

	// v3: the fairness job is lost; after 6 s the version is rejected, and a late verdict is refused.
	v3 := register("three")
	r3 := ci.request(t, "ci/v3")
	h.mustStarter("verdict", "--model", "gated", "--version", "3", "--validator", "ci", "--token", r3.Token, "--pass")
	f3 := ci.request(t, "fairness/v3")
	h.waitStage("gated", v3, "Rejected")
	out, errOut, err := h.starter("verdict", "--model", "gated", "--version", "3", "--validator", "fairness", "--token", f3.Token, "--pass")
	if err == nil || !strings.Contains(errOut, "not waiting for a verdict: its stage is Rejected") {
		t.Fatalf("late verdict: %v\n%s%s", err, out, errOut)
	}
	out = h.mustStarter("status", "--model", "gated", "--version", "3")
	if !strings.Contains(out, "validator fairness: expired: no verdict by the deadline") {
		t.Fatalf("status of v3:\n%s", out)
	}
	h.recordHistory("model/gated/v1", "version-external-validators-passed")
	h.recordHistory("model/gated/v3", "version-external-validator-expired")
}
