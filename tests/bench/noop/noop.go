// Package noop is the orchestration benchmark's baseline: a model's entity workflow and a version's
// lifecycle workflow with the registry's shape (the same activities, local activities, updates,
// search-attribute upserts, child workflow, lock and continue-as-new) whose activities do nothing. What
// the registry takes beyond this is what its own work costs; what this takes is what Temporal costs for
// that shape on the same machine.
//
// The counts come from the recorded histories of the registry's happy path, register → PendingApproval
// → approve → Production, with the version replaced (archived) by the next one (local activities,
// since modelV3 and versionV2, marked "local"):
//
// tests/testdata/histories/version-production-archived-restored.json, events 1-41 (to Production) and
// 45-54 (archived), the version's workflow:
//
//	3 upserts (name, version, stage), StoreArtifacts, RecordTransition (Validating, local), Validate,
//	RecordTransition (PendingApproval, local),
//	update approve: RecordDecisions (local), RecordTransition (Approved, local),
//	UpdateWorkflow (system:promote to the model, update-with-start), RecordTransition (Production, local)
//	update archive (from the next version's switch): QueryWorkflow (the switch), RecordTransition (Archived, local)
//	= 4 activities, 6 local activities, 2 updates, and an upsert of the stage after each transition
//
// tests/testdata/histories/model-promote-rollback.json, events 49-91 (v2: register, then promote
// replacing v1), the model's workflow:
//
//	update register: MintVersion (local), start child ModelVersionWorkflow
//	update system:promote, under the model's lock: QueryWorkflow (the version), GetVersionRow (local),
//	LoadModel (local, the fence), UpdateWorkflow (archive the prior; since modelV5 no QueryWorkflow of
//	the prior first), SetProductionFenced (local); then, outside the lock: RecordDelivery (local),
//	NotifyDeployment, RecordDelivery (local)
//	= 3 activities, 6 local activities, 2 updates, 1 child; a run without carried state starts with
//	LoadModel (local) and upserts the model's name, and the first promotion of a model has no prior
//	version (no archive)
//
// Left out, because they are neither activities nor updates: the switch's SideEffect, current details,
// and the work inside the registry's activities (the two QueryWorkflow activities query another workflow;
// here they return at once).
package noop

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Names of the baseline's workflows and messages. The update names are the registry's.
const (
	ModelWorkflowType   = "NoopModelWorkflow"
	VersionWorkflowType = "NoopVersionWorkflow"
	UpdateRegister      = "register"
	SignalRegister      = "register"
	QueryRegistration   = "registration"
	UpdatePromote       = "system:promote"
	UpdateApprove       = "approve"
	UpdateArchive       = "archive"
	QueryStage          = "stage"
	// TransitionStep and the stage name the no-op activity that stands for a RecordTransition, so that
	// a client following the history sees the stages as in the registry's.
	TransitionStep = "RecordTransition to "

	StageRegistered      = "Registered"
	StageValidating      = "Validating"
	StagePendingApproval = "PendingApproval"
	StageApproved        = "Approved"
	StageProduction      = "Production"
	StageArchived        = "Archived"
)

// ModelWorkflowID and VersionWorkflowID are apart from the registry's IDs, so both can run side by side.
func ModelWorkflowID(model string) string { return "noop/" + model }

func VersionWorkflowID(model string, version int) string {
	return fmt.Sprintf("noop/%s/v%d", model, version)
}

// ModelInput is the entity workflow's input; State is what a continue-as-new carries.
type ModelInput struct {
	Model            string      `json:"model"`
	MaxHistoryEvents int         `json:"maxHistoryEvents,omitempty"`
	State            *ModelState `json:"state,omitempty"`
}

type ModelState struct {
	Last       int `json:"last"`
	Production int `json:"production"`
	// Delivering is the version whose deployment event is still being delivered (0: none).
	Delivering int `json:"delivering,omitempty"`
	// Registered are the latest registrations' versions by key, for the registration query (the
	// registry keeps a window of them as well).
	Registered []KeyVersion `json:"registered,omitempty"`
}

type KeyVersion struct {
	Key     string `json:"key"`
	Version int    `json:"version"`
}

// registeredWindow is the registry's registrationWindow.
const registeredWindow = 256

