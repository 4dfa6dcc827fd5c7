package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

// fakeCatalog plays the catalog and the version workflows for ModelWorkflow's v1 tests.
type fakeCatalog struct {
	mu         sync.Mutex
	snap       catalog.ModelSnapshot
	keys       map[string]int
	mintErr    error
	promotion  map[int]PromotionInfo
	champion   activities.ChampionResult
	fenced     bool
	updates    []activities.UpdateWorkflowInput
	pointer    []activities.SetProductionInput
	events     []activities.DeploymentEvent
	refusals   []catalog.Refusal
	deliveries []catalog.Delivery
	updateErr  func(activities.UpdateWorkflowInput) error
	// updateDelay is how long each update another workflow takes; notifyErr answers deliveries.
	updateDelay time.Duration
	notifyErr   func(activities.DeploymentEvent) error
	// closed: versions whose workflow is not running, with the status; rowStage: what the catalog says
	// when it disagrees with the workflow.
	closed         map[int]string
	rowStage       map[int]string
	archivedClosed []int
	// queried are the workflow IDs QueryWorkflow was asked about.
	queried []string
	// requests are the claimed requests by update ID, as the catalog keeps them.
	requests map[string]catalog.Request
}

// claim is catalog.ClaimRequest's logic over fc.requests (the real one is tested against both
// databases in internal/catalog).
func (fc *fakeCatalog) claim(in activities.ClaimRequestInput) catalog.Claim {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.requests == nil {
		fc.requests = map[string]catalog.Request{}
	}
	r, ok := fc.requests[in.ID]
	switch {
	case !ok:
		fc.requests[in.ID] = catalog.Request{Model: in.Model, ID: in.ID, Name: in.Name, Token: in.Token}
		return catalog.Claim{Mine: true}
	case r.Token == in.Token:
		return catalog.Claim{Mine: true}
	case r.Outcome == nil:
		prior := r
		r.Token = in.Token
		fc.requests[in.ID] = r
		return catalog.Claim{Mine: true, TakenOver: true, Prior: prior, Production: fc.snap.Production}
	}
	return catalog.Claim{Prior: r, Production: fc.snap.Production}
}

func (fc *fakeCatalog) finish(id, token, outcome string) {
	if r, ok := fc.requests[id]; ok && r.Token == token && r.Outcome == nil {
		at := time.Now().UTC()
		r.Outcome, r.DoneAt = &outcome, &at
		fc.requests[id] = r
	}
}

func newModelEnvV1(t *testing.T, fc *fakeCatalog) *testsuite.TestWorkflowEnvironment {
	return newModelEnvAt(t, fc, modelLatest)
}

