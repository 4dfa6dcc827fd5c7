package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

type audit struct {
	mu        sync.Mutex
	stages    []string
	decisions []catalog.Decision
	refusals  []catalog.Refusal
	reminders []time.Time
	batches   int
}

func newVersionEnvV1(t *testing.T, au *audit) *testsuite.TestWorkflowEnvironment {
	return newVersionEnvAt(t, au, versionLatest)
}

// newVersionEnvAt is newVersionEnvV1 with the version's workflow running behaviour version vv.
func newVersionEnvAt(t *testing.T, au *audit, vv workflow.Version) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pinModelBehaviour(env, modelLatest)
	env.OnGetVersion(changeVersionBehaviour, workflow.DefaultVersion, versionLatest).Return(vv)
	env.SetDataConverter(NewDataConverter())
	env.RegisterWorkflow(ModelVersionWorkflow)
	env.RegisterActivity(&activities.Activities{})
	env.OnActivity(a.RecordTransition, mock.Anything, mock.Anything).Return(func(_ context.Context, tr catalog.Transition) error {
		au.mu.Lock()
		defer au.mu.Unlock()
		au.stages = append(au.stages, tr.To)
		return nil
	})
	env.OnActivity(a.RecordDecisions, mock.Anything, mock.Anything).Return(func(_ context.Context, ds []catalog.Decision) error {
		au.mu.Lock()
		defer au.mu.Unlock()
		au.batches++
		au.decisions = append(au.decisions, ds...)
		return nil
	})
	env.OnActivity(a.RecordRefusal, mock.Anything, mock.Anything).Return(func(_ context.Context, r catalog.Refusal) error {
		au.mu.Lock()
		defer au.mu.Unlock()
		au.refusals = append(au.refusals, r)
		return nil
	})
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).Return(json.RawMessage(`{"schemaVersion":1,"model":"fraud","version":1}`), nil)
	env.OnActivity(a.NotifyDeployment, mock.Anything, mock.Anything).Return(func(ctx context.Context, ev activities.DeploymentEvent) error {
		au.mu.Lock()
		defer au.mu.Unlock()
		au.reminders = append(au.reminders, ev.At)
		return nil
	})
	return env
}

func rawDecision(s string) json.RawMessage { return json.RawMessage(s) }

// One decision format: the same payload gets the same verdict and reason by update and by signal, every
// refusal is audited, decisions sent before the version waits for one are refused (not buffered), and a
// signal sent under a wrong name is reported.
func TestVersionV1OneDecisionFormatOneAudit(t *testing.T) {
	au := &audit{}
	env := newVersionEnvV1(t, au)
	// Storing takes a while, so that decisions arrive while the version is still Registered.
	env.OnActivity(a.StoreArtifacts, mock.Anything, mock.Anything).After(10*time.Minute).Return(activities.StoreArtifactsResult{
		ManifestURI: "file:///m.json", ManifestDigest: digest, Files: 1, TotalBytes: 3}, nil)
	validateWith(env, true, catalog.Policy{})
	misspelt := fmt.Sprintf(`{"approver":"alice","digets":%q}`, digest)
	var early, upd, ok *updateResult
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalApprove, Decision{Approver: "alice", Digest: digest})
		early = update(env, UpdateApprove, rawDecision(fmt.Sprintf(`{"approver":"alice","digest":%q}`, digest)))
		env.SignalWorkflow("aprove", Decision{Approver: "alice", Digest: digest})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalApprove, json.RawMessage(misspelt))
		upd = update(env, UpdateApprove, rawDecision(misspelt))
	}, 20*time.Minute)
	env.RegisterDelayedCallback(func() {
		d := describe(t, env)
		require.Equal(t, StagePendingApproval, d.State.Stage, "no early decision was applied")
		ok = update(env, UpdateApprove, rawDecision(fmt.Sprintf(`{"approver":"alice","digest":%q}`, digest)))
	}, 30*time.Minute)
	env.RegisterDelayedCallback(func() { endRun(env) }, 40*time.Minute)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())

	require.ErrorContains(t, early.completeErr, "is not waiting for a decision: its stage is Registered")
	require.ErrorContains(t, upd.completeErr, `unknown field "digets"`)
	require.NoError(t, ok.completeErr)
	var refusedByUpdate, refusedBySignal []string
	for _, d := range au.decisions {
		if d.Accepted {
			continue
		}
		if d.Via == "update" {
			refusedByUpdate = append(refusedByUpdate, d.Reason)
		} else {
			refusedBySignal = append(refusedBySignal, d.Reason)
		}
	}
	require.Equal(t, refusedBySignal, refusedByUpdate, "the same payloads get the same reasons by update and by signal")
	require.Len(t, refusedByUpdate, 2)
	require.Contains(t, refusedBySignal[0], "Registered")
	require.NotEmpty(t, au.refusals)
	require.Equal(t, "aprove", au.refusals[0].Name)
	require.Contains(t, au.refusals[0].Reason, `unknown signal "aprove"`)
}

