package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/modelreg/modelreg/workflows"
)

// TestRefusedSignalStormKeepsAVersionWaiting sends 10,000 signals that are refused (no digest) to a
// version waiting for approval, through the real server with the default history bound. The version's
// workflow continues as new as its history grows, every run stays under 10,000 events, the refusals are
// all audited, and the version is then approved normally.
func TestRefusedSignalStormKeepsAVersionWaiting(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	v := h.registerSmall("storm", "a", "trainer", "0.9")
	tc, err := client.Dial(client.Options{HostPort: h.address, DataConverter: workflows.NewDataConverter(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	id := workflows.VersionWorkflowID("storm", v)

	// First, fourteen signals that each carry a 1.9 MB comment: together more than half of Temporal's
	// 50 MB history limit. The version continues as new on the history's size and keeps waiting.
	huge := strings.Repeat("x", 1900<<10)
	for i := 0; i < 14; i++ {
		for attempt := 1; ; attempt++ {
			err := tc.SignalWorkflow(ctx, id, "", workflows.SignalApprove, json.RawMessage(fmt.Sprintf(`{"approver":"mallory","comment":%q}`, huge)))
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "workflow is closing") || attempt == 20 {
				t.Fatalf("huge signal %d: %v", i, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor(t, func() (string, bool) {
		q, err := tc.QueryWorkflow(ctx, id, "", workflows.QueryDescribe)
		if err != nil {
			return err.Error(), false
		}
		var d workflows.VersionDescription
		if err := q.Get(&d); err != nil {
			return err.Error(), false
		}
		return fmt.Sprintf("%s, %d refused", d.State.Stage, d.State.RejectedTotal), d.State.Stage == workflows.StagePendingApproval && d.State.RejectedTotal >= 14
	})
	if desc, err := tc.DescribeWorkflowExecution(ctx, id, ""); err != nil || desc.WorkflowExecutionInfo.Status.String() != "Running" {
		t.Fatalf("after fourteen 1.9 MB signals: %v %v", desc, err)
	} else {
		t.Logf("after fourteen 1.9 MB signals: current run %d events, %d bytes", desc.WorkflowExecutionInfo.HistoryLength, desc.WorkflowExecutionInfo.HistorySizeBytes)
	}

	const storm, senders = 10_000, 8
	start := time.Now()
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < storm; i += senders {
				if err := tc.SignalWorkflow(ctx, id, "", workflows.SignalApprove, json.RawMessage(fmt.Sprintf(`{"approver":"mallory-%d"}`, i))); err != nil {
					t.Errorf("signal %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d signals sent in %s", storm, time.Since(start).Round(time.Millisecond))
	var d workflows.VersionDescription
	waitFor(t, func() (string, bool) {
		q, err := tc.QueryWorkflow(ctx, id, "", workflows.QueryDescribe)
		if err != nil {
			return err.Error(), false
		}
		if err := q.Get(&d); err != nil {
			return err.Error(), false
		}
		return fmt.Sprintf("%d refused so far", d.State.RejectedTotal), d.State.RejectedTotal >= storm+14
	})
	if d.State.Stage != workflows.StagePendingApproval || len(d.State.Rejected) > 20 {
		t.Fatalf("after the storm: stage %s, %d refused messages kept", d.State.Stage, len(d.State.Rejected))
	}
	t.Logf("all %d refusals processed %s after the first signal", storm, time.Since(start).Round(time.Millisecond))

	time.Sleep(2 * time.Second) // visibility lags the runs a little
	if desc, err := tc.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		t.Logf("current run %s: %d events", desc.WorkflowExecutionInfo.Execution.RunId, desc.WorkflowExecutionInfo.HistoryLength)
	}
	runs, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("WorkflowId = %q", id)})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs.Executions) < 2 {
		t.Fatalf("%d runs: the version's workflow did not continue as new", len(runs.Executions))
	}
	for _, r := range runs.Executions {
		t.Logf("run %s: %s, %d events", r.Execution.RunId, r.Status, r.HistoryLength)
		if r.HistoryLength >= 10_000 {
			t.Fatalf("run %s has %d events", r.Execution.RunId, r.HistoryLength)
		}
	}
	ds, err := h.catalog.Decisions(ctx, "storm", v)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) < storm+14 {
		t.Fatalf("%d decisions audited, want at least %d", len(ds), storm)
	}
	if out, err := h.decide("approve", "storm", v, "alice", h.digestOf("storm", v)); err != nil {
		t.Fatalf("approve after the storm: %v\n%s", err, out)
	}
	h.waitStage("storm", v, "Production")
	// Not recorded: these histories are tens of megabytes. TestConcurrentRegistrations records a
	// version continuing as new while PendingApproval.
}