// newModelEnvAt is newModelEnvV1 with ModelWorkflow pinned to behaviour version mv (modelV1 or later).
func newModelEnvAt(t *testing.T, fc *fakeCatalog, mv workflow.Version) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pinModelBehaviour(env, mv)
	env.OnGetVersion(changeVersionBehaviour, workflow.DefaultVersion, versionLatest).Return(versionLatest)
	env.SetDataConverter(NewDataConverter())
	env.RegisterWorkflow(ModelWorkflow)
	env.RegisterWorkflow(ModelVersionWorkflow)
	env.RegisterActivity(&activities.Activities{})
	if fc.keys == nil {
		fc.keys = map[string]int{}
	}
	// The version workflows are not what these tests are about: their starts succeed and they end.
	env.OnWorkflow(ModelVersionWorkflow, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.LoadModel, mock.Anything, mock.Anything).Return(func(context.Context, string) (catalog.ModelSnapshot, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.snap, nil
	})
	env.OnActivity(a.MintVersion, mock.Anything, mock.Anything).Return(func(_ context.Context, v catalog.Version) (activities.MintResult, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if fc.mintErr != nil {
			err := fc.mintErr
			fc.mintErr = nil
			return activities.MintResult{}, err
		}
		if n, ok := fc.keys[v.IdempotencyKey]; ok {
			v.Version = n
			return activities.MintResult{Version: v, Existing: true}, nil
		}
		fc.snap.LastVersion++
		v.Version = fc.snap.LastVersion
		fc.keys[v.IdempotencyKey] = v.Version
		return activities.MintResult{Version: v}, nil
	})
	env.OnActivity(a.QueryWorkflow, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.QueryInput) (activities.QueryResult, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.queried = append(fc.queried, in.WorkflowID)
		for n := 1; n <= fc.snap.LastVersion+1; n++ {
			if VersionWorkflowID("fraud", n) != in.WorkflowID {
				continue
			}
			if st, ok := fc.closed[n]; ok {
				return activities.QueryResult{Status: st}, nil
			}
			p, ok := fc.promotion[n]
			if !ok {
				p = PromotionInfo{Stage: StageProduction}
			}
			raw, _ := json.Marshal(p)
			return activities.QueryResult{Status: "Running", Result: raw}, nil
		}
		return activities.QueryResult{Status: "NotFound"}, nil
	})
	env.OnActivity(a.ArchiveClosedVersion, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ArchiveClosedInput) error {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.archivedClosed = append(fc.archivedClosed, in.Version)
		return nil
	})
	env.OnActivity(a.RecheckChampion, mock.Anything, mock.Anything).Return(func(context.Context, activities.ChampionInput) (activities.ChampionResult, error) {
		return fc.champion, nil
	})
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).After(fc.updateDelay).Return(func(_ context.Context, in activities.UpdateWorkflowInput) (json.RawMessage, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.updates = append(fc.updates, in)
		for n, st := range fc.closed {
			if VersionWorkflowID("fraud", n) == in.WorkflowID {
				return nil, temporal.NewNonRetryableApplicationError("not running", activities.ErrTypeNotRunning, nil, st)
			}
		}
		if fc.updateErr != nil {
			if err := fc.updateErr(in); err != nil {
				return nil, err
			}
		}
		return json.RawMessage(`"ok"`), nil
	})
	env.OnActivity(a.SetProductionFenced, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SetProductionInput) (bool, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if fc.fenced {
			return false, nil
		}
		fc.pointer = append(fc.pointer, in)
		fc.snap.Production, fc.snap.Seq = in.Version, in.Seq
		if in.Request != nil {
			fc.finish(in.Request.ID, in.Request.Token, in.Request.Outcome)
		}
		return true, nil
	})
	env.OnActivity(a.ClaimRequest, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ClaimRequestInput) (catalog.Claim, error) {
		return fc.claim(in), nil
	})
	env.OnActivity(a.SetRequestTarget, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RequestTargetInput) error {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if r, ok := fc.requests[in.ID]; ok && r.Token == in.Token && r.Outcome == nil {
			r.Target, r.Prior = &in.Target, &in.Prior
			fc.requests[in.ID] = r
			return nil
		}
		return temporal.NewNonRetryableApplicationError("not mine", activities.ErrTypeNotMine, nil)
	})
	env.OnActivity(a.FinishRequest, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.FinishRequestInput) error {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.finish(in.ID, in.Token, in.Outcome)
		return nil
	})
	env.OnActivity(a.NotifyDeployment, mock.Anything, mock.Anything).Return(func(_ context.Context, ev activities.DeploymentEvent) error {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.events = append(fc.events, ev)
		if fc.notifyErr != nil {
			return fc.notifyErr(ev)
		}
		return nil
	})
	env.OnActivity(a.RecordRefusal, mock.Anything, mock.Anything).Return(func(_ context.Context, r catalog.Refusal) error {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.refusals = append(fc.refusals, r)
		return nil
	})
	env.OnActivity(a.GetVersionRow, mock.Anything, mock.Anything, mock.Anything).Return(func(_ context.Context, _ string, v int) (activities.VersionRow, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if p, ok := fc.promotion[v]; ok {
			if st, ok := fc.rowStage[v]; ok {
				p.Stage = st
			}
			return activities.VersionRow{Found: true, Stage: p.Stage, ManifestDigest: p.ManifestDigest}, nil
		}
		return activities.VersionRow{}, nil
	})
	env.OnActivity(a.RecordDelivery, mock.Anything, mock.Anything).Return(func(_ context.Context, d catalog.Delivery) error {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.deliveries = append(fc.deliveries, d)
		return nil
	})
	return env
}

func approved() PromotionInfo {
	return PromotionInfo{Stage: StageApproved, ManifestDigest: digest, Validated: true, Approvals: 1, Required: 1}
}