// Thousands of refused signals while waiting: the state keeps a window, the audit is written in batches,
// and the run continues as new once its history is long, still waiting.
func TestVersionV1RefusedSignalStormStaysBounded(t *testing.T) {
	au := &audit{}
	env := newVersionEnvV1(t, au)
	storeOK(env)
	validateWith(env, true, catalog.Policy{})
	const storm = 1_000
	env.RegisterDelayedCallback(func() {
		for i := 0; i < storm; i++ {
			env.SignalWorkflow(SignalApprove, json.RawMessage(fmt.Sprintf(`{"approver":"mallory","comment":%q}`, strings.Repeat("x", 5000))))
		}
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SetCurrentHistoryLength(6000)
		env.SignalWorkflow(SignalApprove, json.RawMessage(`{}`))
	}, time.Hour)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next VersionInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, StagePendingApproval, next.State.Stage)
	require.GreaterOrEqual(t, next.State.RejectedTotal, storm)
	require.Len(t, next.State.Rejected, rejectedWindow)
	require.GreaterOrEqual(t, len(au.decisions), storm, "every refusal audited")
	require.Less(t, au.batches, storm/10, "in batches")
	for _, d := range au.decisions[:storm] {
		require.LessOrEqual(t, len(d.Comment), MaxCommentBytes, "what the audit keeps is bounded")
	}
	size := 0
	for _, p := range can.Input.GetPayloads() {
		size += p.Size()
	}
	t.Logf("continue-as-new input after %d refused signals: %d bytes", storm, size)
	require.Less(t, size, 64<<10)
}

// One-minute reminders for seven days (time-skipping): every reminder is sent, the run continues as new
// while PendingApproval whenever its history is long, and reminders missed while the workflow could not
// run (a worker outage) are not fired back to back.
func TestVersionV1WeekOfRemindersContinuesAsNew(t *testing.T) {
	policy := catalog.Policy{ReminderIntervalSeconds: 60}
	in := versionInput()
	var runs, total int
	var last time.Time
	begin := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	start := begin
	for {
		au := &audit{}
		env := newVersionEnvV1(t, au)
		env.SetStartTime(start)
		storeOK(env)
		validateWith(env, true, policy)
		// Each reminder costs about 8 events (timer started and fired, activity scheduled, started and
		// completed, a workflow task each side); the test environment does not count them, so this does.
		events := 30
		env.SetOnTimerFiredListener(func(string) {
			events += 8
			env.SetCurrentHistoryLength(events)
		})
		env.ExecuteWorkflow(ModelVersionWorkflow, in)
		runs++
		require.LessOrEqual(t, events, 10_000, "run %d", runs)
		for _, at := range au.reminders {
			if !last.IsZero() {
				require.GreaterOrEqual(t, at.Sub(last), 59*time.Second, "reminders back to back")
			}
			last = at
		}
		for _, at := range au.reminders {
			if !at.After(begin.Add(7 * 24 * time.Hour)) {
				total++
			}
		}
		var can *workflow.ContinueAsNewError
		require.ErrorAs(t, env.GetWorkflowError(), &can, "run %d", runs)
		require.NoError(t, NewDataConverter().FromPayloads(can.Input, &in))
		require.Equal(t, StagePendingApproval, in.State.Stage)
		if last.Sub(begin) >= 7*24*time.Hour || runs > 100 {
			break
		}
		start = last
	}
	require.InDelta(t, 7*24*60, total, 3)
	require.Greater(t, runs, 1)
	t.Logf("7 days of one-minute reminders: %d reminders in %d runs", total, runs)

	// The worker was down for an hour: the next run starts 60 reminder intervals late and sends one.
	au := &audit{}
	env := newVersionEnvV1(t, au)
	env.SetStartTime(last.Add(time.Hour))
	validateWith(env, true, policy)
	env.RegisterDelayedCallback(func() { endRun(env) }, 90*time.Second)
	env.ExecuteWorkflow(ModelVersionWorkflow, in)
	require.Len(t, au.reminders, 2, "one for the outage, one a minute later: not sixty at once")
}

