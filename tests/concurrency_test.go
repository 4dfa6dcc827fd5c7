package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentRegistrations checks invariant 5 through the real CLI: concurrent registrations of one
// model get versions 1..N with no gap or duplicate, retries of one idempotency key get one version, and
// the model workflow keeps all of that across continue-as-new (forced with a small maxHistoryEvents,
// set by starting the workflow with the temporal CLI as an operator could).
func TestConcurrentRegistrations(t *testing.T) {
	h := newHarness(t)
	h.mustCLI("workflow", "start", "--type", "ModelWorkflow", "--task-queue", "model-registry", "--workflow-id", "model/ops",
		"--input", `{"schemaVersion": 1, "model": "ops", "maxHistoryEvents": 40}`)

	dir := filepath.Join(h.dir, "art")
	writeFiles(t, dir, map[string]string{"model.bin": "ops weights"})
	re := regexp.MustCompile(`ops v(\d+)`)
	var mu sync.Mutex
	versions := map[string][]int{}
	var wg sync.WaitGroup
	register := func(key string) {
		defer wg.Done()
		out, errOut, err := h.starter("register", "--model", "ops", "--dir", dir, "--idempotency-key", key)
		if err != nil {
			t.Errorf("register %s: %v\n%s", key, err, errOut)
			return
		}
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("register %s output: %s", key, out)
			return
		}
		v, _ := strconv.Atoi(m[1])
		mu.Lock()
		versions[key] = append(versions[key], v)
		mu.Unlock()
	}
	const distinct, retries = 6, 5
	for i := 0; i < distinct; i++ {
		wg.Add(1)
		go register(fmt.Sprintf("job-%d", i))
	}
	for i := 0; i < retries; i++ {
		wg.Add(1)
		go register("same-job")
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var all []int
	for key, vs := range versions {
		for _, v := range vs[1:] {
			if v != vs[0] {
				t.Fatalf("key %s got versions %v", key, vs)
			}
		}
		all = append(all, vs[0])
	}
	sort.Ints(all)
	for i, v := range all {
		if v != i+1 {
			t.Fatalf("versions %v: want 1..%d with no gap or duplicate", all, distinct+1)
		}
	}
	if n := len(versions["same-job"]); n != retries {
		t.Fatalf("same-job answered %d times", n)
	}

	// The catalog agrees, and the model workflow continued as new at least once carrying its state.
	vs, err := h.catalog.ListVersions(t.Context(), "ops", "")
	if err != nil || len(vs) != distinct+1 {
		t.Fatalf("catalog versions: %d %v", len(vs), err)
	}
	out := h.mustCLI("workflow", "query", "--workflow-id", "model/ops", "--name", "describe", "-o", "json")
	var res struct {
		QueryResult []struct {
			State struct {
				LastVersion int            `json:"lastVersion"`
				Keys        map[string]int `json:"keys"`
				Runs        int            `json:"runs"`
			} `json:"state"`
		} `json:"queryResult"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.QueryResult) != 1 {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	st := res.QueryResult[0].State
	// The keys live in the catalog, not in the workflow's state.
	if st.LastVersion != distinct+1 || len(st.Keys) != 0 || st.Runs < 2 {
		t.Fatalf("model state after continue-as-new: %+v", st)
	}
	for _, v := range all {
		h.waitStage("ops", v, "PendingApproval")
	}

	// A version inherits the model's maxHistoryEvents: in production it continues as new once its history
	// is long, carrying its state; signals that arrive meanwhile are still recorded.
	h.mustStarter("approve", "--model", "ops", "--version", "1", "--approver", "alice")
	h.waitStage("ops", 1, "Production")
	for i := 0; i < 12; i++ {
		// While a run continues as new, Temporal refuses a signal with "workflow is closing"; the sender
		// retries, as README says.
		for attempt := 1; ; attempt++ {
			out, err := h.cli("workflow", "signal", "--workflow-id", "model/ops/v1", "--name", "approve", "--input", fmt.Sprintf(`{"approver": "late-%d"}`, i))
			if err == nil {
				break
			}
			if !strings.Contains(out, "workflow is closing") || attempt == 10 {
				t.Fatalf("signal late-%d: %v\n%s", i, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor(t, func() (string, bool) {
		o := h.mustCLI("workflow", "list", "--query", `WorkflowId="model/ops/v1"`, "-o", "json")
		return o, strings.Count(o, `"runId"`) >= 2
	})
	waitFor(t, func() (string, bool) {
		d := h.mustStarter("status", "--model", "ops", "--version", "1", "--json")
		return d, strings.Contains(d, `"stage": "Production"`) && strings.Count(d, "is not waiting for a decision") == 12
	})
	// A version waiting for approval continues as new too (the versions inherit maxHistoryEvents 40):
	// refused decisions grow v2's history, and it keeps waiting, with every refusal kept in count.
	for i := 0; i < 15; i++ {
		for attempt := 1; ; attempt++ {
			out, err := h.cli("workflow", "signal", "--workflow-id", "model/ops/v2", "--name", "approve", "--input", fmt.Sprintf(`{"approver": "early-%d"}`, i))
			if err == nil {
				break
			}
			if !strings.Contains(out, "workflow is closing") || attempt == 10 {
				t.Fatalf("signal early-%d: %v\n%s", i, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor(t, func() (string, bool) {
		o := h.mustCLI("workflow", "list", "--query", `WorkflowId="model/ops/v2"`, "-o", "json")
		return o, strings.Count(o, `"runId"`) >= 2
	})
	waitFor(t, func() (string, bool) {
		d := h.mustStarter("status", "--model", "ops", "--version", "2", "--json")
		return d, strings.Contains(d, `"stage": "PendingApproval"`) && strings.Contains(d, `"rejectedTotal": 15`)
	})
	h.recordAllRuns("model/ops", "model-continued-as-new")
	h.recordAllRuns("model/ops/v1", "version-continued-as-new")
	h.recordAllRuns("model/ops/v2", "version-pending-continued-as-new")
}

// TestRegisterBurstOnOneModel: 16 training jobs register on one model at the same instant. Temporal lets
// a workflow have 10 updates in flight, so as updates some of these were refused with "resource
// exhausted" and sent again by the SDK after a pause; as register signals (what the starter sends) none
// is refused and every one is minted, in few workflow tasks. The model's history shows 16 signals and
// no register update; an operator reads an outcome with the registration query, and a malformed
// register signal sent with the temporal CLI is refused and audited without disturbing anything.
func TestRegisterBurstOnOneModel(t *testing.T) {
	h := newHarness(t)
	const jobs = 16
	var wg sync.WaitGroup
	re := regexp.MustCompile(`burst v(\d+)`)
	got := make([]int, jobs)
	start := make(chan struct{})
	for i := range jobs {
		dir := filepath.Join(h.dir, fmt.Sprintf("job-%d", i))
		writeFiles(t, dir, map[string]string{"model.bin": fmt.Sprintf("burst weights %d", i)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out, errOut, err := h.starter("register", "--model", "burst", "--dir", dir, "--idempotency-key", fmt.Sprintf("job-%d", i))
			if err != nil {
				t.Errorf("job %d: %v\n%s", i, err, errOut)
				return
			}
			if m := re.FindStringSubmatch(out); m != nil {
				got[i], _ = strconv.Atoi(m[1])
			} else {
				t.Errorf("job %d output: %s", i, out)
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	sorted := append([]int(nil), got...)
	sort.Ints(sorted)
	for i, v := range sorted {
		if v != i+1 {
			t.Fatalf("versions %v: want 1..%d", sorted, jobs)
		}
	}

	hist := h.mustCLI("workflow", "show", "--workflow-id", "model/burst", "-o", "json")
	var events struct {
		Events []struct {
			EventType                                string          `json:"eventType"`
			WorkflowExecutionSignaledEventAttributes json.RawMessage `json:"workflowExecutionSignaledEventAttributes"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(hist), &events); err != nil {
		t.Fatal(err)
	}
	signals, updates := 0, 0
	for _, e := range events.Events {
		switch e.EventType {
		case "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED":
			signals++
		case "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
			updates++
		}
	}
	if signals != jobs || updates != 0 {
		t.Fatalf("model/burst history: %d signals and %d accepted updates; want %d and 0", signals, updates, jobs)
	}

	out := h.mustCLI("workflow", "query", "--workflow-id", "model/burst", "--name", "registration", "--input", `"job-3"`, "-o", "json")
	if !strings.Contains(out, `"state": "registered"`) || !strings.Contains(out, fmt.Sprintf(`"version": %d`, got[3])) {
		t.Fatalf("registration query of job-3 (v%d):\n%s", got[3], out)
	}
	out = h.mustCLI("workflow", "query", "--workflow-id", "model/burst", "--name", "registration", "--input", `"nobody"`, "-o", "json")
	if !strings.Contains(out, `"state": "unknown"`) {
		t.Fatalf("registration query of an unknown key:\n%s", out)
	}

	h.mustCLI("workflow", "signal", "--workflow-id", "model/burst", "--name", "register", "--input", `{"schemaVersion": 1, "model": "burst", "idempotencyKey": "garbage"}`)
	waitFor(t, func() (string, bool) {
		o := h.mustCLI("workflow", "query", "--workflow-id", "model/burst", "--name", "registration", "--input", `"garbage"`, "-o", "json")
		return o, strings.Contains(o, `"state": "failed"`) && strings.Contains(o, "register signal refused")
	})
	waitFor(t, func() (string, bool) {
		rs, err := h.catalog.Refusals(t.Context(), "burst")
		return fmt.Sprint(rs, err), err == nil && len(rs) == 1 && rs[0].Name == "register" && rs[0].Via == "signal"
	})
	// The model goes on: the next registration is v17.
	dir := filepath.Join(h.dir, "after")
	writeFiles(t, dir, map[string]string{"model.bin": "after the garbage"})
	if out := h.mustStarter("register", "--model", "burst", "--dir", dir); !strings.Contains(out, fmt.Sprintf("burst v%d", jobs+1)) {
		t.Fatalf("register after the malformed signal: %s", out)
	}
}

