package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/names"
)

// a is only a handle for naming activity methods; workflows never call it directly.
var a *activities.Activities

const defaultMaxHistoryEvents = 5000

// Search attributes (README, "Operator's view"); the Temporal namespace must have them registered.
var (
	SAModelName    = temporal.NewSearchAttributeKeyKeyword("ModelName")
	SAModelVersion = temporal.NewSearchAttributeKeyInt64("ModelVersion")
	SAModelStage   = temporal.NewSearchAttributeKeyKeyword("ModelStage")
)

// ModelWorkflow is the one long-lived workflow per model (ID model/<name>). It mints version numbers,
// owns the production pointer, and serializes promotions and rollbacks, so that whatever runs at the same
// time, at most one version of the model is in production.
func ModelWorkflow(ctx workflow.Context, in ModelInput) error {
	if err := names.ValidateModel(in.Model); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "BadInput", nil)
	}
	m := &modelWF{in: in, st: ModelState{NextVersion: 1, Keys: map[string]int{}, Ready: map[int]bool{}}, pending: map[string]*pendingRegistration{}}
	m.v = workflow.GetVersion(ctx, changeModelBehaviour, modelV0, modelLatest)
	if in.State != nil {
		m.st = *in.State
		if m.st.Keys == nil {
			m.st.Keys = map[string]int{}
		}
		if m.st.Ready == nil {
			m.st.Ready = map[int]bool{}
		}
	}
	if m.v >= modelV1 {
		// A cancel request must not end the model's workflow (it would stop minting and promotions), so
		// nothing below waits on ctx; the request is counted and logged.
		root, _ := workflow.NewDisconnectedContext(ctx)
		cancelled := ctx.Done()
		workflow.Go(root, func(gctx workflow.Context) {
			cancelled.Receive(gctx, nil)
			m.st.CancelRequests++
			m.refreshDetails(gctx)
			workflow.GetLogger(gctx).Warn("cancel request ignored: the model's workflow runs for as long as the model exists; terminate it to stop it")
		})
		ctx = root
		// What a run from before modelV1 carried lives in the catalog now.
		m.st.Keys, m.st.Ready = map[string]int{}, map[int]bool{}
		if m.st.LastVersion < m.st.NextVersion-1 {
			m.st.LastVersion = m.st.NextVersion - 1
		}
	}
	m.root = ctx
	m.st.Runs++
	m.lock = workflow.NewMutex(ctx)
	if err := workflow.UpsertTypedSearchAttributes(ctx, SAModelName.ValueSet(in.Model)); err != nil {
		return err
	}
	if err := m.setHandlers(ctx); err != nil {
		return err
	}
	m.refreshDetails(ctx)
	if m.v >= modelV1 {
		if in.State == nil {
			if err := m.rebuild(ctx); err != nil {
				return err
			}
		} else if m.v >= modelV5 {
			// Carried state is the previous run's at its end, and a reset of this run to its first
			// workflow task replays it long after: the switches made since are the catalog's.
			var snap catalog.ModelSnapshot
			if err := catalogCall(ctx, m.localCatalog(), catalogActivityOptions, a.LoadModel, m.in.Model).Get(ctx, &snap); err != nil {
				return err
			}
			m.adoptNewerCatalog(ctx, snap)
		}
		m.loaded = true
		m.refreshDetails(ctx)
		m.runDelivery(ctx)
		if m.v >= modelV3 {
			m.receiveRegistrations(ctx)
		}
		m.watchUnknownSignals(ctx)
	}
	max := in.MaxHistoryEvents
	if max <= 0 {
		max = defaultMaxHistoryEvents
	}
	// The model workflow does nothing but answer messages; it continues as new before its history grows
	// large, once no handler is running, carrying all state.
	if err := workflow.Await(ctx, func() bool {
		info := workflow.GetInfo(ctx)
		large := m.v >= modelV1 && info.GetCurrentHistorySize() >= maxHistoryBytes
		return (info.GetCurrentHistoryLength() >= max || large || info.GetContinueAsNewSuggested()) && workflow.AllHandlersFinished(ctx) && m.registrationsIdle()
	}); err != nil {
		return err
	}
	next := in
	st := m.st
	next.State = &st
	return workflow.NewContinueAsNewError(ctx, ModelWorkflow, next)
}

type modelWF struct {
	in   ModelInput
	st   ModelState
	lock workflow.Mutex
	v    workflow.Version

	// Since modelV1.
	root           workflow.Context // not cancelled by a cancel request
	loaded         bool
	pending        map[string]*pendingRegistration
	refusals       int
	switching      *SwitchInfo
	cancelDelivery workflow.CancelFunc
	// Promotions and rollbacks waiting for the lock, for the current details.
	queued   []queuedSwitch
	queueSeq int
	// promotions is the number of promote handlers running (waiting for the lock or switching).
	promotions int
	// Since modelV3: the register signals' channel, and the signals taken from it and not yet done.
	registerSignals     workflow.ReceiveChannel
	signalRegistrations int
}

