package tests

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/workflows"
)

// TestReplayRecordedHistories replays every history recorded from real runs (testdata/histories, written
// by the end-to-end tests with MODELREG_RECORD_HISTORIES=1) against the current workflow code. A change
// that would break a version sitting in production for a year fails here with a non-determinism error;
// such changes need workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 7 {
		t.Fatalf("expected the recorded histories in testdata/histories, found %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: workflows.NewDataConverter()})
			if err != nil {
				t.Fatal(err)
			}
			r.RegisterWorkflowWithOptions(workflows.ModelWorkflow, workflow.RegisterOptions{Name: workflows.ModelWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.ModelVersionWorkflow, workflow.RegisterOptions{Name: workflows.VersionWorkflowType})
			logger := log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err := r.ReplayWorkflowHistoryFromJSONFile(logger, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
