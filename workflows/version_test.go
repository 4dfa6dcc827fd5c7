package workflows

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
)

func versionInput() VersionInput {
	return VersionInput{SchemaVersion: SchemaVersion, Model: "fraud", Version: 1, Request: RegisterRequest{
		SchemaVersion: SchemaVersion, Model: "fraud", IdempotencyKey: "run-1", RegisteredBy: "trainer",
		Source:  ArtifactSource{Files: []artifact.FileEntry{{Path: "model.bin", Size: 3, SHA256: strings.Repeat("a", 64)}}},
		Metrics: map[string]float64{"accuracy": 0.95},
	}}
}

// transitions records what RecordTransition was asked to write, in order.
type transitions struct {
	mu        sync.Mutex
	got       []catalog.Transition
	decisions []catalog.Decision
}

func (tr *transitions) stages() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, t := range tr.got {
		out = append(out, t.To)
	}
	return out
}

func newVersionEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *transitions) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pinBehaviour(env, workflow.DefaultVersion)
	env.SetDataConverter(NewDataConverter())
	env.RegisterWorkflow(ModelVersionWorkflow)
	env.RegisterActivity(&activities.Activities{})
	tr := &transitions{}
	env.OnActivity(a.RecordTransition, mock.Anything, mock.Anything).Return(func(_ context.Context, t catalog.Transition) error {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if n := len(tr.got); n > 0 && tr.got[n-1].Seq >= t.Seq {
			return errors.New("seq did not increase")
		}
		tr.got = append(tr.got, t)
		return nil
	})
	env.OnActivity(a.RecordDecision, mock.Anything, mock.Anything).Return(func(_ context.Context, d catalog.Decision) error {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		tr.decisions = append(tr.decisions, d)
		return nil
	})
	return env, tr
}

var digest = "sha256:" + strings.Repeat("b", 64)

func storeOK(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(a.StoreArtifacts, mock.Anything, mock.Anything).Return(activities.StoreArtifactsResult{
		ManifestURI: "file:///m.json", ManifestDigest: digest, Files: 1, TotalBytes: 3}, nil)
}

func validateWith(env *testsuite.TestWorkflowEnvironment, passed bool, policy catalog.Policy) {
	rep := activities.ValidationReport{Passed: passed, Policy: policy,
		Checks: []activities.ValidationCheck{{Name: "integrity", Passed: passed, Detail: "checked"}}}
	env.OnActivity(a.Validate, mock.Anything, mock.Anything).Return(rep, nil)
}

func describe(t *testing.T, env *testsuite.TestWorkflowEnvironment) VersionDescription {
	t.Helper()
	v, err := env.QueryWorkflow(QueryDescribe)
	require.NoError(t, err)
	var d VersionDescription
	require.NoError(t, v.Get(&d))
	return d
}

// updateResult collects what the test environment reports, asynchronously, about one update.
type updateResult struct {
	rejected    error
	result      any
	completeErr error
	done        bool
}

func update(env *testsuite.TestWorkflowEnvironment, name string, arg any) *updateResult {
	return updateWithID(env, name, "", arg)
}

// updateWithID is update under a given update ID ("": the test environment's own).
func updateWithID(env *testsuite.TestWorkflowEnvironment, name, id string, arg any) *updateResult {
	r := &updateResult{}
	env.UpdateWorkflow(name, id, &testsuite.TestUpdateCallback{
		OnAccept:   func() {},
		OnReject:   func(err error) { r.rejected, r.done = err, true },
		OnComplete: func(res any, err error) { r.result, r.completeErr, r.done = res, err, true },
	}, arg)
	return r
}