// maxWaitingPromotions bounds the promote updates a model's workflow runs at once: a version approved
// beyond it is answered busy, and its promotion activity sends it again about a second later. It leaves
// 6 of Temporal's 10 in-flight updates per workflow to registrations and rollbacks, which on a hot model
// were otherwise refused with "resource exhausted".
const maxWaitingPromotions = 4

func (m *modelWF) setHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryDescribe, func() (ModelDescription, error) {
		if m.v >= modelV1 && !m.loaded {
			return ModelDescription{}, errors.New("the model's workflow is rebuilding its state from the catalog; ask again in a moment")
		}
		return ModelDescription{SchemaVersion: SchemaVersion, Model: m.in.Model, State: m.st}, nil
	}, workflow.QueryHandlerOptions{Description: descModelDescribe}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryProduction, func() (ProductionResult, error) {
		if m.v >= modelV1 && !m.loaded {
			return ProductionResult{}, errors.New("the model's workflow is rebuilding its state from the catalog; ask again in a moment")
		}
		return m.production(), nil
	}, workflow.QueryHandlerOptions{Description: descProduction}); err != nil {
		return err
	}
	registerValidator := func(ctx workflow.Context, req RegisterRequest) error {
		if err := req.Validate(); err != nil {
			return err
		}
		if req.Model != m.in.Model {
			return fmt.Errorf("request is for model %q but this is the workflow of model %q", req.Model, m.in.Model)
		}
		return nil
	}
	if m.v >= modelV1 {
		if err := workflow.SetQueryHandlerWithOptions(ctx, QuerySwitch, func() (SwitchInfo, error) {
			if m.switching == nil {
				return SwitchInfo{}, nil
			}
			return *m.switching, nil
		}, workflow.QueryHandlerOptions{Description: descSwitch}); err != nil {
			return err
		}
		if m.v >= modelV3 {
			if err := workflow.SetQueryHandlerWithOptions(ctx, QueryRegistration, m.registration,
				workflow.QueryHandlerOptions{Description: descRegistration}); err != nil {
				return err
			}
		}
		if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRegister, m.registerV1, workflow.UpdateHandlerOptions{
			Validator: registerValidator, Description: descRegister,
		}); err != nil {
			return err
		}
		promoteOpts := workflow.UpdateHandlerOptions{
			Validator: func(ctx workflow.Context, req PromoteRequest) error {
				if req.SchemaVersion != SchemaVersion {
					return fmt.Errorf("schemaVersion %d is not supported (want %d)", req.SchemaVersion, SchemaVersion)
				}
				if m.loaded && (req.Version < 1 || req.Version > m.st.LastVersion) {
					return fmt.Errorf("model %q has no version %d", m.in.Model, req.Version)
				}
				// Each promotion waiting for the lock holds one of Temporal's 10 in-flight updates of
				// this workflow; more of them would leave registrations none (validators do not run on
				// replay, so this bound may change freely).
				if m.promotions >= maxWaitingPromotions {
					return temporal.NewApplicationError(fmt.Sprintf("busy: %d promotions of %s are in progress; send it again in a moment",
						m.promotions, m.in.Model), activities.ErrTypeBusy)
				}
				return nil
			},
			Description: descPromote,
		}
		if err := m.setPromoteHandlers(ctx, m.promoteV1, promoteOpts); err != nil {
			return err
		}
		if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRedeliver, m.redeliver, workflow.UpdateHandlerOptions{
			Validator: func(ctx workflow.Context, req RedeliverRequest) error {
				if req.SchemaVersion != SchemaVersion {
					return fmt.Errorf("schemaVersion %d is not supported (want %d)", req.SchemaVersion, SchemaVersion)
				}
				return nil
			},
			Description: descRedeliver,
		}); err != nil {
			return err
		}
		return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRollback, m.rollbackV1, workflow.UpdateHandlerOptions{
			Validator: func(ctx workflow.Context, req RollbackRequest) error {
				if req.SchemaVersion != SchemaVersion {
					return fmt.Errorf("schemaVersion %d is not supported (want %d)", req.SchemaVersion, SchemaVersion)
				}
				if len(req.Actor) > MaxActorBytes || len(req.Reason) > MaxReasonBytes {
					return fmt.Errorf("actor (max %d bytes) or reason (max %d bytes) is too long", MaxActorBytes, MaxReasonBytes)
				}
				if m.loaded && (req.To < 0 || req.To > m.st.LastVersion) {
					return fmt.Errorf("model %q has no version %d", m.in.Model, req.To)
				}
				return nil
			},
			Description: descRollback,
		})
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRegister, m.register, workflow.UpdateHandlerOptions{
		Validator: registerValidator, Description: descRegister,
	}); err != nil {
		return err
	}
	if err := m.setPromoteHandlers(ctx, m.promote, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, req PromoteRequest) error {
			if req.SchemaVersion != SchemaVersion {
				return fmt.Errorf("schemaVersion %d is not supported (want %d)", req.SchemaVersion, SchemaVersion)
			}
			if !m.st.Ready[req.Version] {
				return fmt.Errorf("model %q has no version %d", m.in.Model, req.Version)
			}
			return nil
		},
		Description: descPromote,
	}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRollback, m.rollback, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, req RollbackRequest) error {
			_, err := m.rollbackTarget(req)
			return err
		},
		Description: descRollback,
	})
}

