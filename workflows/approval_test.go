package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

func TestQuorumAllowedApproversSelfApprovalAndDigest(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	validateWith(env, true, catalog.Policy{RequiredApprovals: 2, AllowedApprovers: []string{"alice", "bob", "trainer"}})
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).Return(json.RawMessage(`{"version":1}`), nil)
	var self, stranger, wrongDigest, noDigest, first, again, second *updateResult
	env.RegisterDelayedCallback(func() {
		self = update(env, UpdateApprove, Decision{Approver: "trainer", Digest: digest})
		stranger = update(env, UpdateApprove, Decision{Approver: "mallory", Digest: digest})
		wrongDigest = update(env, UpdateApprove, Decision{Approver: "alice", Digest: "sha256:00"})
		noDigest = update(env, UpdateApprove, Decision{Approver: "alice"})
		first = update(env, UpdateApprove, Decision{Approver: "alice", Digest: digest})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		require.ErrorContains(t, self.rejected, "trainer registered fraud v1 and may not approve it")
		require.ErrorContains(t, stranger.rejected, "mallory is not an allowed approver of model fraud (allowed: alice, bob, trainer)")
		require.ErrorContains(t, wrongDigest.rejected, "the decision names digest sha256:00 but fraud v1 has manifest digest "+digest)
		require.ErrorContains(t, noDigest.rejected, "must name the manifest digest")
		require.NoError(t, first.completeErr)
		require.Equal(t, DecisionResult{SchemaVersion: 1, Stage: StagePendingApproval, Approvals: 1, Required: 2}, first.result)
		again = update(env, UpdateApprove, Decision{Approver: "alice", Digest: digest})
		env.SignalWorkflow(SignalApprove, Decision{Approver: "alice", Digest: digest})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		require.ErrorContains(t, again.rejected, "alice already approved fraud v1; 1 of 2 distinct approvals so far")
		d := describe(t, env)
		require.Equal(t, StagePendingApproval, d.State.Stage, "the same approver twice counts once")
		require.Len(t, d.State.Rejected, 1)
		require.Contains(t, d.State.Rejected[0].Reason, "alice already approved")
		second = update(env, UpdateApprove, Decision{Approver: "bob", Digest: digest, Comment: "ok"})
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		require.NoError(t, second.completeErr)
		require.Equal(t, StageApproved, second.result.(DecisionResult).Stage)
		require.Equal(t, StageProduction, describe(t, env).State.Stage)
		env.CancelWorkflow()
	}, 4*time.Minute)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())

	require.Equal(t, []string{StageValidating, StagePendingApproval, StageApproved, StageProduction}, tr.stages())
	require.Equal(t, "approved by alice, bob: ok", tr.got[2].Reason)
	require.Equal(t, "bob", tr.got[2].Actor)
	// The audit holds what was acted on and the refused signal; refused updates went back to their senders.
	var audit []string
	for _, d := range tr.decisions {
		audit = append(audit, d.ID+" "+d.Kind+" "+d.Via+" "+d.Approver+" "+map[bool]string{true: "accepted", false: "refused"}[d.Accepted])
	}
	require.Equal(t, []string{"000001 approve update alice accepted", "000002 approve signal alice refused", "000003 approve update bob accepted"}, audit)
}

func TestRejectWinsOverApprovals(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	validateWith(env, true, catalog.Policy{RequiredApprovals: 2})
	env.RegisterDelayedCallback(func() {
		update(env, UpdateApprove, Decision{Approver: "alice", Digest: digest})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalReject, Decision{Approver: "bob", Digest: digest, Comment: "drift"})
	}, 2*time.Minute)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{StageValidating, StagePendingApproval, StageRejected}, tr.stages())
	require.Equal(t, "rejected: drift", tr.got[2].Reason)
}