func TestVersionApprovedPromotedArchivedRestored(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	validateWith(env, true, catalog.Policy{})
	var promote activities.UpdateWorkflowInput
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.UpdateWorkflowInput) (json.RawMessage, error) {
		promote = in
		return json.RawMessage(`{"schemaVersion":1,"model":"fraud","version":1}`), nil
	})
	var noApprover, approve, restoreNoop, archive, lateApprove, restore *updateResult
	env.RegisterDelayedCallback(func() {
		require.Equal(t, StagePendingApproval, describe(t, env).State.Stage)
		noApprover = update(env, UpdateApprove, Decision{})
		approve = update(env, UpdateApprove, Decision{Approver: "alice", Comment: "looks good", Digest: digest})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		require.ErrorContains(t, noApprover.rejected, "needs an approver")
		require.True(t, approve.done)
		require.NoError(t, approve.rejected)
		require.NoError(t, approve.completeErr)
		require.Equal(t, StageApproved, approve.result.(DecisionResult).Stage)
		require.Equal(t, StageProduction, describe(t, env).State.Stage)
		restoreNoop = update(env, UpdateRestore, ArchiveRequest{SchemaVersion: 1})
		archive = update(env, UpdateArchive, ArchiveRequest{SchemaVersion: 1, ReplacedBy: 2, Actor: "bob", Reason: "replaced by v2"})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		require.True(t, restoreNoop.done && archive.done)
		require.NoError(t, restoreNoop.rejected, "restore of a production version is a no-op, not an error")
		require.NoError(t, archive.rejected)
		require.NoError(t, archive.completeErr)
		require.Equal(t, StageArchived, describe(t, env).State.Stage)
		lateApprove = update(env, UpdateApprove, Decision{Approver: "alice", Digest: digest})
		restore = update(env, UpdateRestore, ArchiveRequest{SchemaVersion: 1, Actor: "carol", Reason: "rollback"})
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		require.ErrorContains(t, lateApprove.rejected, "not waiting for a decision: its stage is Archived")
		require.True(t, restore.done)
		require.NoError(t, restore.completeErr)
		d := describe(t, env)
		require.Equal(t, StageProduction, d.State.Stage)
		require.Len(t, d.State.Decisions, 1)
		require.Equal(t, "alice", d.State.Decisions[0].Approver)
		env.CancelWorkflow()
	}, 4*time.Minute)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())

	require.Equal(t, []string{StageValidating, StagePendingApproval, StageApproved, StageProduction, StageArchived, StageProduction}, tr.stages())
	require.Equal(t, ModelWorkflowID("fraud"), promote.WorkflowID)
	require.Equal(t, UpdatePromote, promote.UpdateName)
	require.Equal(t, "promote/v1", promote.UpdateID, "a fixed update ID makes promotion exactly-once across retries")
	require.Equal(t, "alice", tr.got[2].Actor)
}

func TestVersionFailedWhenArtifactsCannotBeStored(t *testing.T) {
	env, tr := newVersionEnv(t)
	env.OnActivity(a.StoreArtifacts, mock.Anything, mock.Anything).Return(activities.StoreArtifactsResult{},
		temporal.NewNonRetryableApplicationError(`file "model.bin" was never uploaded`, activities.ErrTypeBadSource, nil))
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{StageFailed}, tr.stages())
	require.Contains(t, tr.got[0].Reason, "never uploaded")
}

func TestVersionRejectedByValidation(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	rep := activities.ValidationReport{Checks: []activities.ValidationCheck{
		{Name: "integrity", Passed: true}, {Name: "threshold accuracy >= 0.99", Passed: false, Detail: "accuracy = 0.95"}}}
	env.OnActivity(a.Validate, mock.Anything, mock.Anything).Return(rep, nil)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{StageValidating, StageRejected}, tr.stages())
	require.Contains(t, tr.got[1].Reason, "threshold accuracy >= 0.99: accuracy = 0.95")
}

func TestVersionMalformedSignalsAreRecordedAndRejectSignalWins(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	validateWith(env, true, catalog.Policy{})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalApprove, []byte("not json at all"))
		env.SignalWorkflow(SignalApprove, map[string]any{"approver": 42})
		env.SignalWorkflow(SignalApprove, map[string]any{"approver": "x", "color": "blue"})
		env.SignalWorkflow(SignalApprove, Decision{})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		d := describe(t, env)
		require.Equal(t, StagePendingApproval, d.State.Stage, "malformed signals must not move or block the workflow")
		require.Len(t, d.State.Rejected, 4)
		require.Contains(t, d.State.Rejected[0].Reason, "not json/plain")
		require.Contains(t, d.State.Rejected[1].Reason, "cannot unmarshal number")
		require.Contains(t, d.State.Rejected[2].Reason, `unknown field "color"`)
		require.Contains(t, d.State.Rejected[3].Reason, "needs an approver")
		env.SignalWorkflow(SignalReject, Decision{Approver: "dave", Comment: "bias in segment B", Digest: digest})
	}, 2*time.Minute)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{StageValidating, StagePendingApproval, StageRejected}, tr.stages())
	require.Equal(t, "dave", tr.got[2].Actor)
	require.Equal(t, "rejected: bias in segment B", tr.got[2].Reason)
}

