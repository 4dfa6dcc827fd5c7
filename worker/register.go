package main

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/workflows"
)

// newWorker is the one place that registers every workflow and activity of the registry.
func newWorker(c client.Client, acts *activities.Activities, opts worker.Options) worker.Worker {
	w := worker.New(c, workflows.TaskQueue, opts)
	w.RegisterWorkflowWithOptions(workflows.ModelWorkflow, workflow.RegisterOptions{Name: workflows.ModelWorkflowType})
	w.RegisterWorkflowWithOptions(workflows.ModelVersionWorkflow, workflow.RegisterOptions{Name: workflows.VersionWorkflowType})
	w.RegisterActivity(acts)
	return w
}