// A run that starts without carried state (the first, or one after a terminate) rebuilds itself from the
// catalog before it answers: it never mints a number the catalog has, keeps the production pointer and
// fences the next switch above the catalog's sequence.
func TestModelV1RebuildsFromTheCatalog(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 9, Production: 7, Seq: 12, Archived: []int{5, 6}},
		promotion: map[int]PromotionInfo{10: approved()}}
	env := newModelEnvV1(t, fc)
	var reg, again, promo, badPromote, rb *updateResult
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProduction)
		require.NoError(t, err)
		var p ProductionResult
		require.NoError(t, v.Get(&p))
		require.Equal(t, 7, p.Version)
		reg = update(env, UpdateRegister, registerReq("k10"))
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		again = update(env, UpdateRegister, registerReq("k10"))
		badPromote = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 11})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		promo = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 10, Actor: "alice"})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		rb = update(env, UpdateRollback, RollbackRequest{SchemaVersion: 1, Actor: "ops", Reason: "latency"})
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SetCurrentHistoryLength(10_000)
		update(env, UpdateRedeliver, RedeliverRequest{SchemaVersion: 1})
	}, 4*time.Minute)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})

	require.NotNil(t, rb, "the workflow ended early: %v", env.GetWorkflowError())
	require.NoError(t, reg.completeErr)
	require.Equal(t, 10, reg.result.(RegisterResult).Version, "the number after the catalog's last, not v1")
	require.True(t, again.result.(RegisterResult).Existing)
	require.ErrorContains(t, badPromote.rejected, "has no version 11")
	require.NoError(t, promo.completeErr)
	require.Equal(t, 10, promo.result.(ProductionResult).Version)
	require.True(t, rb.done, "rollback answered: %+v", rb)
	require.NoError(t, rb.completeErr)
	require.Equal(t, 7, rb.result.(ProductionResult).Version, "the last archived version is the one v10 replaced")
	require.Equal(t, []int64{13, 14}, []int64{fc.pointer[0].Seq, fc.pointer[1].Seq}, "fenced above the catalog's seq 12")
	require.Len(t, fc.updates, 3)
	require.Equal(t, UpdateArchive, fc.updates[0].UpdateName)
	require.Equal(t, VersionWorkflowID("fraud", 7), fc.updates[0].WorkflowID)
	var arg ArchiveRequest
	require.NoError(t, json.Unmarshal(fc.updates[0].Arg, &arg))
	require.NotEmpty(t, arg.SwitchID)
	require.Equal(t, "archive/"+arg.SwitchID, fc.updates[0].UpdateID, "update IDs come from the switch, not from a counter that restarts")
	require.Len(t, fc.events, 2)
	require.NotEqual(t, fc.events[0].EventID, fc.events[1].EventID)

	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next ModelInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Empty(t, next.State.Keys)
	require.Empty(t, next.State.Ready)
	require.Equal(t, 10, next.State.LastVersion)
	require.Equal(t, DeliveryDelivered, next.State.Delivery.Status)
}

// promote moves only a version whose own workflow says it is Approved with its quorum met, and only if it
// still beats the current champion; a refusal goes back to the sender and into the audit.
func TestModelV1PromotionIsChecked(t *testing.T) {
	waiting := approved()
	waiting.Stage = StagePendingApproval
	short := approved()
	short.Required, short.Approvals = 2, 1
	stale := approved()
	stale.ChampionMetric, stale.Champion = "accuracy", 4
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 12, Production: 12, Seq: 3},
		promotion: map[int]PromotionInfo{1: waiting, 2: short, 3: stale}, closed: map[int]string{4: "NotFound"},
		champion: activities.ChampionResult{Champion: 12, Check: activities.ValidationCheck{Name: "champion accuracy", Detail: "v3 0.9 vs production v12 0.95"}}}
	env := newModelEnvV1(t, fc)
	results := map[int]*updateResult{}
	env.RegisterDelayedCallback(func() {
		for _, v := range []int{1, 2, 3, 4} {
			results[v] = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: v})
		}
	}, time.Second)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})

	want := map[int]string{1: "is PendingApproval, not Approved", 2: "has 1 of the 2 approvals", 3: "no longer beats the champion: v3 0.9 vs production v12 0.95", 4: "has no lifecycle workflow"}
	for v, msg := range want {
		require.ErrorContains(t, results[v].completeErr, msg, "v%d", v)
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(results[v].completeErr, &appErr))
		require.Equal(t, ErrTypeRefused, appErr.Type())
	}
	require.Len(t, fc.refusals, 4, "every refusal audited")
	require.Empty(t, fc.pointer, "production did not move")
	require.Empty(t, fc.updates)
}

