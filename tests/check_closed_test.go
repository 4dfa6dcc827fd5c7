package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelreg/modelreg/internal/check"
)

// TestCheckFindsWorkflowsTemporalEnded: a terminated workflow still answers queries with its last state,
// so `starter check` must ask Temporal whether it runs. v1 in Production (continued as new, so its
// first run is closed as ContinuedAsNew), v2 waiting for approval and v3 rejected (its workflow
// completed, as it should) check clean; then an operator terminates v2's workflow and the model's with
// the temporal CLI, and check reports both and exits 1.
func TestCheckFindsWorkflowsTemporalEnded(t *testing.T) {
	h := newHarness(t)
	// A small maxHistoryEvents, which versions inherit, makes v1 continue as new below.
	h.mustCLI("workflow", "start", "--type", "ModelWorkflow", "--task-queue", "model-registry", "--workflow-id", "model/fraud",
		"--input", `{"schemaVersion": 1, "model": "fraud", "maxHistoryEvents": 40}`)
	for i := 1; i <= 3; i++ {
		v := strconv.Itoa(i)
		dir := filepath.Join(h.dir, "run"+v)
		writeFiles(t, dir, map[string]string{"model.bin": "closed-weights-" + v})
		h.mustStarter("register", "--model", "fraud", "--dir", dir, "--registered-by", "trainer", "--wait")
	}
	h.mustStarter("approve", "--model", "fraud", "--version", "1", "--approver", "alice")
	h.mustStarter("reject", "--model", "fraud", "--version", "3", "--approver", "alice", "--comment", "worse")
	h.waitStage("fraud", 1, "Production")
	h.waitStage("fraud", 3, "Rejected")
	for i := 0; i < 12; i++ {
		// A signal that arrives while the run continues as new is refused ("workflow is closing"): the
		// next run takes the next one.
		out, err := h.cli("workflow", "signal", "--workflow-id", "model/fraud/v1", "--name", "approve", "--input", fmt.Sprintf(`{"approver": "late-%d"}`, i))
		if err != nil && !strings.Contains(out, "workflow is closing") {
			t.Fatalf("signal %d: %v\n%s", i, err, out)
		}
	}
	waitFor(t, func() (string, bool) {
		o := h.mustCLI("workflow", "list", "--query", `WorkflowId="model/fraud/v1"`, "-o", "json")
		return o, strings.Count(o, `"runId"`) >= 2 && strings.Contains(o, "CONTINUED_AS_NEW")
	})
	h.waitStage("fraud", 1, "Production")
	out := h.mustCLI("workflow", "describe", "--workflow-id", "model/fraud/v3", "-o", "json")
	if !strings.Contains(out, "WORKFLOW_EXECUTION_STATUS_COMPLETED") && !strings.Contains(out, `"Completed"`) {
		t.Fatalf("a rejected version's workflow is expected to have completed:\n%s", out)
	}
	if out := h.mustStarter("check"); strings.TrimSpace(out) != "checked 1 model, 3 versions: 0 findings" {
		t.Fatalf("starter check before anything was terminated:\n%s", out)
	}

	h.mustCLI("workflow", "terminate", "--workflow-id", "model/fraud/v2", "--reason", "operator mistake")
	h.mustCLI("workflow", "terminate", "--workflow-id", "model/fraud", "--reason", "operator mistake")

	out, errOut, err := h.starter("check")
	if code := checkExitCode(err); code != 1 {
		t.Fatalf("starter check exited %d (%v), want 1:\n%s%s", code, err, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range []string{
		"fraud v2: workflow model/fraud/v2 is Terminated, but its stage PendingApproval needs it running",
		"fraud: workflow model/fraud is Terminated; a model's workflow must always be running",
		"checked 1 model, 3 versions: 2 findings",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("starter check output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = h.starter("check", "--model", "fraud", "--json")
	if code := checkExitCode(err); code != 1 {
		t.Fatalf("starter check --json exited %d (%v), want 1:\n%s", code, err, out)
	}
	var rep check.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, "v"+strconv.Itoa(f.Version)+":"+f.Kind)
	}
	slices.Sort(got)
	if want := []string{"v0:" + check.KindWorkflowClosed, "v2:" + check.KindWorkflowClosed}; !slices.Equal(got, want) {
		t.Fatalf("--json findings %v, want %v:\n%s", got, want, out)
	}
}