type RegisterRequest struct {
	Model string `json:"model"`
	Key   string `json:"key"`
}

type RegisterResult struct {
	Version int `json:"version"`
}

type VersionInput struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
}

// Decision is the approve update's argument, shaped like the registry's.
type Decision struct {
	Approver string `json:"approver"`
	Digest   string `json:"digest,omitempty"`
}

// The registry's activity options (workflows/model.go, model_v1.go, version.go, version_v1.go): they
// matter only when something fails or waits, but the heartbeats they ask for are real traffic.
var (
	catalogOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	}
	mintOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second, ScheduleToCloseTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	}
	storeOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 6 * time.Hour, ScheduleToCloseTimeout: 24 * time.Hour, HeartbeatTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute},
	}
	queryOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 30},
	}
	auditOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 20},
	}
	promoteOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute, HeartbeatTimeout: 15 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute},
	}
	recordDeliveryOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 20},
	}
	deliveryOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 45 * time.Second, ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: 5 * time.Minute},
	}
)

// step runs the no-op activity named after the registry's activity it stands for, so that a history
// reads like the registry's.
func step(ctx workflow.Context, opts workflow.ActivityOptions, name string) error {
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), acts.Noop, name).Get(ctx, nil)
}

// localStep is step for what the registry runs as a local activity (its catalog calls).
func localStep(ctx workflow.Context, opts workflow.ActivityOptions, name string) error {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: opts.StartToCloseTimeout, ScheduleToCloseTimeout: opts.ScheduleToCloseTimeout, RetryPolicy: opts.RetryPolicy})
	return workflow.ExecuteLocalActivity(lctx, acts.Noop, name).Get(ctx, nil)
}

// The registry's search attributes (workflows/model.go), upserted where the registry upserts them: a
// client following the history sees a stage where the registry's shows it.
var (
	saModelName    = temporal.NewSearchAttributeKeyKeyword("ModelName")
	saModelVersion = temporal.NewSearchAttributeKeyInt64("ModelVersion")
	saModelStage   = temporal.NewSearchAttributeKeyKeyword("ModelStage")
)

// ModelWorkflow is the model's entity workflow: it mints versions, starts their lifecycles, and switches
// production one promotion at a time under a lock.
func ModelWorkflow(ctx workflow.Context, in ModelInput) error {
	m := &model{in: in, root: ctx, lock: workflow.NewMutex(ctx)}
	if in.State != nil {
		m.st = *in.State
	}
	if err := workflow.SetUpdateHandler(ctx, UpdateRegister, m.register); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandler(ctx, UpdatePromote, m.promote); err != nil {
		return err
	}
	// As the registry's: register also as a signal, its outcome answered by a query.
	if err := workflow.SetQueryHandler(ctx, QueryRegistration, func(key string) (int, error) {
		for _, kv := range m.st.Registered {
			if kv.Key == key {
				return kv.Version, nil
			}
		}
		return 0, nil
	}); err != nil {
		return err
	}
	signals := workflow.GetSignalChannel(ctx, SignalRegister)
	inFlight := 0
	workflow.Go(ctx, func(gctx workflow.Context) {
		for {
			var req RegisterRequest
			signals.Receive(gctx, &req)
			inFlight++
			workflow.Go(gctx, func(rctx workflow.Context) {
				defer func() { inFlight-- }()
				res, err := m.register(rctx, req)
				if err == nil {
					m.st.Registered = append(m.st.Registered, KeyVersion{Key: req.Key, Version: res.Version})
					if n := len(m.st.Registered); n > registeredWindow {
						m.st.Registered = m.st.Registered[n-registeredWindow:]
					}
				}
			})
		}
	})
	if err := workflow.UpsertTypedSearchAttributes(ctx, saModelName.ValueSet(in.Model)); err != nil {
		return err
	}
	if in.State == nil {
		// The registry's fresh run rebuilds its state from the catalog before it answers.
		if err := localStep(ctx, catalogOptions, "LoadModel"); err != nil {
			return err
		}
	}
	m.loaded = true
	if m.st.Delivering != 0 {
		m.runDelivery()
	}
	max := in.MaxHistoryEvents
	if max <= 0 {
		max = 5000 // the registry's default
	}
	if err := workflow.Await(ctx, func() bool {
		info := workflow.GetInfo(ctx)
		return (info.GetCurrentHistoryLength() >= max || info.GetContinueAsNewSuggested()) && workflow.AllHandlersFinished(ctx) &&
			inFlight == 0 && signals.Len() == 0
	}); err != nil {
		return err
	}
	next := in
	st := m.st
	next.State = &st
	return workflow.NewContinueAsNewError(ctx, ModelWorkflowType, next)
}