// archive and restore that no switch asked for are refused and audited; so is one for another version.
func TestVersionV1ArchiveMustNameTheRunningSwitch(t *testing.T) {
	au := &audit{}
	env := newVersionEnvV1(t, au)
	in := versionInput()
	in.State = &VersionState{Stage: StageProduction, Seq: 5, ManifestDigest: digest, History: []StageChange{{To: StageRegistered}}}
	switchNow := SwitchInfo{}
	env.OnActivity(a.QueryWorkflow, mock.Anything, mock.Anything).Return(func(_ context.Context, q activities.QueryInput) (activities.QueryResult, error) {
		raw, _ := json.Marshal(switchNow)
		return activities.QueryResult{Status: "Running", Result: raw}, nil
	})
	var none, wrong, other, real *updateResult
	env.RegisterDelayedCallback(func() { none = update(env, UpdateArchive, ArchiveRequest{SchemaVersion: 1}) }, time.Second)
	env.RegisterDelayedCallback(func() {
		switchNow = SwitchInfo{ID: "s1", Kind: "promote", Version: 2, Prior: 1}
		wrong = update(env, UpdateArchive, ArchiveRequest{SchemaVersion: 1, SwitchID: "s0"})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		switchNow = SwitchInfo{ID: "s2", Kind: "promote", Version: 3, Prior: 2}
		other = update(env, UpdateArchive, ArchiveRequest{SchemaVersion: 1, SwitchID: "s2"})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		switchNow = SwitchInfo{ID: "s3", Kind: "promote", Version: 2, Prior: 1}
		real = update(env, UpdateArchive, ArchiveRequest{SchemaVersion: 1, SwitchID: "s3", ReplacedBy: 2})
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() { endRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelVersionWorkflow, in)
	require.ErrorContains(t, none.completeErr, "no switch is running")
	require.ErrorContains(t, wrong.completeErr, `names switch "s0"`)
	require.ErrorContains(t, other.completeErr, "archives v2, not v1")
	require.NoError(t, real.completeErr)
	require.Equal(t, StageArchived, real.result.(string))
	require.Len(t, au.refusals, 3)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(none.completeErr, &appErr))
}

// A version waiting in Validating for a slow CI gate continues as new once its history is long, and
// the next run still takes the gate's verdict (the token travels in the input, not in describe).
func TestVersionV1ValidatingContinuesAsNewWithItsGates(t *testing.T) {
	policy := catalog.Policy{Validators: []catalog.ExternalValidator{{Name: "ci", URL: "http://ci.example/hook", TimeoutSeconds: 24 * 3600}}}
	au := &audit{}
	env := newVersionEnvV1(t, au)
	storeOK(env)
	validateWith(env, true, policy)
	var token string
	env.OnActivity(a.RequestValidation, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ValidationRequest) error {
		token = r.Token
		return nil
	})
	env.RegisterDelayedCallback(func() {
		require.Empty(t, describe(t, env).State.Gates[0].Token, "describe does not show the token")
		env.SetCurrentHistoryLength(6000)
		env.SignalWorkflow(SignalApprove, json.RawMessage(`{}`)) // any event wakes it
	}, time.Hour)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next VersionInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, StageValidating, next.State.Stage)
	require.NotEmpty(t, token)
	require.Equal(t, token, next.GateTokens["ci"])

	au2 := &audit{}
	env2 := newVersionEnvV1(t, au2)
	validateWith(env2, true, policy)
	var wrong, right *updateResult
	env2.RegisterDelayedCallback(func() {
		wrong = update(env2, UpdateVerdict, Verdict{Validator: "ci", Token: "forged", Passed: true})
		right = update(env2, UpdateVerdict, Verdict{Validator: "ci", Token: token, Passed: true})
	}, time.Minute)
	env2.RegisterDelayedCallback(func() { endRun(env2) }, 2*time.Hour)
	env2.ExecuteWorkflow(ModelVersionWorkflow, next)
	require.ErrorContains(t, wrong.completeErr, "token does not match")
	require.NoError(t, right.completeErr)
	require.Contains(t, au2.stages, StagePendingApproval, "the resumed run finished validation with the verdict")
}

// endRun makes the version's workflow continue as new, which ends a test: it ignores cancel requests.
func endRun(env *testsuite.TestWorkflowEnvironment) {
	env.SetCurrentHistoryLength(100_000)
	env.SignalWorkflow("end-of-test", nil)
}

// Since versionV3 a cancel request does not cancel what an update handler does: the archive of a
// version whose workflow was asked to cancel is still checked against the model's switch and made (a
// cancel request of a version's workflow is ignored, as its main path always ignored it).
func TestVersionV3UpdatesOutliveACancelRequest(t *testing.T) {
	for _, tc := range []struct {
		v       workflow.Version
		wantErr string
	}{{versionV2, "canceled"}, {versionV3, ""}} {
		t.Run(fmt.Sprintf("v%d", tc.v), func(t *testing.T) {
			au := &audit{}
			env := newVersionEnvAt(t, au, tc.v)
			in := versionInput()
			in.State = &VersionState{Stage: StageProduction, Seq: 5, ManifestDigest: digest, History: []StageChange{{To: StageRegistered}}}
			env.OnActivity(a.QueryWorkflow, mock.Anything, mock.Anything).Return(func(_ context.Context, q activities.QueryInput) (activities.QueryResult, error) {
				raw, _ := json.Marshal(SwitchInfo{ID: "s1", Kind: "promote", Version: 2, Prior: 1})
				return activities.QueryResult{Status: "Running", Result: raw}, nil
			})
			var archived *updateResult
			env.RegisterDelayedCallback(func() { env.CancelWorkflow() }, time.Second)
			env.RegisterDelayedCallback(func() {
				archived = update(env, UpdateArchive, ArchiveRequest{SchemaVersion: 1, SwitchID: "s1", ReplacedBy: 2})
			}, time.Minute)
			env.RegisterDelayedCallback(func() { endRun(env) }, time.Hour)
			env.ExecuteWorkflow(ModelVersionWorkflow, in)
			if tc.wantErr != "" {
				require.ErrorContains(t, archived.completeErr, tc.wantErr)
				return
			}
			require.NoError(t, archived.completeErr)
			require.Equal(t, StageArchived, archived.result.(string))
			require.Contains(t, au.stages, StageArchived)
		})
	}
}
