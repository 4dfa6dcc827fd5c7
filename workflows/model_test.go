package workflows

import (
	"context"
	"encoding/json"
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

func registerReq(key string) RegisterRequest {
	return RegisterRequest{SchemaVersion: SchemaVersion, Model: "fraud", IdempotencyKey: key,
		Source: ArtifactSource{Files: []artifact.FileEntry{{Path: "model.bin", Size: 3, SHA256: strings.Repeat("a", 64)}}}}
}

type modelCalls struct {
	mu         sync.Mutex
	created    []int
	updates    []activities.UpdateWorkflowInput
	events     []activities.DeploymentEvent
	production []activities.SetProductionInput
}

// newModelEnv stubs every activity. With childrenEnd, the version workflows fail at once (their artifacts
// are "missing"), so the test environment has no running children when the model workflow ends.
func newModelEnv(t *testing.T, childrenEnd bool) (*testsuite.TestWorkflowEnvironment, *modelCalls) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pinBehaviour(env, workflow.DefaultVersion)
	env.SetDataConverter(NewDataConverter())
	env.RegisterWorkflow(ModelWorkflow)
	env.RegisterWorkflow(ModelVersionWorkflow)
	env.RegisterActivity(&activities.Activities{})
	c := &modelCalls{}
	env.OnActivity(a.CreateVersion, mock.Anything, mock.Anything).Return(func(_ context.Context, v catalog.Version) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.created = append(c.created, v.Version)
		return nil
	})
	// The version workflows run for real as children; their activities are stubbed so they wait for a
	// decision, which these tests never send.
	env.OnActivity(a.RecordTransition, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.RecordDecision, mock.Anything, mock.Anything).Return(nil)
	if childrenEnd {
		env.OnActivity(a.StoreArtifacts, mock.Anything, mock.Anything).Return(activities.StoreArtifactsResult{},
			temporal.NewNonRetryableApplicationError("missing", activities.ErrTypeBadSource, nil))
	} else {
		storeOK(env)
		validateWith(env, true, catalog.Policy{})
	}
	env.OnActivity(a.NotifyDeployment, mock.Anything, mock.Anything).Return(func(_ context.Context, ev activities.DeploymentEvent) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.events = append(c.events, ev)
		return nil
	})
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.UpdateWorkflowInput) (json.RawMessage, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.updates = append(c.updates, in)
		return json.RawMessage(`"ok"`), nil
	})
	env.OnActivity(a.SetProduction, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SetProductionInput) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.production = append(c.production, in)
		return nil
	})
	return env, c
}

func TestModelMintsVersionsIdempotently(t *testing.T) {
	env, c := newModelEnv(t, false)
	keys := []string{"run-a", "run-b", "run-a", "run-c"}
	results := make([]RegisterResult, len(keys))
	var badName, noFiles, caseVariant, tagWithEquals *updateResult
	env.RegisterDelayedCallback(func() {
		for i, key := range keys {
			env.UpdateWorkflow(UpdateRegister, "", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(err error) { t.Error(err) },
				OnComplete: func(r any, err error) {
					require.NoError(t, err)
					results[i] = r.(RegisterResult)
				}}, registerReq(key))
		}
		bad := registerReq("run-d")
		bad.Model = "Bad Name"
		badName = update(env, UpdateRegister, bad)
		other := registerReq("run-e")
		other.Source.Files = nil
		noFiles = update(env, UpdateRegister, other)
		// The validator refuses what a case-insensitive filesystem could not hold and a tag filter could
		// not find; no version number is spent on either.
		cased := registerReq("run-f")
		cased.Source.Files = append(cased.Source.Files, artifact.FileEntry{Path: "Model.bin", Size: 3, SHA256: strings.Repeat("b", 64)})
		caseVariant = update(env, UpdateRegister, cased)
		tagged := registerReq("run-g")
		tagged.Tags = map[string]string{"team=risk": "yes"}
		tagWithEquals = update(env, UpdateRegister, tagged)
	}, time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})

	require.ErrorContains(t, badName.rejected, "not a safe identifier")
	require.ErrorContains(t, noFiles.rejected, "no artifacts")
	require.ErrorContains(t, caseVariant.rejected, `paths "model.bin" and "Model.bin" differ only in case`)
	require.ErrorContains(t, tagWithEquals.rejected, `tag "team=risk": keys may not contain '='`)
	got := map[string]int{}
	for i, key := range keys {
		if v, ok := got[key]; ok {
			require.Equal(t, v, results[i].Version)
			require.True(t, results[i].Existing)
		}
		got[key] = results[i].Version
	}
	require.Equal(t, map[string]int{"run-a": 1, "run-b": 2, "run-c": 3}, got)
	require.ElementsMatch(t, []int{1, 2, 3}, c.created, "one catalog row per version, none for the retry")
	require.Equal(t, "model/fraud/v2", results[1].WorkflowID)
}

