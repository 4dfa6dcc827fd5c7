package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/workflows"
)

// TestForgedLifecycleMessagesRefused sends, with the real temporal CLI, what anyone who can reach the
// namespace can send: a promote for a version still waiting for approval, and archive and restore
// requests that no production switch asked for. Each is refused back to the sender with the reason and
// audited; production does not move and the catalog never names a version that is not in Production.
func TestForgedLifecycleMessagesRefused(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.registerSmall("forge", "a", "trainer", "0.9")
	if _, err := h.decide("approve", "forge", v1, "alice", h.digestOf("forge", v1)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("forge", v1, "Production")
	v2 := h.registerSmall("forge", "b", "trainer", "0.9")
	h.waitStage("forge", v2, "PendingApproval")

	out, err := h.cli("workflow", "update", "execute", "--workflow-id", "model/forge", "--name", "system:promote",
		"--input", fmt.Sprintf(`{"schemaVersion":1,"version":%d}`, v2))
	if err == nil || !strings.Contains(out, "PendingApproval") || !strings.Contains(out, "promote refused") {
		t.Fatalf("forged promote of a waiting version: err %v\n%s", err, out)
	}
	// The name promote had before modelV2 is no handler of a run started since.
	out, err = h.cli("workflow", "update", "execute", "--workflow-id", "model/forge", "--name", "promote",
		"--input", fmt.Sprintf(`{"schemaVersion":1,"version":%d}`, v2))
	if err == nil || !strings.Contains(out, "unknown update") {
		t.Fatalf("promote under its old name: err %v\n%s", err, out)
	}
	// An input over Temporal's 2 MB is refused. Such an update, accepted, would have its input written
	// to the history, which Temporal answers by terminating the workflow; refused, the SDK still echoes
	// the request in its answer, so the workflow task fails once (the CLI says so) and the workflow runs
	// on. An input far over its request's size is refused with the sizes.
	dir := t.TempDir()
	huge, big := filepath.Join(dir, "huge.json"), filepath.Join(dir, "big.json")
	for path, n := range map[string]int{huge: 2_100_000, big: 100 << 10} {
		if err := os.WriteFile(path, []byte(fmt.Sprintf(`{"schemaVersion":1,"version":%d,"approver":"alice","reason":"%s"}`, v2, strings.Repeat("x", n))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runOf := func(id string) (runID, status string) {
		var d struct {
			WorkflowExecutionInfo struct {
				Execution struct {
					RunID string `json:"runId"`
				} `json:"execution"`
				Status string `json:"status"`
			} `json:"workflowExecutionInfo"`
		}
		if err := json.Unmarshal([]byte(h.mustCLI("workflow", "describe", "--workflow-id", id, "-o", "json")), &d); err != nil {
			t.Fatal(err)
		}
		return d.WorkflowExecutionInfo.Execution.RunID, d.WorkflowExecutionInfo.Status
	}
	for _, target := range []struct{ id, name string }{{"model/forge", "system:promote"}, {fmt.Sprintf("model/forge/v%d", v2), "approve"}} {
		run, _ := runOf(target.id)
		out, err := h.cli("workflow", "update", "execute", "--workflow-id", target.id, "--name", target.name, "--input-file", huge)
		if err == nil {
			t.Fatalf("2 MB %s to %s accepted:\n%s", target.name, target.id, out)
		}
		out, err = h.cli("workflow", "update", "execute", "--workflow-id", target.id, "--name", target.name, "--input-file", big)
		if err == nil || !strings.Contains(out, "this request is at most 65536 bytes") {
			t.Fatalf("100 KiB %s to %s: err %v\n%s", target.name, target.id, err, out)
		}
		if after, status := runOf(target.id); after != run || status != "WORKFLOW_EXECUTION_STATUS_RUNNING" {
			t.Fatalf("%s after a 2 MB %s: run %s (was %s), %s", target.id, target.name, after, run, status)
		}
	}
	// But an activity that a version's workflow scheduled under the old name before the upgrade, and that
	// an upgraded worker runs, reaches the handler: it is checked (and refused here) like any promote.
	tc, err := client.Dial(client.Options{HostPort: h.address, DataConverter: workflows.NewDataConverter(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	var ts testsuite.WorkflowTestSuite
	aenv := ts.NewTestActivityEnvironment()
	acts := &activities.Activities{Temporal: tc}
	aenv.RegisterActivity(acts)
	_, err = aenv.ExecuteActivity(acts.UpdateWorkflow, activities.UpdateWorkflowInput{
		WorkflowID: "model/forge", UpdateName: workflows.UpdatePromoteLegacy, UpdateID: "legacy-promote",
		Arg: json.RawMessage(fmt.Sprintf(`{"schemaVersion":1,"version":%d}`, v2)),
	})
	if err == nil || !strings.Contains(err.Error(), "promote refused") || !strings.Contains(err.Error(), "PendingApproval") {
		t.Fatalf("promote scheduled under the old name: %v", err)
	}
	for _, c := range []struct {
		name    string
		version int
	}{{"archive", v1}, {"restore", v1}, {"archive", v2}} {
		out, err := h.cli("workflow", "update", "execute", "--workflow-id", fmt.Sprintf("model/forge/v%d", c.version), "--name", c.name, "--input", `{}`)
		if err == nil {
			t.Fatalf("forged %s of v%d accepted:\n%s", c.name, c.version, out)
		}
		t.Logf("forged %s of v%d: %s", c.name, c.version, strings.TrimSpace(out))
	}
	out, err = h.cli("workflow", "update", "execute", "--workflow-id", fmt.Sprintf("model/forge/v%d", v1), "--name", "archive",
		"--input", `{"schemaVersion":1,"switchId":"made-up"}`)
	if err == nil || !strings.Contains(out, "no switch is running") {
		t.Fatalf("archive naming a made-up switch: err %v\n%s", err, out)
	}
	if s := h.queryStage("forge", v1); s != "Production" {
		t.Fatalf("v%d is %s after the forgeries", v1, s)
	}
	if s := h.queryStage("forge", v2); s != "PendingApproval" {
		t.Fatalf("v%d is %s after the forgeries", v2, s)
	}
	p := h.mustStarter("production", "--model", "forge")
	if !strings.Contains(p, fmt.Sprintf("forge v%d (stage Production)", v1)) {
		t.Fatalf("production after the forgeries:\n%s", p)
	}
	refusals, err := h.catalog.Refusals(ctx, "forge")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range refusals {
		seen[r.Name]++
	}
	if seen["system:promote"] < 2 || seen["archive"] < 1 {
		t.Fatalf("refusals audited: %+v", refusals)
	}

	// One decision format: a misspelt field gets the same one-sentence reason by update and by signal,
	// and both refusals are in the decisions audit.
	bad := fmt.Sprintf(`{"approver":"alice","digets":%q}`, h.digestOf("forge", v2))
	out, err = h.cli("workflow", "update", "execute", "--workflow-id", fmt.Sprintf("model/forge/v%d", v2), "--name", "approve", "--input", bad)
	if err == nil || !strings.Contains(out, "unknown field") || strings.Count(out, "digets") != 1 {
		t.Fatalf("approve update with a misspelt field: err %v\n%s", err, out)
	}
	h.mustCLI("workflow", "signal", "--workflow-id", fmt.Sprintf("model/forge/v%d", v2), "--name", "approve", "--input", bad)
	h.mustCLI("workflow", "signal", "--workflow-id", fmt.Sprintf("model/forge/v%d", v2), "--name", "aprove", "--input", bad)
	waitFor(t, func() (string, bool) {
		ds, err := h.catalog.Decisions(ctx, "forge", v2)
		if err != nil {
			return err.Error(), false
		}
		reasons := map[string]string{}
		for _, d := range ds {
			if !d.Accepted && strings.Contains(d.Reason, "digets") {
				reasons[d.Via] = d.Reason
			}
		}
		return fmt.Sprint(reasons), reasons["update"] != "" && reasons["update"] == reasons["signal"]
	})
	waitFor(t, func() (string, bool) {
		rs, _ := h.catalog.Refusals(ctx, "forge")
		for _, r := range rs {
			if r.Name == "aprove" && strings.Contains(r.Reason, "unknown signal") {
				return "", true
			}
		}
		return fmt.Sprint(rs), false
	})

	// The lifecycle itself still works: approve v2, v1 is archived by a real switch.
	if _, err := h.decide("approve", "forge", v2, "alice", h.digestOf("forge", v2)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("forge", v2, "Production")
	h.waitStage("forge", v1, "Archived")
	if pv, err := h.catalog.Production(ctx, "forge"); err != nil || pv.Version != v2 {
		t.Fatalf("catalog production: v%d %v", pv.Version, err)
	}
	h.recordHistory("model/forge", "model-forged-promote-refused")
	h.recordHistory("model/forge/v1", "version-forged-archive-refused-then-archived")
}

// TestModelWorkflowSurvivesTerminateAndCancel ends the model's workflow the ways an operator can and
// checks that the next registration neither mints a number twice nor loses the production pointer,
// and that a cancel request does not end it.
func TestModelWorkflowSurvivesTerminateAndCancel(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.registerSmall("phoenix", "a", "trainer", "0.9")
	if _, err := h.decide("approve", "phoenix", v1, "alice", h.digestOf("phoenix", v1)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("phoenix", v1, "Production")
	v2 := h.registerSmall("phoenix", "b", "trainer", "0.9")

	h.mustCLI("workflow", "cancel", "--workflow-id", "model/phoenix")
	sleep()
	if out := h.mustCLI("workflow", "describe", "--workflow-id", "model/phoenix", "-o", "json"); !strings.Contains(out, "WORKFLOW_EXECUTION_STATUS_RUNNING") {
		t.Fatalf("the model's workflow ended on a cancel request:\n%s", out)
	}

	h.mustCLI("workflow", "terminate", "--workflow-id", "model/phoenix", "--reason", "operator test")
	v3 := h.registerSmall("phoenix", "c", "trainer", "0.9")
	if s := h.queryStage("phoenix", v2); s != "PendingApproval" {
		t.Fatalf("v%d is %s after the model's workflow was terminated", v2, s)
	}
	if v3 != 3 {
		t.Fatalf("after a terminate the next registration got v%d, want v3 (v1 and v2 exist)", v3)
	}
	// The same key as v2 still names v2.
	out := h.mustStarter("register", "--model", "phoenix", "--dir", h.dir+"/art-phoenix-b", "--idempotency-key", "b", "--json")
	if !strings.Contains(out, `"version": 2`) && !strings.Contains(out, `"version":2`) {
		t.Fatalf("retry of v2's key after the terminate:\n%s", out)
	}
	out = h.mustCLI("workflow", "query", "--workflow-id", "model/phoenix", "--type", "production")
	if !strings.Contains(out, `"version": 1`) && !strings.Contains(out, `"version":1`) {
		t.Fatalf("production after the rebuild:\n%s", out)
	}
	// A promotion after the rebuild archives v1 and moves the fenced pointer.
	if _, err := h.decide("approve", "phoenix", v3, "alice", h.digestOf("phoenix", v3)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("phoenix", v3, "Production")
	h.waitStage("phoenix", v1, "Archived")
	if pv, err := h.catalog.Production(ctx, "phoenix"); err != nil || pv.Version != v3 {
		t.Fatalf("catalog production: v%d %v", pv.Version, err)
	}
	// Terminate again while nothing runs: a rollback (update-with-start through the starter) still finds v1.
	h.mustCLI("workflow", "terminate", "--workflow-id", "model/phoenix", "--reason", "operator test")
	out = h.mustStarter("rollback", "--model", "phoenix", "--actor", "oncall", "--reason", "after terminate")
	if !strings.Contains(out, "v1 is in production again") {
		t.Fatalf("rollback after a terminate:\n%s", out)
	}
	h.waitStage("phoenix", v3, "Archived")
	vs, err := h.catalog.ListVersions(ctx, "phoenix", catalog.StageProduction)
	if err != nil || len(vs) != 1 || vs[0].Version != 1 {
		t.Fatalf("production rows: %+v %v", vs, err)
	}
	h.recordHistory("model/phoenix", "model-rebuilt-after-terminate")
}

// TestModelWorkflowSurvivesReset resets the model's workflow to its first workflow task, as an operator
// recovering from a bad deploy might: the run that follows re-reads the catalog, so it keeps production,
// mints the next number, and its next switch archives the right version under a fresh fence.
func TestModelWorkflowSurvivesReset(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.registerSmall("reset", "a", "trainer", "0.9")
	if _, err := h.decide("approve", "reset", v1, "alice", h.digestOf("reset", v1)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("reset", v1, "Production")
	before, err := h.catalog.GetModel(ctx, "reset")
	if err != nil {
		t.Fatal(err)
	}
	h.mustCLI("workflow", "reset", "--workflow-id", "model/reset", "--type", "FirstWorkflowTask", "--reason", "operator test")
	v2 := h.registerSmall("reset", "b", "trainer", "0.9")
	if v2 != 2 {
		t.Fatalf("after a reset the next registration got v%d, want v2", v2)
	}
	out := h.mustCLI("workflow", "query", "--workflow-id", "model/reset", "--type", "production")
	if !strings.Contains(out, `"version": 1`) && !strings.Contains(out, `"version":1`) {
		t.Fatalf("production after the reset:\n%s", out)
	}
	if _, err := h.decide("approve", "reset", v2, "alice", h.digestOf("reset", v2)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("reset", v2, "Production")
	h.waitStage("reset", v1, "Archived")
	after, err := h.catalog.GetModel(ctx, "reset")
	if err != nil || after.ProductionVersion == nil || *after.ProductionVersion != v2 || after.Seq <= before.Seq {
		t.Fatalf("catalog pointer after the reset and a promotion: %+v (before: seq %d) %v", after, before.Seq, err)
	}
	vs, err := h.catalog.ListVersions(ctx, "reset", catalog.StageProduction)
	if err != nil || len(vs) != 1 || vs[0].Version != v2 {
		t.Fatalf("production rows: %+v %v", vs, err)
	}
	if out, errOut, err := h.starter("check", "--model", "reset"); err != nil {
		t.Fatalf("starter check after a reset: %v\n%s%s", err, out, errOut)
	}
	h.recordHistory("model/reset", "model-reset-to-first-workflow-task")
}

// TestResetDoesNotReplayRollbacks resets the model's workflow to its first workflow task after a
// rollback and after a refused rollback. Temporal re-delivers every update accepted after the reset point
// to the new run; a rollback is not idempotent by its content (without --to it means "the last archived
// version", which the rollback itself changed), so the new run must recognise each as handled by its
// update ID, which the catalog kept, and leave production, the stages and the webhook alone.
func TestResetDoesNotReplayRollbacks(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.mustStarter("policy", "set", "--model", "replay", "--webhook", h.hook.srv.URL+"/deploy")
	// A rollback refused while nothing is archived: replayed later, it would find something to restore.
	if _, errOut, err := h.starter("rollback", "--model", "replay", "--actor", "oncall"); err == nil {
		t.Fatal("a rollback of a model without versions succeeded")
	} else if !strings.Contains(errOut, "no archived version") {
		t.Fatalf("the first rollback failed for another reason: %v\n%s", err, errOut)
	}
	var vs []int
	for _, key := range []string{"a", "b"} {
		v := h.registerSmall("replay", key, "trainer", "0.9")
		if _, err := h.decide("approve", "replay", v, "alice", h.digestOf("replay", v)); err != nil {
			t.Fatal(err)
		}
		h.waitStage("replay", v, "Production")
		vs = append(vs, v)
	}
	v1, v2 := vs[0], vs[1]
	out := h.mustStarter("rollback", "--model", "replay", "--actor", "oncall", "--reason", "latency")
	if !strings.Contains(out, fmt.Sprintf("v%d is in production again", v1)) {
		t.Fatalf("rollback:\n%s", out)
	}
	h.waitStage("replay", v2, "Archived")
	before, err := h.catalog.GetModel(ctx, "replay")
	if err != nil {
		t.Fatal(err)
	}
	events, evs := h.hook.waitEvents(t, 3)
	if len(evs) != 3 {
		t.Fatalf("deployment events before the reset: %v, want 3 (two promotions, one rollback)", evs)
	}
	refusedBefore, err := h.catalog.Refusals(ctx, "replay")
	if err != nil {
		t.Fatal(err)
	}

	h.mustCLI("workflow", "reset", "--workflow-id", "model/replay", "--type", "FirstWorkflowTask", "--reason", "operator test")
	// Both rollbacks come back, and both are refused as handled already, with the reason audited.
	deadline := time.Now().Add(60 * time.Second)
	var replays []catalog.Refusal
	for time.Now().Before(deadline) && len(replays) < 2 {
		time.Sleep(200 * time.Millisecond)
		rs, err := h.catalog.Refusals(ctx, "replay")
		if err != nil {
			t.Fatal(err)
		}
		replays = replays[:0]
		for _, r := range rs[len(refusedBefore):] {
			if r.Name == "rollback" && strings.Contains(r.Reason, "already handled") {
				replays = append(replays, r)
			}
		}
		if m, err := h.catalog.GetModel(ctx, "replay"); err != nil || m.Seq != before.Seq {
			t.Fatalf("the reset moved the production pointer: %+v (before %+v) %v", m, before, err)
		}
	}
	if len(replays) != 2 {
		rs, _ := h.catalog.Refusals(ctx, "replay")
		t.Fatalf("replayed rollbacks refused as handled: %d, want 2; refusals: %+v", len(replays), rs)
	}
	after, err := h.catalog.GetModel(ctx, "replay")
	if err != nil || after.Seq != before.Seq || after.ProductionVersion == nil || *after.ProductionVersion != v1 {
		t.Fatalf("catalog after the reset: %+v (before %+v) %v", after, before, err)
	}
	if s := h.queryStage("replay", v2); s != "Archived" {
		t.Fatalf("v%d is %s after the reset, want Archived", v2, s)
	}
	if s := h.queryStage("replay", v1); s != "Production" {
		t.Fatalf("v%d is %s after the reset, want Production", v1, s)
	}
	sleep()
	if now, _ := h.hook.snapshot(); !reflect.DeepEqual(now, events) {
		t.Fatalf("the reset sent deployment events: %v, before %v", now, events)
	}
	// The reset run still rolls back when asked anew.
	out = h.mustStarter("rollback", "--model", "replay", "--actor", "oncall", "--reason", "after reset")
	if !strings.Contains(out, fmt.Sprintf("v%d is in production again", v2)) {
		t.Fatalf("a new rollback after the reset:\n%s", out)
	}
	h.recordHistory("model/replay", "model-reset-replays-rollbacks")
}

// TestResetDuringRollback resets the model's workflow while a rollback is half made: its prior is
// archived, its target restored, and its pointer write waits on a catalog lock the test holds. The reset
// ends that run; Temporal delivers the rollback again to the new run, which takes the unfinished request
// over and finishes the switch its first handler decided on, while the first handler's pointer write,
// once the lock goes, finds its claim gone and writes nothing. The result is the rollback the operator
// asked for, once: the target in production, one deployment event, the request's outcome recorded, and
// the operator's `starter rollback` answered with it.
func TestResetDuringRollback(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const m = "midflight"
	h.mustStarter("policy", "set", "--model", m, "--webhook", h.hook.srv.URL+"/deploy")
	var vs []int
	for _, key := range []string{"a", "b"} {
		v := h.registerSmall(m, key, "trainer", "0.9")
		if _, err := h.decide("approve", m, v, "alice", h.digestOf(m, v)); err != nil {
			t.Fatal(err)
		}
		h.waitStage(m, v, "Production")
		vs = append(vs, v)
	}
	v1, v2 := vs[0], vs[1]
	if _, evs := h.hook.waitEvents(t, 2); len(evs) != 2 {
		t.Fatalf("deployment events of two promotions: %v", evs)
	}
	before, err := h.catalog.GetModel(ctx, m)
	if err != nil {
		t.Fatal(err)
	}

	db, release := h.holdRowLock(`SELECT 1 FROM models WHERE name = $1 FOR UPDATE`, m)
	done := make(chan string, 1)
	go func() {
		out, errOut, err := h.starter("rollback", "--model", m, "--actor", "oncall", "--reason", "midflight")
		done <- fmt.Sprintf("%v\n%s%s", err, out, errOut)
	}()
	// The switch has archived v2 and restored v1, and waits on the pointer.
	h.waitStage(m, v2, "Archived")
	h.waitStage(m, v1, "Production")
	time.Sleep(time.Second)
	h.mustCLI("workflow", "reset", "--workflow-id", "model/"+m, "--type", "FirstWorkflowTask", "--reason", "midflight")
	time.Sleep(3 * time.Second)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var after catalog.Model
	for time.Now().Before(deadline) {
		if after, err = h.catalog.GetModel(ctx, m); err == nil && after.ProductionVersion != nil && *after.ProductionVersion == v1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if after.ProductionVersion == nil || *after.ProductionVersion != v1 || after.Seq != before.Seq+1 {
		pv := "none"
		if after.ProductionVersion != nil {
			pv = fmt.Sprintf("v%d", *after.ProductionVersion)
		}
		t.Fatalf("catalog after the reset: production %s seq %d (before: v%d seq %d); want v%d, one switch later", pv, after.Seq, v2, before.Seq, v1)
	}
	select {
	case out := <-done:
		// The starter follows its update into the new run, where it was finished.
		if !strings.HasPrefix(out, "<nil>") || !strings.Contains(out, fmt.Sprintf("v%d is in production again", v1)) {
			t.Fatalf("the operator's rollback command across the reset: %s", out)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the rollback command did not return")
	}
	if s := h.queryStage(m, v1); s != "Production" {
		t.Fatalf("v%d is %s, want Production", v1, s)
	}
	if s := h.queryStage(m, v2); s != "Archived" {
		t.Fatalf("v%d is %s, want Archived", v2, s)
	}
	prod, err := h.catalog.ListVersions(ctx, m, catalog.StageProduction)
	if err != nil || len(prod) != 1 || prod[0].Version != v1 {
		t.Fatalf("production rows: %+v %v", prod, err)
	}
	var outcome sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT outcome FROM requests WHERE model = $1`, m).Scan(&outcome); err != nil || !strings.Contains(outcome.String, fmt.Sprintf("v%d in production", v1)) {
		t.Fatalf("the rollback's outcome: %q %v", outcome.String, err)
	}
	h.hook.waitEvents(t, 3)
	time.Sleep(2 * time.Second)
	_, evs := h.hook.snapshot()
	var rollbacks []activities.DeploymentEvent
	for _, ev := range evs {
		if ev.Kind == "rollback" {
			rollbacks = append(rollbacks, ev)
		}
	}
	if len(rollbacks) != 1 || rollbacks[0].Version != v1 || rollbacks[0].PreviousVersion != v2 {
		t.Fatalf("rollback events: %+v, want one of v%d replacing v%d", rollbacks, v1, v2)
	}
	if out, errOut, err := h.starter("check", "--model", m); err != nil {
		t.Fatalf("starter check: %v\n%s%s", err, out, errOut)
	}
	h.recordHistory("model/"+m, "model-reset-during-rollback")
}

// TestSwitchesAroundATerminatedProductionVersion: an operator terminates the workflow of the version in
// production. The next promotion archives it in the catalog itself (nobody is left to answer an archive
// request), a forged promote of it is refused as not running, and a rollback to it is refused before
// anything moves: each of these asks Temporal whether the version's workflow runs.
func TestSwitchesAroundATerminatedProductionVersion(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.promoteSmall("orphan", "a", "alice")
	h.mustCLI("workflow", "terminate", "--workflow-id", fmt.Sprintf("model/orphan/v%d", v1), "--reason", "operator mistake")

	v2 := h.registerSmall("orphan", "b", "trainer", "0.9")
	if _, err := h.decide("approve", "orphan", v2, "alice", h.digestOf("orphan", v2)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("orphan", v2, "Production")
	row, err := h.catalog.GetVersion(ctx, "orphan", v1)
	if err != nil || row.Stage != catalog.StageArchived {
		t.Fatalf("v%d after the promotion that replaced it: %+v %v", v1, row, err)
	}
	ts, err := h.catalog.Transitions(ctx, "orphan", v1)
	if err != nil || len(ts) == 0 {
		t.Fatalf("v%d transitions: %+v %v", v1, ts, err)
	}
	if last := ts[len(ts)-1]; last.To != catalog.StageArchived || !strings.Contains(last.Reason, "its lifecycle workflow is Terminated; replaced by v2 (promote)") {
		t.Fatalf("v%d's archive transition: %+v", v1, last)
	}

	out, err := h.cli("workflow", "update", "execute", "--workflow-id", "model/orphan", "--name", "system:promote",
		"--input", fmt.Sprintf(`{"schemaVersion":1,"version":%d}`, v1))
	if err == nil || !strings.Contains(out, fmt.Sprintf("the lifecycle workflow of orphan v%d is not running (Terminated)", v1)) {
		t.Fatalf("forged promote of the terminated version: err %v\n%s", err, out)
	}
	out, errOut, err := h.starter("rollback", "--model", "orphan", "--to", strconv.Itoa(v1), "--actor", "oncall", "--reason", "back")
	if err == nil || !strings.Contains(out+errOut, fmt.Sprintf("v%d cannot be restored: its lifecycle workflow is Terminated; production stays v%d", v1, v2)) ||
		strings.Count(out+errOut, "rollback refused") != 1 {
		t.Fatalf("rollback to the terminated version: err %v\n%s%s", err, out, errOut)
	}
	if pv, err := h.catalog.Production(ctx, "orphan"); err != nil || pv.Version != v2 {
		t.Fatalf("catalog production: v%d %v", pv.Version, err)
	}
	h.recordHistory("model/orphan", "model-terminated-production")
}

// TestTerminateDuringArchive: an operator terminates the production version's workflow while it is
// handling the archive request of the switch that replaces it (its catalog write held on a row lock).
// The request can never complete; the switch takes that as the version's workflow having ended,
// archives it in the catalog itself, and the new version reaches Production. Before, the switch sent the
// request again for ever and the model had no production version.
func TestTerminateDuringArchive(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const m = "cutoff"
	v1 := h.promoteSmall(m, "a", "alice")
	v2 := h.registerSmall(m, "b", "trainer", "0.9")

	db, release := h.holdRowLock(`SELECT 1 FROM versions WHERE model = $1 AND version = $2 FOR UPDATE`, m, v1)
	if _, err := h.decide("approve", m, v2, "alice", h.digestOf(m, v2)); err != nil {
		t.Fatal(err)
	}
	// v1's archive handler has checked the switch and waits on its transition's write.
	waitFor(t, func() (string, bool) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE versions SET stage%'`).Scan(&n)
		return fmt.Sprintf("%d waiting (%v)", n, err), err == nil && n > 0
	})
	h.mustCLI("workflow", "terminate", "--workflow-id", fmt.Sprintf("model/%s/v%d", m, v1), "--reason", "operator mistake")
	time.Sleep(time.Second)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	h.waitStage(m, v2, "Production")
	if pv, err := h.catalog.Production(ctx, m); err != nil || pv.Version != v2 {
		t.Fatalf("catalog production: v%d %v", pv.Version, err)
	}
	row, err := h.catalog.GetVersion(ctx, m, v1)
	if err != nil || row.Stage != catalog.StageArchived {
		t.Fatalf("v%d: %+v %v", v1, row, err)
	}
	prod, err := h.catalog.ListVersions(ctx, m, catalog.StageProduction)
	if err != nil || len(prod) != 1 || prod[0].Version != v2 {
		t.Fatalf("production rows: %+v %v", prod, err)
	}
	if out := h.mustCLI("workflow", "query", "--workflow-id", "model/"+m, "--type", "production"); !strings.Contains(out, fmt.Sprintf(`"version": %d`, v2)) && !strings.Contains(out, fmt.Sprintf(`"version":%d`, v2)) {
		t.Fatalf("the model's production query: %s", out)
	}
}

// TestCancelRequestOfAVersionIsIgnored: `temporal workflow cancel` of a version's workflow stops
// nothing. A waiting version cancelled is still approved (the operator's command says so), and a
// production version cancelled is still archived by the switch that replaces it and restored by a
// rollback. Before versionV3 the cancel request made each of those fail with "canceled".
func TestCancelRequestOfAVersionIsIgnored(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const m = "stubborn"
	v1 := h.registerSmall(m, "a", "trainer", "0.9")
	h.waitStage(m, v1, "PendingApproval")
	h.mustCLI("workflow", "cancel", "--workflow-id", fmt.Sprintf("model/%s/v%d", m, v1))
	h.mustStarter("approve", "--model", m, "--version", strconv.Itoa(v1), "--approver", "alice")
	h.waitStage(m, v1, "Production")
	h.mustCLI("workflow", "cancel", "--workflow-id", fmt.Sprintf("model/%s/v%d", m, v1))

	v2 := h.registerSmall(m, "b", "trainer", "0.9")
	h.mustStarter("approve", "--model", m, "--version", strconv.Itoa(v2), "--approver", "alice")
	h.waitStage(m, v2, "Production")
	h.waitStage(m, v1, "Archived")
	out := h.mustStarter("rollback", "--model", m, "--actor", "oncall", "--reason", "back")
	if !strings.Contains(out, fmt.Sprintf("v%d is in production again", v1)) {
		t.Fatalf("rollback to the cancelled version:\n%s", out)
	}
	if pv, err := h.catalog.Production(ctx, m); err != nil || pv.Version != v1 {
		t.Fatalf("catalog production: v%d %v", pv.Version, err)
	}
	if out := h.mustStarter("check", "--model", m); !strings.Contains(out, "0 findings") {
		t.Fatalf("starter check:\n%s", out)
	}
	h.recordHistory(fmt.Sprintf("model/%s/v%d", m, v1), "version-cancel-requests-ignored")
}

// TestTerminateDuringPromotion: an operator terminates the workflow of the version being promoted in
// the instant of its switch (its prior archived, the pointer write held on the models row's lock). The
// pointer write moves the version to Production in the same transaction, so the catalog never names a
// production version it still has Approved, whatever becomes of the version's workflow.
func TestTerminateDuringPromotion(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const m = "halfway"
	v1 := h.promoteSmall(m, "a", "alice")
	v2 := h.registerSmall(m, "b", "trainer", "0.9")

	_, release := h.holdRowLock(`SELECT 1 FROM models WHERE name = $1 FOR UPDATE`, m)
	if _, err := h.decide("approve", m, v2, "bob", h.digestOf(m, v2)); err != nil {
		t.Fatal(err)
	}
	h.waitStage(m, v1, "Archived") // the switch waits on its pointer write
	time.Sleep(time.Second)
	h.mustCLI("workflow", "terminate", "--workflow-id", fmt.Sprintf("model/%s/v%d", m, v2), "--reason", "operator mistake")
	if err := release(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() (string, bool) {
		pv, err := h.catalog.Production(ctx, m)
		return fmt.Sprintf("v%d %v", pv.Version, err), err == nil && pv.Version == v2
	})
	row, err := h.catalog.GetVersion(ctx, m, v2)
	if err != nil || row.Stage != catalog.StageProduction {
		t.Fatalf("v%d in the catalog: %+v %v", v2, row, err)
	}
	ts, err := h.catalog.Transitions(ctx, m, v2)
	if err != nil {
		t.Fatal(err)
	}
	var promoted *catalog.Transition
	for i := range ts {
		if ts[i].To == catalog.StageProduction {
			if promoted != nil {
				t.Fatalf("two Production rows for v%d: %+v", v2, ts)
			}
			promoted = &ts[i]
		}
	}
	if promoted == nil || promoted.Actor != "bob" || promoted.Reason != fmt.Sprintf("promoted, replacing v%d", v1) {
		t.Fatalf("v%d's promotion audit row: %+v", v2, promoted)
	}
	if out := h.mustStarter("production", "--model", m); !strings.Contains(out, fmt.Sprintf("v%d", v2)) {
		t.Fatalf("starter production:\n%s", out)
	}
}

// promoteSmall registers a small version, approves it as approver and waits until it is in production.
func (h *harness) promoteSmall(model, key, approver string) int {
	h.t.Helper()
	v := h.registerSmall(model, key, "trainer", "0.9")
	if _, err := h.decide("approve", model, v, approver, h.digestOf(model, v)); err != nil {
		h.t.Fatal(err)
	}
	h.waitStage(model, v, "Production")
	return v
}

// holdRowLock takes the row lock that query (a SELECT … FOR UPDATE) asks for, in a transaction of its
// own, so that the registry's write of that row waits until release. db is the connection, for a test
// that watches pg_stat_activity; both end with the test.
func (h *harness) holdRowLock(query string, args ...any) (db *sql.DB, release func() error) {
	h.t.Helper()
	ctx := context.Background()
	db, err := sql.Open("postgres", h.pgURL)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { db.Close() })
	lock, err := db.BeginTx(ctx, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = lock.Rollback() })
	if _, err := lock.ExecContext(ctx, query, args...); err != nil {
		h.t.Fatal(err)
	}
	return db, lock.Rollback
}