// The internal promote update is offered as system:promote, after the model's public updates. A run
// that started before modelV2 (and whose history may hold promote updates) accepts the old name too; a
// newer run refuses it as an unknown update, so it is not the first thing the Temporal UI offers.
func TestModelPromoteHandlerNames(t *testing.T) {
	for _, tc := range []struct {
		v      workflow.Version
		names  []string
		legacy bool
	}{
		{modelV1, []string{"promote", "redeliver", "register", "rollback", "system:promote"}, true},
		{modelV2, []string{"redeliver", "register", "rollback", "system:promote"}, false},
	} {
		t.Run(fmt.Sprintf("v%d", tc.v), func(t *testing.T) {
			fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 2}, promotion: map[int]PromotionInfo{1: approved(), 2: approved()}}
			env := newModelEnvAt(t, fc, tc.v)
			var legacy, current *updateResult
			env.RegisterDelayedCallback(func() {
				require.Equal(t, tc.names, defNames(metadataOf(t, env).GetDefinition().GetUpdateDefinitions()))
				legacy = update(env, UpdatePromoteLegacy, PromoteRequest{SchemaVersion: 1, Version: 1})
			}, time.Second)
			env.RegisterDelayedCallback(func() {
				current = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 2})
			}, time.Minute)
			env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
			env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})

			require.True(t, legacy.done && current.done)
			require.NoError(t, current.rejected)
			require.NoError(t, current.completeErr)
			var moved []int
			for _, p := range fc.pointer {
				moved = append(moved, p.Version)
			}
			if tc.legacy {
				require.NoError(t, legacy.rejected)
				require.NoError(t, legacy.completeErr)
				require.Equal(t, []int{1, 2}, moved)
			} else {
				require.ErrorContains(t, legacy.rejected, "unknown update")
				require.Equal(t, []int{2}, moved)
			}
		})
	}
	require.Equal(t, UpdatePromote, activities.CurrentUpdateName(UpdatePromoteLegacy), "an activity scheduled under the old name sends the new one")
	require.Equal(t, UpdateArchive, activities.CurrentUpdateName(UpdateArchive))
}

// A fenced pointer write that was not applied fails the switch instead of passing for success.
func TestModelV1FencedWriteIsAnError(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 1}, promotion: map[int]PromotionInfo{1: approved()}, fenced: true}
	env := newModelEnvV1(t, fc)
	var r *updateResult
	env.RegisterDelayedCallback(func() { r = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 1}) }, time.Second)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	require.ErrorContains(t, r.completeErr, "holds a change newer than seq 1")
	require.Empty(t, fc.events, "no deployment event for a switch that did not happen")
}

// A registration whose catalog write fails answers its caller and every concurrent retry with the
// error, holds nothing afterwards, and a later retry succeeds.
func TestModelV1FailedRegistrationIsNotStuck(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{}, mintErr: temporal.NewNonRetryableApplicationError("catalog down", "Down", nil)}
	env := newModelEnvV1(t, fc)
	var first, retry, later *updateResult
	env.RegisterDelayedCallback(func() {
		first = update(env, UpdateRegister, registerReq("k"))
		retry = update(env, UpdateRegister, registerReq("k"))
	}, time.Second)
	env.RegisterDelayedCallback(func() { later = update(env, UpdateRegister, registerReq("k")) }, time.Minute)
	env.RegisterDelayedCallback(func() { env.CancelWorkflow() }, 2*time.Minute)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	require.ErrorContains(t, first.completeErr, "catalog down")
	require.ErrorContains(t, retry.completeErr, "catalog down", "the concurrent retry gets the same answer")
	require.NoError(t, later.completeErr)
	require.Equal(t, 1, later.result.(RegisterResult).Version, "no number burnt by the failure")
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can, "a cancel request does not end the model's workflow")
	var next ModelInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 1, next.State.CancelRequests)
}

// A model with 20,000 versions keeps its continue-as-new input small: nothing in it grows with the
// model's age. The catalog already holds 19,000 versions (what a run rebuilding itself reads); 1,000
// more are registered through the workflow and 100 of them promoted, each switch archiving the one
// before. (The SDK's test environment slows down with the number of updates in one run, so the first
// 19,000 come from the catalog rather than through the workflow.)
func TestModelV1StateStaysBounded(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 19_000}, promotion: map[int]PromotionInfo{}}
	env := newModelEnvV1(t, fc)
	const versions, switches = 20_000, 100
	for i := 19_000; i < versions; i += 250 {
		env.RegisterDelayedCallback(func() {
			for k := i; k < i+250; k++ {
				update(env, UpdateRegister, registerReq("key-"+strconv.Itoa(k)))
			}
		}, time.Duration(i-18_999)*time.Second)
	}
	for i := 1; i <= switches; i++ {
		fc.promotion[versions-switches+i] = approved()
		env.RegisterDelayedCallback(func() {
			update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: versions - switches + i, Actor: "alice", Reason: "a reason of some length, as people write"})
		}, time.Duration(2000+i)*time.Second)
	}
	env.RegisterDelayedCallback(func() {
		env.SetCurrentHistoryLength(100_000)
		update(env, UpdateRedeliver, RedeliverRequest{SchemaVersion: 1})
	}, 30*time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	size := 0
	for _, p := range can.Input.GetPayloads() {
		size += p.Size()
	}
	var next ModelInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, versions, next.State.LastVersion)
	require.Equal(t, versions, next.State.Production)
	require.Len(t, next.State.Archived, activities.ArchivedWindow, "a window; the catalog keeps every archived version")
	require.Len(t, next.State.History, historyWindow)
	t.Logf("continue-as-new input of a model with %d versions after %d switches: %d bytes", versions, switches, size)
	require.Less(t, size, 256<<10)
}