// setPromoteHandlers registers the internal promote update under its name and, in a run from before
// modelV2, under its old name as well: such a run may have accepted promote already (its history must
// replay), and a worker not yet upgraded still sends the old name. Registering a name adds no command
// to the history, so a run from before modelV2 replayed by this code also accepts the new name.
func (m *modelWF) setPromoteHandlers(ctx workflow.Context, handler func(workflow.Context, PromoteRequest) (ProductionResult, error), opts workflow.UpdateHandlerOptions) error {
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdatePromote, handler, opts); err != nil {
		return err
	}
	if m.v >= modelV2 {
		return nil
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdatePromoteLegacy, handler, opts)
}

func (m *modelWF) production() ProductionResult {
	r := ProductionResult{SchemaVersion: SchemaVersion, Model: m.in.Model, Version: m.st.Production}
	if m.st.Production > 0 {
		r.WorkflowID = VersionWorkflowID(m.in.Model, m.st.Production)
	}
	if n := len(m.st.History); n > 0 {
		r.Previous = m.st.History[n-1].Previous
	}
	return r
}

func (m *modelWF) register(ctx workflow.Context, req RegisterRequest) (RegisterResult, error) {
	res := RegisterResult{SchemaVersion: SchemaVersion, Model: m.in.Model}
	if v, ok := m.st.Keys[req.IdempotencyKey]; ok {
		// A retry of a registration in progress waits for the first one, so both answer the same.
		if err := workflow.Await(ctx, func() bool { return m.st.Ready[v] }); err != nil {
			return res, err
		}
		res.Version, res.WorkflowID, res.Existing = v, VersionWorkflowID(m.in.Model, v), true
		return res, nil
	}
	// Minting happens before anything blocks, so concurrent registrations get distinct numbers.
	v := m.st.NextVersion
	m.st.NextVersion++
	m.st.Keys[req.IdempotencyKey] = v
	wfID := VersionWorkflowID(m.in.Model, v)

	actx := workflow.WithActivityOptions(ctx, catalogActivityOptions)
	row := catalog.Version{
		Model: m.in.Model, Version: v, Stage: StageRegistered, IdempotencyKey: req.IdempotencyKey,
		WorkflowID: wfID, Metrics: req.Metrics, Params: req.Params, SourceRun: req.SourceRun,
		RegisteredBy: req.RegisteredBy, Seq: 1, CreatedAt: workflow.Now(ctx).UTC(),
	}
	if err := workflow.ExecuteActivity(actx, a.CreateVersion, row).Get(ctx, nil); err != nil {
		return res, err
	}
	vin := VersionInput{
		SchemaVersion: SchemaVersion, Model: m.in.Model, Version: v, Request: req,
		MaxHistoryEvents: m.in.MaxHistoryEvents,
	}
	summary, details := versionStartMetadata(vin)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: wfID,
		TaskQueue:  workflow.GetInfo(ctx).TaskQueueName,
		// A version's lifecycle outlives the run of the model workflow that started it.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// User metadata is not matched on replay (only the child's type is), so older histories replay.
		StaticSummary: summary, StaticDetails: details,
	})
	child := workflow.ExecuteChildWorkflow(cctx, ModelVersionWorkflow, vin)
	if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		return res, fmt.Errorf("start lifecycle workflow %s: %w", wfID, err)
	}
	m.st.Ready[v] = true
	m.refreshDetails(ctx)
	res.Version, res.WorkflowID = v, wfID
	return res, nil
}

// Catalog writes take milliseconds; a short timeout means an attempt lost with a crashed worker is retried
// within seconds.
var catalogActivityOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 10 * time.Second,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
}

// Deployment events are retried until acknowledged: a downstream outage must not lose one.
var deployActivityOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 45 * time.Second,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: 5 * time.Minute},
}