func TestModelPromotionArchivesPriorAndRollbackRestores(t *testing.T) {
	env, c := newModelEnv(t, false)
	steps := []struct {
		name string
		arg  any
		// want is the production version after the step, or the validator's refusal.
		want, previous int
		refusal        string
	}{
		{UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 9}, 0, 0, "has no version 9"},
		{UpdateRollback, RollbackRequest{SchemaVersion: 1, Actor: "ops"}, 0, 0, "no archived version"},
		{UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 1, Actor: "alice"}, 1, 0, ""},
		{UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 1, Actor: "alice"}, 1, 0, ""}, // no-op
		{UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 2, Actor: "bob"}, 2, 1, ""},
		{UpdateRollback, RollbackRequest{SchemaVersion: 1, To: 3, Actor: "ops"}, 0, 0, "not archived"},
		{UpdateRollback, RollbackRequest{SchemaVersion: 1, Actor: "ops", Reason: "v2 latency"}, 1, 2, ""},
	}
	env.RegisterDelayedCallback(func() {
		for _, k := range []string{"a", "b", "c"} {
			update(env, UpdateRegister, registerReq(k))
		}
	}, time.Second)
	for i, st := range steps {
		var r *updateResult
		env.RegisterDelayedCallback(func() { r = update(env, st.name, st.arg) }, time.Duration(i+1)*time.Minute)
		env.RegisterDelayedCallback(func() {
			require.True(t, r.done, "step %d", i)
			if st.refusal != "" {
				require.ErrorContains(t, r.rejected, st.refusal, "step %d", i)
				return
			}
			require.NoError(t, r.rejected, "step %d", i)
			require.NoError(t, r.completeErr, "step %d", i)
			res := r.result.(ProductionResult)
			require.Equal(t, st.want, res.Version, "step %d", i)
			require.Equal(t, st.previous, res.Previous, "step %d", i)
		}, time.Duration(i+1)*time.Minute+30*time.Second)
	}
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProduction)
		require.NoError(t, err)
		var p ProductionResult
		require.NoError(t, v.Get(&p))
		require.Equal(t, 1, p.Version)
		env.CancelWorkflow()
	}, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})

	var calls []string
	for _, u := range c.updates {
		calls = append(calls, u.UpdateName+" "+u.WorkflowID)
	}
	require.Equal(t, []string{"archive model/fraud/v1", "archive model/fraud/v2", "restore model/fraud/v1"}, calls)
	require.Equal(t, []activities.SetProductionInput{{Model: "fraud", Version: 1, Seq: 1}, {Model: "fraud", Version: 2, Seq: 2}, {Model: "fraud", Version: 1, Seq: 3}}, c.production)
	require.Len(t, c.events, 3)
	require.Equal(t, "fraud/3/rollback/v1", c.events[2].EventID)
	require.Equal(t, 2, c.events[2].PreviousVersion)
}

func TestModelContinuesAsNewCarryingState(t *testing.T) {
	env, _ := newModelEnv(t, true)
	env.RegisterDelayedCallback(func() {
		for _, k := range []string{"a", "b"} {
			env.UpdateWorkflow(UpdateRegister, "", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(error) {}, OnComplete: func(any, error) {}}, registerReq(k))
		}
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		env.SetCurrentHistoryLength(13)
		// Any message wakes the workflow to notice its history is long.
		env.UpdateWorkflow(UpdateRegister, "", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(error) {}, OnComplete: func(any, error) {}}, registerReq("a"))
	}, time.Minute)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud", MaxHistoryEvents: 12})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next ModelInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 3, next.State.NextVersion)
	require.Equal(t, map[string]int{"a": 1, "b": 2}, next.State.Keys)
	require.True(t, next.State.Ready[1] && next.State.Ready[2])
}