// A rollback whose restore is refused puts the prior version back: the model is never left without
// production, and the pointer does not move.
func TestModelV1RollbackRestoreRefusedPutsPriorBack(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 3, Production: 3, Seq: 5, Archived: []int{2}}}
	env := newModelEnvV1(t, fc)
	fc.updateErr = func(in activities.UpdateWorkflowInput) error {
		if in.UpdateName == UpdateRestore && in.WorkflowID == VersionWorkflowID("fraud", 2) {
			return temporal.NewNonRetryableApplicationError("v2 is Failed and cannot move to Production", activities.ErrTypeRejected, nil)
		}
		return nil
	}
	var rb *updateResult
	env.RegisterDelayedCallback(func() { rb = update(env, UpdateRollback, RollbackRequest{SchemaVersion: 1, Actor: "ops"}) }, time.Second)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	require.ErrorContains(t, rb.completeErr, "v2 could not be restored, production stays v3")
	calls := fc.updateCalls()
	require.Equal(t, []string{"archive model/fraud/v3", "restore model/fraud/v2", "restore model/fraud/v3"}, calls)
	require.Empty(t, fc.pointer, "the pointer never moved")
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next ModelInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 3, next.State.Production)
	require.Equal(t, []int{2}, next.State.Archived)
}

// A hot model answers a promotion beyond maxWaitingPromotions busy instead of letting promotions fill
// Temporal's 10 in-flight updates, which refused registrations; once the queue drains it takes them again.
func TestModelV1BusyBeyondWaitingPromotions(t *testing.T) {
	promotion := map[int]PromotionInfo{}
	for v := 1; v <= 8; v++ {
		promotion[v] = approved()
	}
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 8}, promotion: promotion, updateDelay: time.Minute}
	env := newModelEnvV1(t, fc)
	results := map[int]*updateResult{}
	env.RegisterDelayedCallback(func() {
		for v := 1; v <= 6; v++ {
			results[v] = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: v})
		}
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		results[7] = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 7})
	}, 24*time.Hour)
	env.RegisterDelayedCallback(func() {
		env.SetCurrentHistoryLength(10_000)
		update(env, UpdateRedeliver, RedeliverRequest{SchemaVersion: 1})
	}, 48*time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	for v := 1; v <= 7; v++ {
		r := results[v]
		if v == 5 || v == 6 {
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(r.rejected, &appErr), "v%d: %v", v, r.rejected)
			require.Equal(t, activities.ErrTypeBusy, appErr.Type())
			require.Contains(t, appErr.Error(), "4 promotions of fraud are in progress")
			continue
		}
		require.NoError(t, r.rejected, "v%d", v)
		require.NoError(t, r.completeErr, "v%d", v)
	}
}