type model struct {
	in             ModelInput
	st             ModelState
	root           workflow.Context
	lock           workflow.Mutex
	loaded         bool
	cancelDelivery workflow.CancelFunc
}

func (m *model) register(ctx workflow.Context, req RegisterRequest) (RegisterResult, error) {
	if err := workflow.Await(ctx, func() bool { return m.loaded }); err != nil {
		return RegisterResult{}, err
	}
	m.st.Last++
	v := m.st.Last
	if err := localStep(ctx, mintOptions, "MintVersion"); err != nil {
		return RegisterResult{}, err
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            VersionWorkflowID(m.in.Model, v),
		TaskQueue:             workflow.GetInfo(ctx).TaskQueueName,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	})
	child := workflow.ExecuteChildWorkflow(cctx, VersionWorkflowType, VersionInput{Model: m.in.Model, Version: v})
	if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		return RegisterResult{}, err
	}
	return RegisterResult{Version: v}, nil
}

func (m *model) promote(ctx workflow.Context, version int) (int, error) {
	if err := workflow.Await(ctx, func() bool { return m.loaded }); err != nil {
		return 0, err
	}
	if err := m.lock.Lock(ctx); err != nil {
		return 0, err
	}
	defer m.lock.Unlock()
	if m.st.Production == version {
		return version, nil
	}
	if err := step(ctx, queryOptions, "QueryWorkflow"); err != nil {
		return 0, err
	}
	for _, name := range []string{"GetVersionRow", "LoadModel"} {
		if err := localStep(ctx, catalogOptions, name); err != nil {
			return 0, err
		}
	}
	if prior := m.st.Production; prior != 0 {
		in := SendInput{WorkflowID: VersionWorkflowID(m.in.Model, prior), UpdateName: UpdateArchive,
			UpdateID: fmt.Sprintf("archive/%d", version), Arg: version}
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, catalogOptions), acts.Send, in).Get(ctx, nil); err != nil {
			return 0, err
		}
	}
	if err := localStep(ctx, catalogOptions, "SetProductionFenced"); err != nil {
		return 0, err
	}
	m.st.Production = version
	// As the registry's switch: a delivery still pending is superseded (and that recorded, under the
	// lock), and the new one runs in the background.
	if m.st.Delivering != 0 {
		m.cancelDelivery()
		m.st.Delivering = 0
		_ = localStep(ctx, recordDeliveryOptions, "RecordDelivery")
	}
	m.st.Delivering = version
	m.runDelivery()
	return version, nil
}

func (m *model) runDelivery() {
	v := m.st.Delivering
	dctx, cancel := workflow.WithCancel(m.root)
	m.cancelDelivery = cancel
	workflow.Go(dctx, func(gctx workflow.Context) {
		_ = localStep(gctx, recordDeliveryOptions, "RecordDelivery")
		_ = step(gctx, deliveryOptions, "NotifyDeployment")
		if m.st.Delivering != v {
			return // superseded meanwhile
		}
		m.st.Delivering = 0
		nctx, _ := workflow.NewDisconnectedContext(gctx)
		_ = localStep(nctx, recordDeliveryOptions, "RecordDelivery")
	})
}