func TestRemindersUntilTheDeadline(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	validateWith(env, true, catalog.Policy{ReminderIntervalSeconds: 600, ApprovalTimeoutSeconds: 3600})
	var reminders []activities.DeploymentEvent
	env.OnActivity(a.NotifyDeployment, mock.Anything, mock.Anything).Return(func(_ context.Context, ev activities.DeploymentEvent) error {
		reminders = append(reminders, ev)
		if len(reminders) == 2 {
			return temporal.NewNonRetryableApplicationError("webhook down", "x", nil) // best effort: ignored
		}
		return nil
	})
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, reminders, 5, "at 10, 20, 30, 40 and 50 minutes; the deadline is at 60")
	for i, ev := range reminders {
		require.Equal(t, "reminder", ev.Kind)
		require.Equal(t, StagePendingApproval, ev.Stage)
		require.Equal(t, "fraud/v1/reminder/"+string(rune('1'+i)), ev.EventID)
	}
	require.Equal(t, StageRejected, tr.stages()[2])
	require.Contains(t, tr.got[2].Reason, "expired")
}

func gatePolicy() catalog.Policy {
	return catalog.Policy{Validators: []catalog.ExternalValidator{
		{Name: "ci", URL: "http://127.0.0.1:1/ci", TimeoutSeconds: 600},
		{Name: "fairness", URL: "http://127.0.0.1:1/fair", TimeoutSeconds: 1200},
	}}
}

func TestExternalValidatorsPassFailAndTimeout(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fairness   *Verdict // nil: never answers
		wantStage  string
		wantDetail string
	}{
		{"both pass", &Verdict{Validator: "fairness", Passed: true, ReportURL: "https://ci/fair/1"}, StagePendingApproval, "validator fairness: passed, report https://ci/fair/1"},
		{"one fails", &Verdict{Validator: "fairness", Passed: false, Detail: "disparate impact 0.7"}, StageRejected, "validator fairness: failed: disparate impact 0.7"},
		{"one never answers", nil, StageRejected, "validator fairness: expired: no verdict by the deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, tr := newVersionEnv(t)
			storeOK(env)
			validateWith(env, true, gatePolicy())
			tokens := map[string]string{}
			env.OnActivity(a.RequestValidation, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ValidationRequest) error {
				require.Equal(t, digest, r.ManifestDigest)
				require.Equal(t, "model/fraud/v1", r.WorkflowID)
				tokens[r.Validator] = r.Token
				return nil
			})
			var wrongToken, ci, fair *updateResult
			var final VersionDescription
			env.RegisterDelayedCallback(func() {
				require.Equal(t, StageValidating, describe(t, env).State.Stage)
				wrongToken = update(env, UpdateVerdict, Verdict{Validator: "ci", Token: "not-it", Passed: true})
				ci = update(env, UpdateVerdict, Verdict{Validator: "ci", Token: tokens["ci"], Passed: true, ReportURL: "https://ci/1"})
				if tc.fairness != nil {
					v := *tc.fairness
					v.Token = tokens["fairness"]
					fair = update(env, UpdateVerdict, v)
				}
			}, time.Minute)
			env.RegisterDelayedCallback(func() {
				require.ErrorContains(t, wrongToken.rejected, "token does not match")
				require.NoError(t, ci.completeErr)
				if fair != nil {
					require.NoError(t, fair.completeErr)
				}
			}, 2*time.Minute)
			env.RegisterDelayedCallback(func() {
				// Still running only when every gate passed: the report shows the verdicts to approvers.
				final = describe(t, env)
				env.CancelWorkflow()
			}, 30*time.Minute)
			env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
			require.Equal(t, tc.wantStage, tr.stages()[1])
			if tc.wantStage == StageRejected {
				require.Contains(t, tr.got[1].Reason, tc.wantDetail)
				return
			}
			var checks []string
			for _, c := range final.State.Validation.Checks {
				checks = append(checks, c.Name+": "+c.Detail)
			}
			require.Contains(t, checks, "validator ci: passed, report https://ci/1")
			require.Contains(t, checks, tc.wantDetail)
		})
	}
}

func TestExternalValidatorUnreachableFails(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	p := gatePolicy()
	p.Validators = p.Validators[:1]
	validateWith(env, true, p)
	env.OnActivity(a.RequestValidation, mock.Anything, mock.Anything).Return(errors.New("connection refused"))
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{StageValidating, StageRejected}, tr.stages())
	require.Contains(t, tr.got[1].Reason, "validator ci: failed: the validation request could not be delivered: connection refused")
}