// Since modelV3 register is also a signal: 16 arriving at once are all minted (no update slots are
// involved), each outcome is answered by the registration query under its key, malformed and invalid
// signals are refused and audited, a refusal under a key somebody else registered does not overwrite
// that outcome, and the outcomes ride over a continue-as-new.
func TestModelV3RegisterSignals(t *testing.T) {
	fc := &fakeCatalog{}
	env := newModelEnvV1(t, fc)
	query := func(key string) RegistrationStatus {
		t.Helper()
		v, err := env.QueryWorkflow(QueryRegistration, key)
		require.NoError(t, err)
		var st RegistrationStatus
		require.NoError(t, v.Get(&st))
		return st
	}
	env.RegisterDelayedCallback(func() {
		require.Equal(t, RegistrationUnknown, query("k0").State)
		for i := range 16 {
			env.SignalWorkflow(SignalRegister, registerReq(fmt.Sprintf("k%d", i)))
		}
		env.SignalWorkflow(SignalRegister, "not a request")
		env.SignalWorkflow(SignalRegister, map[string]any{"schemaVersion": 1, "model": "fraud", "idempotencyKey": "wrong-type", "metrics": map[string]string{"accuracy": "x"}})
		wrong := registerReq("wrong-model")
		wrong.Model = "churn"
		env.SignalWorkflow(SignalRegister, wrong)
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		seen := map[int]bool{}
		for i := range 16 {
			st := query(fmt.Sprintf("k%d", i))
			require.Equal(t, RegistrationRegistered, st.State, "k%d: %+v", i, st)
			require.False(t, seen[st.Result.Version], "k%d got a number already given", i)
			seen[st.Result.Version] = true
			require.Equal(t, VersionWorkflowID("fraud", st.Result.Version), st.Result.WorkflowID)
		}
		st := query("wrong-type")
		require.Equal(t, RegistrationFailed, st.State, "a request that does not decode is answered under its key")
		require.Contains(t, st.Error, "payload is not a RegisterRequest")
		st = query("wrong-model")
		require.Equal(t, RegistrationFailed, st.State)
		require.Contains(t, st.Error, `request is for model "churn"`)
		require.Equal(t, ErrTypeRefused, st.ErrorType)
		// Somebody else's malformed request under k1's key.
		hostile := registerReq("k1")
		hostile.Model = "churn"
		env.SignalWorkflow(SignalRegister, hostile)
		// The same request again is answered from the catalog.
		env.SignalWorkflow(SignalRegister, registerReq("k2"))
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() {
		st := query("k1")
		require.Equal(t, RegistrationRegistered, st.State, "a refusal does not overwrite a registration: %+v", st)
		st = query("k2")
		require.Equal(t, RegistrationRegistered, st.State)
		require.True(t, st.Result.Existing)
		env.SetCurrentHistoryLength(10_000)
		update(env, UpdateRedeliver, RedeliverRequest{SchemaVersion: 1})
	}, 3*time.Second)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next ModelInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Len(t, next.State.Registrations, 18, "16 registered and the two refused under their keys")
	require.Equal(t, 16, next.State.LastVersion)
	var reasons []string
	for _, r := range fc.refusals {
		require.Equal(t, "signal", r.Via)
		reasons = append(reasons, r.Reason)
	}
	require.Len(t, reasons, 4, "%q", reasons)
	require.Contains(t, reasons[0], "payload is not a RegisterRequest")
}

// The outcomes kept for the registration query are bounded.
func TestModelV3RegistrationOutcomesBounded(t *testing.T) {
	m := &modelWF{v: modelV3}
	env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
	env.ExecuteWorkflow(func(ctx workflow.Context) error {
		for i := range registrationWindow + 10 {
			m.noteOutcome(ctx, strconv.Itoa(i), RegisterResult{Version: i}, nil)
		}
		m.noteOutcome(ctx, "20", RegisterResult{Version: 99}, nil)
		return nil
	})
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, m.st.Registrations, registrationWindow)
	require.Equal(t, "10", m.st.Registrations[0].Key, "the oldest go first")
	require.Equal(t, 99, m.st.Registrations[registrationWindow-1].Result.Version, "a key noted again moves to the end, once")
}

// A model's workflow continues as new only once the register signals that arrived are read and done,
// carrying their outcomes: the SDK does not carry unread signals to the next run. (Temporal itself
// refuses a continue-as-new while signals arrive during its workflow task; the test environment delivers
// signals in a task after the callback that sent them, hence the two callbacks.)
func TestModelV3ContinueAsNewWaitsForRegisterSignals(t *testing.T) {
	fc := &fakeCatalog{}
	env := newModelEnvV1(t, fc)
	env.RegisterDelayedCallback(func() {
		for i := range 5 {
			env.SignalWorkflow(SignalRegister, registerReq(fmt.Sprintf("late-%d", i)))
		}
	}, time.Second)
	env.RegisterDelayedCallback(func() { env.SetCurrentHistoryLength(10_000) }, time.Second+time.Millisecond)
	env.RegisterDelayedCallback(func() {}, time.Minute)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next ModelInput
	require.NoError(t, NewDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 5, next.State.LastVersion, "every signal minted before the run ended")
	require.Len(t, next.State.Registrations, 5)
	for _, o := range next.State.Registrations {
		require.NotNil(t, o.Result, "%+v", o)
	}
}

// updateCalls lists the updates sent to other workflows, as "name workflowID".
// endModelRun makes the model's workflow continue as new (its history "long", then a message, after
// which it is idle), which ends a test's run of it.
func endModelRun(env *testsuite.TestWorkflowEnvironment) {
	env.SetCurrentHistoryLength(10_000)
	update(env, UpdateRedeliver, RedeliverRequest{SchemaVersion: 1})
}

func (fc *fakeCatalog) updateCalls() []string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var calls []string
	for _, u := range fc.updates {
		calls = append(calls, u.UpdateName+" "+u.WorkflowID)
	}
	return calls
}