// VersionWorkflow is one version's lifecycle: store, validate, wait for approval, ask the model's
// workflow for promotion, and then wait to be archived.
func VersionWorkflow(ctx workflow.Context, in VersionInput) error {
	stage := StageRegistered
	approved := false
	if err := workflow.SetQueryHandler(ctx, QueryStage, func() (string, error) { return stage, nil }); err != nil {
		return err
	}
	transition := func(ctx workflow.Context, to string) error {
		if err := localStep(ctx, catalogOptions, TransitionStep+to); err != nil {
			return err
		}
		stage = to
		return workflow.UpsertTypedSearchAttributes(ctx, saModelName.ValueSet(in.Model),
			saModelVersion.ValueSet(int64(in.Version)), saModelStage.ValueSet(stage))
	}
	if err := workflow.SetUpdateHandler(ctx, UpdateApprove, func(ctx workflow.Context, d Decision) (string, error) {
		if stage != StagePendingApproval || approved {
			return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("v%d is not waiting for a decision: its stage is %s", in.Version, stage), "Refused", nil)
		}
		approved = true
		// As the registry's: the answer is the stage the decision led to.
		err := workflow.Await(ctx, func() bool { return stage != StagePendingApproval })
		return stage, err
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandler(ctx, UpdateArchive, func(ctx workflow.Context, by int) (string, error) {
		if err := step(ctx, queryOptions, "QueryWorkflow"); err != nil {
			return "", err
		}
		// The next switch can start while this version still records its own promotion.
		if err := workflow.Await(ctx, func() bool { return stage == StageProduction || stage == StageArchived }); err != nil {
			return "", err
		}
		if stage == StageArchived {
			return stage, nil
		}
		return stage, transition(ctx, StageArchived)
	}); err != nil {
		return err
	}

	for _, sa := range []temporal.SearchAttributeUpdate{saModelName.ValueSet(in.Model), saModelVersion.ValueSet(int64(in.Version)), saModelStage.ValueSet(stage)} {
		if err := workflow.UpsertTypedSearchAttributes(ctx, sa); err != nil {
			return err
		}
	}
	if err := step(ctx, storeOptions, "StoreArtifacts"); err != nil {
		return err
	}
	if err := transition(ctx, StageValidating); err != nil {
		return err
	}
	if err := step(ctx, storeOptions, "Validate"); err != nil {
		return err
	}
	if err := transition(ctx, StagePendingApproval); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return approved }); err != nil {
		return err
	}
	if err := localStep(ctx, auditOptions, "RecordDecisions"); err != nil {
		return err
	}
	if err := transition(ctx, StageApproved); err != nil {
		return err
	}
	in2 := SendInput{WorkflowID: ModelWorkflowID(in.Model), UpdateName: UpdatePromote,
		UpdateID: fmt.Sprintf("promote/v%d", in.Version), Arg: in.Version, StartModel: in.Model}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, promoteOptions), acts.Send, in2).Get(ctx, nil); err != nil {
		return err
	}
	if err := transition(ctx, StageProduction); err != nil {
		return err
	}
	// A version lives on after Production (archived, perhaps restored), as the registry's does.
	return workflow.Await(ctx, func() bool { return false })
}

// acts only names the activities in workflow code; workflows never call it.
var acts *Activities

// Activities are the baseline's: Noop stands for each of the registry's catalog, store, query and
// webhook activities, Send for its UpdateWorkflow.
type Activities struct {
	Client client.Client
}

func (*Activities) Noop(ctx context.Context, name string) error { return nil }

// SendInput is an update to send from an activity (a workflow cannot send one itself).
type SendInput struct {
	WorkflowID string `json:"workflowId"`
	UpdateName string `json:"updateName"`
	UpdateID   string `json:"updateId"`
	Arg        int    `json:"arg"`
	// StartModel, when set, sends the update with start of that model's workflow, as the registry's
	// promotion does.
	StartModel string `json:"startModel,omitempty"`
}

// Send runs the update and waits for its result, heartbeating meanwhile as the registry's UpdateWorkflow
// does (a promotion waits behind the others of its model).
func (a *Activities) Send(ctx context.Context, in SendInput) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	opts := client.UpdateWorkflowOptions{
		WorkflowID: in.WorkflowID, UpdateName: in.UpdateName, UpdateID: in.UpdateID,
		Args: []any{in.Arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	}
	var h client.WorkflowUpdateHandle
	var err error
	if in.StartModel != "" {
		op := a.Client.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
			ID: in.WorkflowID, TaskQueue: activity.GetInfo(ctx).TaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		}, ModelWorkflowType, ModelInput{Model: in.StartModel})
		h, err = a.Client.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: op, UpdateOptions: opts})
	} else {
		h, err = a.Client.UpdateWorkflow(ctx, opts)
	}
	if err != nil {
		return err
	}
	return h.Get(ctx, nil)
}
