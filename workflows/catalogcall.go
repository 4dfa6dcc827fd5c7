package workflows

import (
	"go.temporal.io/sdk/workflow"
)

// catalogCall runs one of the catalog's reads or writes with opts. With local set (runs since modelV3
// and versionV2) it runs as a local activity, in the worker that runs the workflow task: these are
// single PostgreSQL statements or transactions of a few milliseconds, each idempotent on its key (the
// idempotency key, a transition's or switch's seq, a refusal's or decision's ID), so being run again
// after a worker dies before its workflow task completes is as safe as an activity's retry. What that
// saves is a round trip through the server's matching and the history events of an activity and of the
// workflow task after it: about six events become one marker (docs/architecture.md, "Local
// activities"). What it costs: a catalog outage shows as a workflow task kept open and in the worker's
// log rather than as a pending activity with its last failure.
//
// Calls that wait on something else (another workflow, a webhook, the store) stay activities.
func catalogCall(ctx workflow.Context, local bool, opts workflow.ActivityOptions, activity any, args ...any) workflow.Future {
	if !local {
		return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), activity, args...)
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    opts.StartToCloseTimeout,
		ScheduleToCloseTimeout: opts.ScheduleToCloseTimeout,
		RetryPolicy:            opts.RetryPolicy,
	})
	return workflow.ExecuteLocalActivity(lctx, activity, args...)
}

// localCatalog reports whether this run of the model's workflow calls the catalog by local activity.
func (m *modelWF) localCatalog() bool { return m.v >= modelV3 }

// localCatalog reports whether this run of the version's workflow calls the catalog by local activity.
func (w *versionWF) localCatalog() bool { return w.bv >= versionV2 }