// TestRegisterWhileModelWorkflowTerminated: the model's workflow is terminated after it received a
// register signal and before it could work on it (no worker was running). The starter, still asking for
// the outcome, sends the request again, which starts a new run, and gets its version.
func TestRegisterWhileModelWorkflowTerminated(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(h.dir, "art")
	writeFiles(t, dir, map[string]string{"model.bin": "first"})
	h.mustStarter("register", "--model", "gone", "--dir", dir)
	h.stopWorker()
	writeFiles(t, dir, map[string]string{"model.bin": "second"})
	type result struct {
		out, errOut string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, err := h.starter("register", "--model", "gone", "--dir", dir)
		done <- result{out, errOut, err}
	}()
	// The signal is in the model's history before the terminate.
	waitFor(t, func() (string, bool) {
		o := h.mustCLI("workflow", "show", "--workflow-id", "model/gone", "-o", "json")
		return o, strings.Count(o, "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") == 2
	})
	h.mustCLI("workflow", "terminate", "--workflow-id", "model/gone", "--reason", "operator error")
	h.startWorker()
	select {
	case r := <-done:
		if r.err != nil || !strings.Contains(r.out, "gone v2") {
			t.Fatalf("register across the terminate: %v\n%s\n%s", r.err, r.out, r.errOut)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("register did not finish within 2 minutes of the worker's return")
	}
}