// Since modelV4 a rollback is acted on once per update ID: a second delivery of one already handled
// (what a reset does with every update after its reset point) is refused with the first one's outcome
// and audited, and moves nothing; one whose first handler never finished is taken over and acted on; a
// refused rollback records its refusal as its outcome, so a replay cannot succeed later.
func TestModelV4RollbackActedOnOncePerUpdateID(t *testing.T) {
	done := "v2 in production (seq 4), v3 before"
	fc := &fakeCatalog{
		snap: catalog.ModelSnapshot{Exists: true, LastVersion: 3, Production: 3, Seq: 5, Archived: []int{1, 2}},
		requests: map[string]catalog.Request{
			"handled":    {Model: "fraud", ID: "handled", Name: UpdateRollback, Token: "old", Outcome: &done},
			"unfinished": {Model: "fraud", ID: "unfinished", Name: UpdateRollback, Token: "cut-off"},
		},
	}
	env := newModelEnvV1(t, fc)
	var replay, takeover, refusedFirst *updateResult
	env.RegisterDelayedCallback(func() {
		replay = updateWithID(env, UpdateRollback, "handled", RollbackRequest{SchemaVersion: 1, Actor: "ops"})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		takeover = updateWithID(env, UpdateRollback, "unfinished", RollbackRequest{SchemaVersion: 1, Actor: "ops"})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		refusedFirst = updateWithID(env, UpdateRollback, "blank", RollbackRequest{SchemaVersion: 1, Actor: " "})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})

	require.True(t, replay.done)
	require.NoError(t, replay.rejected)
	require.ErrorContains(t, replay.completeErr, "rollback handled was already handled")
	require.ErrorContains(t, replay.completeErr, done)
	require.ErrorContains(t, replay.completeErr, "production is v3")

	require.NoError(t, takeover.completeErr, "a request nobody finished is acted on")
	require.Equal(t, 2, takeover.result.(ProductionResult).Version)
	require.Len(t, fc.pointer, 1)
	require.Equal(t, activities.SetProductionInput{Model: "fraud", Version: 2, Seq: 6,
		Request: &catalog.RequestDone{ID: "unfinished", Token: fc.requests["unfinished"].Token, Outcome: "v2 in production (seq 6), v3 before"}}, fc.pointer[0])
	require.NotEqual(t, "cut-off", fc.requests["unfinished"].Token)

	require.ErrorContains(t, refusedFirst.completeErr, "needs an actor")
	require.NotNil(t, fc.requests["blank"].Outcome)
	require.True(t, strings.HasPrefix(*fc.requests["blank"].Outcome, "refused: rollback needs an actor"), *fc.requests["blank"].Outcome)

	var names []string
	for _, r := range fc.refusals {
		names = append(names, r.Name+": "+r.Reason[:min(len(r.Reason), 40)])
	}
	require.Contains(t, names, "rollback: rollback handled was already handled at ")
	calls := fc.updateCalls()
	require.Equal(t, []string{"archive model/fraud/v3", "restore model/fraud/v2"}, calls, "only the taken-over rollback moved anything")
}

// Since modelV4 a switch that finds a newer change in the catalog than its run knows (the run was reset
// to an earlier point) decides from the catalog: a rollback restores the catalog's last archived
// version and archives the version the catalog has in production, not the one the run remembers.
func TestModelV4SwitchAdoptsANewerCatalog(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 3, Production: 3, Seq: 5, Archived: []int{1, 2}}}
	env := newModelEnvV1(t, fc)
	var rb *updateResult
	env.RegisterDelayedCallback(func() { rb = update(env, UpdateRollback, RollbackRequest{SchemaVersion: 1, Actor: "ops"}) }, time.Second)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	// The run's memory is from before two switches the catalog has: v1 in production at seq 3.
	stale := ModelState{LastVersion: 3, Production: 1, Seq: 3, Keys: map[string]int{}, Ready: map[int]bool{}}
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud", State: &stale})
	require.NoError(t, rb.completeErr)
	require.Equal(t, 2, rb.result.(ProductionResult).Version)
	require.Equal(t, 3, rb.result.(ProductionResult).Previous)
	calls := fc.updateCalls()
	require.Equal(t, []string{"archive model/fraud/v3", "restore model/fraud/v2"}, calls)
	require.Len(t, fc.pointer, 1)
	require.Equal(t, int64(6), fc.pointer[0].Seq)
}

