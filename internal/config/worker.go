package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.temporal.io/sdk/worker"
)

// WorkerTuning is how much the worker runs at once (MODELREG_WORKER_*); zero fields keep the SDK's
// defaults. The benchmark command (tests/bench, docs/benchmarks.md) measures what they change.
type WorkerTuning struct {
	MaxConcurrentActivities    int // MODELREG_WORKER_MAX_CONCURRENT_ACTIVITIES (SDK default 1,000)
	MaxConcurrentWorkflowTasks int // MODELREG_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS (SDK default 1,000)
	ActivityPollers            int // MODELREG_WORKER_ACTIVITY_POLLERS (SDK default 2)
	WorkflowPollers            int // MODELREG_WORKER_WORKFLOW_POLLERS (SDK default 2)
	// StickyCacheSize is how many workflows the worker keeps in memory between their tasks
	// (MODELREG_WORKER_STICKY_CACHE_SIZE, SDK default 10,000); one not cached is replayed from its
	// history on its next task.
	StickyCacheSize int
}

// workerVariables are the variables of WorkerTuning, in Variables.
var workerVariables = []string{"MODELREG_WORKER_MAX_CONCURRENT_ACTIVITIES", "MODELREG_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS",
	"MODELREG_WORKER_ACTIVITY_POLLERS", "MODELREG_WORKER_WORKFLOW_POLLERS", "MODELREG_WORKER_STICKY_CACHE_SIZE"}

func workerTuningFromEnv(get func(string) string) (WorkerTuning, error) {
	var t WorkerTuning
	for _, f := range []struct {
		name     string
		dst      *int
		min, max int
	}{
		{"MODELREG_WORKER_MAX_CONCURRENT_ACTIVITIES", &t.MaxConcurrentActivities, 1, 100_000},
		{"MODELREG_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", &t.MaxConcurrentWorkflowTasks, 2, 100_000},
		{"MODELREG_WORKER_ACTIVITY_POLLERS", &t.ActivityPollers, 1, 1_000},
		{"MODELREG_WORKER_WORKFLOW_POLLERS", &t.WorkflowPollers, 2, 1_000},
		{"MODELREG_WORKER_STICKY_CACHE_SIZE", &t.StickyCacheSize, 1, 10_000_000},
	} {
		v := strings.TrimSpace(get(f.name))
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < f.min || n > f.max {
			return t, fmt.Errorf("%s=%q: want a whole number from %d to %d", f.name, v, f.min, f.max)
		}
		*f.dst = n
	}
	return t, nil
}

// Options are the worker.Options of t. The sticky cache size is process-wide in the SDK: Apply sets it.
func (t WorkerTuning) Options() worker.Options {
	return worker.Options{
		MaxConcurrentActivityExecutionSize:     t.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskExecutionSize: t.MaxConcurrentWorkflowTasks,
		MaxConcurrentActivityTaskPollers:       t.ActivityPollers,
		MaxConcurrentWorkflowTaskPollers:       t.WorkflowPollers,
	}
}

// Apply sets what of t is process-wide, before a worker is created.
func (t WorkerTuning) Apply() {
	if t.StickyCacheSize > 0 {
		worker.SetStickyWorkflowCacheSize(t.StickyCacheSize)
	}
}