func TestVersionApprovalDeadlineRejects(t *testing.T) {
	env, tr := newVersionEnv(t)
	storeOK(env)
	validateWith(env, true, catalog.Policy{ApprovalTimeoutSeconds: 3600})
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{StageValidating, StagePendingApproval, StageRejected}, tr.stages())
	require.Contains(t, tr.got[2].Reason, "approval deadline passed")
}

func TestVersionContinuesAsNewCarryingState(t *testing.T) {
	env, _ := newVersionEnv(t)
	storeOK(env)
	validateWith(env, true, catalog.Policy{})
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).Return(json.RawMessage(`{"version":1}`), nil)
	env.RegisterDelayedCallback(func() {
		update(env, UpdateApprove, Decision{Approver: "alice", Digest: digest})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, StageProduction, describe(t, env).State.Stage)
		// A late signal is refused, and the refusal must survive continue-as-new.
		env.SignalWorkflow(SignalApprove, Decision{Approver: "late"})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() { env.SetCurrentHistoryLength(11) }, 3*time.Minute)
	in := versionInput()
	in.MaxHistoryEvents = 10
	env.ExecuteWorkflow(ModelVersionWorkflow, in)
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next VersionInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.State)
	require.Equal(t, StageProduction, next.State.Stage)
	require.Equal(t, int64(5), next.State.Seq)
	require.Len(t, next.State.History, 5)
	require.Len(t, next.State.Rejected, 1)
	require.Contains(t, next.State.Rejected[0].Reason, "not waiting for a decision")
}

func TestDecodeDecision(t *testing.T) {
	d, err := decodeDecision(RawPayload{Encoding: "json/plain", Data: []byte(`{"approver":"a","comment":"c"}`)}, true)
	require.NoError(t, err)
	require.Equal(t, Decision{Approver: "a", Comment: "c"}, d)
	for _, bad := range []string{`{`, `[]`, `{"approver":"a"} {}`, `{"approver":"a","x":1}`, `null x`} {
		_, err := decodeDecision(RawPayload{Encoding: "json/plain", Data: []byte(bad)}, true)
		require.Error(t, err, bad)
	}
	// Lifecycles recorded before decisions carried a digest refuse one, as they did then.
	_, err = decodeDecision(RawPayload{Encoding: "json/plain", Data: []byte(`{"approver":"a","digest":"sha256:00"}`)}, false)
	require.ErrorContains(t, err, `unknown field "digest"`)
}

// pinBehaviour makes the workflows of env run the behaviour version v (model-behaviour and
// version-behaviour): the tests in model_test.go and version_test.go cover the pre-v1 paths that
// workflows started by older workers still run; *_v1_test.go cover the current ones (v 1 runs both
// workflows at their newest versions, which since v1 renamed a handler and moved catalog calls to local
// activities; the recorded histories replay the versions in between).
func pinBehaviour(env *testsuite.TestWorkflowEnvironment, v workflow.Version) {
	mv, vv := v, v
	if v == 1 {
		mv, vv = modelLatest, versionLatest
	}
	pinModelBehaviour(env, mv)
	env.OnGetVersion(changeVersionBehaviour, workflow.DefaultVersion, versionLatest).Return(vv)
}

// pinModelBehaviour makes ModelWorkflow run behaviour version v.
func pinModelBehaviour(env *testsuite.TestWorkflowEnvironment, v workflow.Version) {
	env.OnGetVersion(changeModelBehaviour, workflow.DefaultVersion, modelLatest).Return(v)
}