func (m *modelWF) promote(ctx workflow.Context, req PromoteRequest) (ProductionResult, error) {
	if err := m.lock.Lock(ctx); err != nil {
		return ProductionResult{}, err
	}
	defer m.lock.Unlock()
	if m.st.Production == req.Version {
		return m.production(), nil
	}
	if slices.Contains(m.st.Archived, req.Version) {
		return ProductionResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("version %d was already in production and is archived; use rollback", req.Version), "BadRequest", nil)
	}
	if err := m.switchProduction(ctx, req.Version, "promote", req.Actor, req.Reason, false); err != nil {
		return ProductionResult{}, err
	}
	return m.production(), nil
}

func (m *modelWF) rollbackTarget(req RollbackRequest) (int, error) {
	if req.SchemaVersion != SchemaVersion {
		return 0, fmt.Errorf("schemaVersion %d is not supported (want %d)", req.SchemaVersion, SchemaVersion)
	}
	if req.Actor == "" {
		return 0, errors.New("rollback needs an actor (who is rolling back)")
	}
	if req.To == 0 {
		if len(m.st.Archived) == 0 {
			return 0, fmt.Errorf("model %q has no archived version to roll back to", m.in.Model)
		}
		return m.st.Archived[len(m.st.Archived)-1], nil
	}
	if !slices.Contains(m.st.Archived, req.To) {
		return 0, fmt.Errorf("version %d of model %q is not archived (production is v%d; archived: %v)", req.To, m.in.Model, m.st.Production, m.st.Archived)
	}
	return req.To, nil
}

func (m *modelWF) rollback(ctx workflow.Context, req RollbackRequest) (ProductionResult, error) {
	if err := m.lock.Lock(ctx); err != nil {
		return ProductionResult{}, err
	}
	defer m.lock.Unlock()
	// Re-check under the lock: a promotion may have run since the validator accepted this.
	to, err := m.rollbackTarget(req)
	if err != nil {
		return ProductionResult{}, temporal.NewNonRetryableApplicationError(err.Error(), "BadRequest", nil)
	}
	if err := m.switchProduction(ctx, to, "rollback", req.Actor, req.Reason, true); err != nil {
		return ProductionResult{}, err
	}
	return m.production(), nil
}

// switchProduction makes version the production version: deployment event, the prior version archived,
// (for a rollback) the target restored, and the catalog pointer moved. The caller holds m.lock.
func (m *modelWF) switchProduction(ctx workflow.Context, version int, kind, actor, reason string, restore bool) error {
	m.st.Seq++
	seq := m.st.Seq
	prior := m.st.Production
	now := workflow.Now(ctx).UTC()

	dctx := workflow.WithActivityOptions(ctx, deployActivityOptions)
	ev := activities.DeploymentEvent{
		SchemaVersion: SchemaVersion, EventID: fmt.Sprintf("%s/%d/%s/v%d", m.in.Model, seq, kind, version),
		Kind: kind, Model: m.in.Model, Version: version, Stage: StageProduction, PreviousVersion: prior, At: now,
	}
	if err := workflow.ExecuteActivity(dctx, a.NotifyDeployment, ev).Get(ctx, nil); err != nil {
		return err
	}
	uctx := workflow.WithActivityOptions(ctx, catalogActivityOptions)
	if prior != 0 {
		arg := ArchiveRequest{SchemaVersion: SchemaVersion, ReplacedBy: version, Actor: actor, Reason: fmt.Sprintf("replaced by v%d (%s)", version, kind)}
		if err := m.updateVersion(uctx, prior, UpdateArchive, fmt.Sprintf("archive/%d", seq), arg); err != nil {
			return err
		}
		m.st.Archived = append(m.st.Archived, prior)
	}
	if restore {
		arg := ArchiveRequest{SchemaVersion: SchemaVersion, Actor: actor, Reason: reason}
		if err := m.updateVersion(uctx, version, UpdateRestore, fmt.Sprintf("restore/%d", seq), arg); err != nil {
			return err
		}
		m.st.Archived = slices.DeleteFunc(m.st.Archived, func(v int) bool { return v == version })
	}
	if err := workflow.ExecuteActivity(uctx, a.SetProduction, activities.SetProductionInput{Model: m.in.Model, Version: version, Seq: seq}).Get(ctx, nil); err != nil {
		return err
	}
	m.st.Production = version
	m.st.History = append(m.st.History, ProductionChange{Seq: seq, Version: version, Previous: prior, Kind: kind, Actor: actor, Reason: reason, At: now})
	m.refreshDetails(ctx)
	return nil
}

func (m *modelWF) updateVersion(ctx workflow.Context, version int, name, id string, arg any) error {
	// encoding/json is deterministic for these structs (workflowcheck cannot see through reflection).
	raw, err := json.Marshal(arg) //workflowcheck:ignore
	if err != nil {
		return err
	}
	in := activities.UpdateWorkflowInput{WorkflowID: VersionWorkflowID(m.in.Model, version), UpdateName: name, UpdateID: id, Arg: raw}
	return workflow.ExecuteActivity(ctx, a.UpdateWorkflow, in).Get(ctx, nil)
}