// A rollback taken over after a reset ended the run handling it finishes the switch that handler had
// decided on (recorded before it moved anything), even where a fresh choice would differ; and a fresh
// choice never picks the version in production, which a cut-off switch may have archived already.
func TestModelV4RollbackTakenOverFinishesTheDecidedSwitch(t *testing.T) {
	two, three := 2, 3
	fc := &fakeCatalog{
		// The cut-off switch archived v3 (its prior) before the reset; the pointer still names v3.
		snap: catalog.ModelSnapshot{Exists: true, LastVersion: 3, Production: 3, Seq: 5, Archived: []int{2, 1, 3}},
		requests: map[string]catalog.Request{
			"cut": {Model: "fraud", ID: "cut", Name: UpdateRollback, Token: "old", Target: &two, Prior: &three},
		},
	}
	env := newModelEnvV1(t, fc)
	var resumed, fresh *updateResult
	env.RegisterDelayedCallback(func() {
		resumed = updateWithID(env, UpdateRollback, "cut", RollbackRequest{SchemaVersion: 1, Actor: "ops"})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		// v2 is in production, and the catalog's archive ends with v2 itself, as a switch cut off after
		// archiving it would leave it.
		fc.mu.Lock()
		fc.snap.Archived = []int{1, 3, 2}
		fc.snap.Seq++ // newer than the run knows, so that the run adopts this archive
		fc.mu.Unlock()
		fresh = updateWithID(env, UpdateRollback, "fresh", RollbackRequest{SchemaVersion: 1, Actor: "ops"})
	}, time.Minute)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})

	require.NoError(t, resumed.completeErr)
	require.Equal(t, 2, resumed.result.(ProductionResult).Version, "the decided target, not the latest archived (v1)")
	require.NoError(t, fresh.completeErr)
	require.Equal(t, 3, fresh.result.(ProductionResult).Version, "the latest archived that is not in production")
	calls := fc.updateCalls()
	require.Equal(t, []string{"archive model/fraud/v3", "restore model/fraud/v2", "archive model/fraud/v2", "restore model/fraud/v3"}, calls)
	require.Len(t, fc.pointer, 2)
	require.Equal(t, "v2 in production (seq 6), v3 before", fc.pointer[0].Request.Outcome)
}

// Since modelV5 a promotion sends the archive to the version it replaces without asking first whether
// that version's workflow runs; when the answer is that it does not, the switch archives the version in
// the catalog itself. A run from before modelV5 asks first, and archives the same way.
func TestModelV5SwitchArchivesAClosedPriorWithoutAsking(t *testing.T) {
	for _, tc := range []struct {
		v         workflow.Version
		wantQuery []string
	}{
		{modelV4, []string{VersionWorkflowID("fraud", 13), VersionWorkflowID("fraud", 12), VersionWorkflowID("fraud", 14), VersionWorkflowID("fraud", 13)}},
		{modelV5, []string{VersionWorkflowID("fraud", 13), VersionWorkflowID("fraud", 14)}},
	} {
		t.Run(fmt.Sprintf("v%d", tc.v), func(t *testing.T) {
			fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 14, Production: 12, Seq: 3},
				promotion: map[int]PromotionInfo{13: approved(), 14: approved()}, closed: map[int]string{12: "Terminated"}}
			env := newModelEnvAt(t, fc, tc.v)
			var first, second *updateResult
			env.RegisterDelayedCallback(func() {
				first = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 13})
			}, time.Second)
			env.RegisterDelayedCallback(func() {
				second = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 14})
			}, time.Minute)
			env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
			env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
			require.NoError(t, first.completeErr)
			require.NoError(t, second.completeErr)
			require.Equal(t, 14, second.result.(ProductionResult).Version)
			require.Equal(t, []int{12}, fc.archivedClosed, "the terminated v12 archived in the catalog")
			require.ElementsMatch(t, tc.wantQuery, fc.queried)
			want := []string{"archive model/fraud/v13"}
			if tc.v >= modelV5 {
				want = []string{"archive model/fraud/v12", "archive model/fraud/v13"}
			}
			require.Equal(t, want, fc.updateCalls())
			require.Len(t, fc.pointer, 2)
		})
	}
}

// Since modelV5 a run that starts with carried state reads the catalog before it answers, and adopts a
// newer production pointer and archive: a reset to the first workflow task of a run that began with
// continue-as-new replays carried state from before every switch made since. A run from before
// modelV5 answers with its carried state until its next switch.
func TestModelV5CarriedStateAdoptsANewerCatalog(t *testing.T) {
	for _, tc := range []struct {
		v    workflow.Version
		want int
	}{{modelV4, 1}, {modelV5, 3}} {
		t.Run(fmt.Sprintf("v%d", tc.v), func(t *testing.T) {
			fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 3, Production: 3, Seq: 5, Archived: []int{1, 2}}}
			env := newModelEnvAt(t, fc, tc.v)
			var got ProductionResult
			env.RegisterDelayedCallback(func() {
				v, err := env.QueryWorkflow(QueryProduction)
				require.NoError(t, err)
				require.NoError(t, v.Get(&got))
			}, time.Second)
			env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
			stale := ModelState{LastVersion: 3, Production: 1, Seq: 3, Keys: map[string]int{}, Ready: map[int]bool{}}
			env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud", State: &stale})
			require.Equal(t, tc.want, got.Version)
		})
	}
}
