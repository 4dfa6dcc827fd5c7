package workflows

import (
	"time"

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
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions(opts)), activity, args...)
}

// localRetryWindow stands for "no schedule-to-close timeout" in a local activity's options. An activity
// without one is retried for as long as its workflow runs (bounded only by its retry policy's attempts),
// but the SDK gives a local activity without one a schedule-to-close timeout equal to its
// start-to-close: every attempt after the first 10 seconds would be cut off, and a catalog outage of a
// minute would fail the call (and with it the model's workflow, or a version's step). A year is as good
// as forever for an outage, and the retry policy's backoff (at most 30 s) still applies.
const localRetryWindow = 365 * 24 * time.Hour

// localOptions are opts for a local activity, with the same retry window as the activity would have.
func localOptions(opts workflow.ActivityOptions) workflow.LocalActivityOptions {
	lo := workflow.LocalActivityOptions{
		StartToCloseTimeout:    opts.StartToCloseTimeout,
		ScheduleToCloseTimeout: opts.ScheduleToCloseTimeout,
		RetryPolicy:            opts.RetryPolicy,
	}
	if lo.ScheduleToCloseTimeout == 0 {
		lo.ScheduleToCloseTimeout = localRetryWindow
	}
	return lo
}

// localCatalog reports whether this run of the model's workflow calls the catalog by local activity.
func (m *modelWF) localCatalog() bool { return m.v >= modelV3 }

// localCatalog reports whether this run of the version's workflow calls the catalog by local activity.
func (w *versionWF) localCatalog() bool { return w.bv >= versionV2 }
