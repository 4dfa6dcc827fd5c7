package workflows

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

// Versions of ModelWorkflow's behaviour, recorded with workflow.GetVersion at the start of every run
// so that a run keeps the behaviour it started with (histories in tests/testdata replay on both).
const (
	changeModelBehaviour = "model-behaviour"
	// modelV0: the workflow mints numbers itself and carries every key, the deployment webhook is
	// POSTed under the model's lock before the switch.
	modelV0 = workflow.DefaultVersion
	// modelV1: the catalog mints numbers and keeps the keys; a run without carried state rebuilds itself
	// from the catalog; promotions are checked against the version's own state and the current
	// champion; archive and restore name the running switch; the deployment event is delivered after the
	// switch, outside the lock; cancel requests are ignored; state is bounded.
	modelV1 workflow.Version = 1
	// modelV2: the internal promote update is offered only as UpdatePromote ("system:promote"), so that
	// the Temporal UI lists the model's public updates first. A run from before keeps accepting
	// UpdatePromoteLegacy as well.
	modelV2 workflow.Version = 2
	// modelV3: the catalog's reads and writes (mint, load, version rows, the production pointer,
	// deliveries, refusals) run as local activities (see catalogCall).
	modelV3 workflow.Version = 3
	// modelV4: a rollback is acted on once per update ID, which it claims in the catalog before anything
	// else and whose outcome it records (a reset re-delivers every update after its reset point to the
	// new run); a switch that finds a newer change in the catalog than the run knows (a reset to an
	// earlier point) adopts the catalog's production pointer and archive before it decides anything.
	modelV4 workflow.Version = 4
	// modelV5: a switch sends the archive request to the version it replaces without first asking
	// whether that version's workflow runs: the request's answer says so (not running: the switch archives
	// the version in the catalog itself, as before). One activity and one query less per promotion. A
	// run that starts with carried state adopts a newer catalog before it answers (a reset to the
	// first workflow task of a run that began with continue-as-new replays that run's input). A
	// promotion moves the version to Production in the catalog with the pointer, its actor the
	// version's last approver.
	modelV5 workflow.Version = 5
	// modelLatest is what a new run records.
	modelLatest = modelV5
)

// Bounds of what ModelWorkflow keeps in memory (and carries across continue-as-new) since modelV1.
const (
	historyWindow = 20
)

// Timeouts and retry limits since modelV1 (README, "Limits").
var (
	// Minting is retried for about ten minutes of catalog outage, then the registration fails back to
	// its caller, who can retry it with the same key.
	mintActivityOptions = workflow.ActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: 10 * time.Minute,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	}
	// A deployment event is retried for a day; a receiver that answers 4xx ends it at once.
	deliveryActivityOptions = workflow.ActivityOptions{
		StartToCloseTimeout:    45 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeRefusedByReceiver}},
	}
	queryActivityOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 30},
	}
)

// Error types of refusals sent back to the sender of a message (the Temporal CLI prints them).
const (
	ErrTypeRefused = activities.ErrTypeRefused
)

func refused(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeRefused, nil)
}

// rebuild loads, before any message is answered, what a run that starts without carried state must
// know: the production pointer and its fence, the highest minted number, the recently archived versions.
func (m *modelWF) rebuild(ctx workflow.Context) error {
	var snap catalog.ModelSnapshot
	if err := catalogCall(ctx, m.localCatalog(), catalogActivityOptions, a.LoadModel, m.in.Model).Get(ctx, &snap); err != nil {
		return err
	}
	now := workflow.Now(ctx).UTC()
	m.st.Production, m.st.Seq, m.st.LastVersion = snap.Production, snap.Seq, snap.LastVersion
	m.st.Archived = snap.Archived
	m.st.Rebuilt = &now
	if d := snap.LastDelivery; d != nil {
		// The deployment event of the last switch: a pending one is delivered again, a refused or failed
		// one can be redelivered.
		m.st.Delivery = &Delivery{Status: d.Status, Error: d.Error, Event: activities.DeploymentEvent{
			SchemaVersion: SchemaVersion, EventID: d.EventID, Kind: d.Kind, Model: m.in.Model, Version: d.Version,
			Stage: StageProduction, PreviousVersion: d.Previous, At: d.At,
		}}
	}
	m.st.NextVersion = 0
	return nil
}

type pendingRegistration struct {
	done bool
	res  RegisterResult
	err  error
}

// registerV1 mints through the catalog. Concurrent retries of one key wait for the first attempt and get
// its answer, error included; nothing about a key outlives its attempt, so a later retry tries again.
func (m *modelWF) registerV1(ctx workflow.Context, req RegisterRequest) (RegisterResult, error) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(ctx, func() bool { return m.loaded }); err != nil {
		return RegisterResult{}, err
	}
	if p, ok := m.pending[req.IdempotencyKey]; ok {
		if err := workflow.Await(ctx, func() bool { return p.done }); err != nil {
			return RegisterResult{}, err
		}
		return p.res, p.err
	}
	p := &pendingRegistration{}
	m.pending[req.IdempotencyKey] = p
	p.res, p.err = m.mintAndStart(ctx, req)
	p.done = true
	delete(m.pending, req.IdempotencyKey)
	m.noteOutcome(ctx, req.IdempotencyKey, p.res, p.err)
	return p.res, p.err
}

func (m *modelWF) mintAndStart(ctx workflow.Context, req RegisterRequest) (RegisterResult, error) {
	res := RegisterResult{SchemaVersion: SchemaVersion, Model: m.in.Model}
	var mint activities.MintResult
	row := catalog.Version{
		Model: m.in.Model, Stage: StageRegistered, IdempotencyKey: req.IdempotencyKey,
		Metrics: req.Metrics, Params: req.Params, Tags: req.Tags, SourceRun: req.SourceRun, RegisteredBy: req.RegisteredBy, Seq: 1,
	}
	if err := catalogCall(ctx, m.localCatalog(), mintActivityOptions, a.MintVersion, row).Get(ctx, &mint); err != nil {
		return res, temporal.NewApplicationError("the registration could not be recorded in the catalog (retry with the same idempotency key): "+rootMessage(err), "CatalogUnavailable")
	}
	v := mint.Version.Version
	m.st.LastVersion = max(m.st.LastVersion, v)
	m.refreshDetails(ctx)
	res.Version, res.WorkflowID, res.Existing = v, VersionWorkflowID(m.in.Model, v), mint.Existing
	if mint.Existing {
		res.Stage = mint.Version.Stage
		// A version past Registered has (or had) its workflow; only a Registered one may be missing it,
		// when a run ended between the catalog row and the start of the lifecycle.
		if mint.Version.Stage != StageRegistered {
			return res, nil
		}
	}
	vin := VersionInput{
		SchemaVersion: SchemaVersion, Model: m.in.Model, Version: v, Request: req,
		MaxHistoryEvents: m.in.MaxHistoryEvents,
	}
	summary, details := versionStartMetadata(vin)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: res.WorkflowID,
		TaskQueue:  workflow.GetInfo(ctx).TaskQueueName,
		// A version's lifecycle outlives the run of the model workflow that started it.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// User metadata is not matched on replay (only the child's type is), so older histories replay.
		StaticSummary: summary, StaticDetails: details,
	})
	child := workflow.ExecuteChildWorkflow(cctx, ModelVersionWorkflow, vin)
	if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil && !temporal.IsWorkflowExecutionAlreadyStartedError(err) {
		return res, temporal.NewApplicationError(fmt.Sprintf("v%d is recorded but its lifecycle workflow %s did not start (retry with the same idempotency key): %s", v, res.WorkflowID, rootMessage(err)), "StartFailed")
	}
	return res, nil
}

// refuse records a message the model's workflow refused (best effort: the audit must not block the
// model) and returns the refusal for its sender.
func (m *modelWF) refuse(ctx workflow.Context, name string, version int, payload any, reason string) error {
	reason = clip([]byte(reason), catalog.MaxRefusalReason)
	if err := m.recordRefusal(ctx, name, "update", version, encodeJSON(payload), reason); err != nil {
		workflow.GetLogger(ctx).Error("refused message not recorded in the catalog", "name", name, "error", err)
	}
	return refused("%s", reason)
}

// recordRefusal writes one refused message to the catalog's audit; its id is unique per run.
func (m *modelWF) recordRefusal(ctx workflow.Context, name, via string, version int, payload []byte, reason string) error {
	m.refusals++
	info := workflow.GetInfo(ctx)
	r := catalog.Refusal{
		WorkflowID: info.WorkflowExecution.ID, ID: fmt.Sprintf("%s/%d", info.WorkflowExecution.RunID, m.refusals),
		Model: m.in.Model, Version: version, Name: clip([]byte(name), 200), Via: via, Reason: reason,
		Payload: string(payload), At: workflow.Now(ctx).UTC(),
	}
	opts := workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 10},
	}
	return catalogCall(ctx, m.localCatalog(), opts, a.RecordRefusal, r).Get(ctx, nil)
}

// inspect asks the version's workflow for what a promotion depends on.
func (m *modelWF) inspect(ctx workflow.Context, version int) (PromotionInfo, string, error) {
	return m.startInspect(ctx, version)(ctx)
}

// startInspect schedules inspect's query and returns what waits for its answer, so that several reads
// of a switch can run at once.
func (m *modelWF) startInspect(ctx workflow.Context, version int) func(workflow.Context) (PromotionInfo, string, error) {
	qctx := workflow.WithActivityOptions(ctx, queryActivityOptions)
	f := workflow.ExecuteActivity(qctx, a.QueryWorkflow, activities.QueryInput{
		WorkflowID: VersionWorkflowID(m.in.Model, version), Query: QueryPromotion,
	})
	return func(ctx workflow.Context) (PromotionInfo, string, error) {
		var qr activities.QueryResult
		if err := f.Get(ctx, &qr); err != nil {
			return PromotionInfo{}, "", err
		}
		return m.promotionInfo(version, qr)
	}
}

func (m *modelWF) promotionInfo(version int, qr activities.QueryResult) (PromotionInfo, string, error) {
	var info PromotionInfo
	if qr.Status != "Running" {
		return info, qr.Status, nil
	}
	if err := decodeJSON(qr.Result, &info); err != nil {
		return info, qr.Status, fmt.Errorf("v%d answered its promotion query with %s: %w", version, qr.Result, err)
	}
	return info, qr.Status, nil
}

// promotionRefusal says why the version cannot be promoted, "" when it can.
func promotionRefusal(model string, version int, status string, p PromotionInfo) string {
	name := fmt.Sprintf("%s v%d", model, version)
	switch {
	case status == "NotFound":
		return fmt.Sprintf("%s has no lifecycle workflow", name)
	case status != "Running":
		return fmt.Sprintf("the lifecycle workflow of %s is not running (%s)", name, status)
	case p.Stage != StageApproved:
		return fmt.Sprintf("%s is %s, not %s: only the version's own workflow asks for its promotion, once it is approved", name, p.Stage, StageApproved)
	case !p.Validated:
		return fmt.Sprintf("%s has no passed validation", name)
	case p.Rejected:
		return fmt.Sprintf("%s was rejected", name)
	case p.Approvals < max(p.Required, 1):
		return fmt.Sprintf("%s has %d of the %d approvals its policy requires", name, p.Approvals, max(p.Required, 1))
	case p.ManifestDigest == "":
		return fmt.Sprintf("%s has no manifest", name)
	}
	return ""
}

func (m *modelWF) promoteV1(ctx workflow.Context, req PromoteRequest) (ProductionResult, error) {
	m.promotions++
	defer func() { m.promotions-- }()
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(ctx, func() bool { return m.loaded }); err != nil {
		return ProductionResult{}, err
	}
	queued := m.waitForSwitch(ctx, fmt.Sprintf("promote v%d", req.Version))
	err := m.lock.Lock(ctx)
	queued()
	if err != nil {
		return ProductionResult{}, err
	}
	defer m.lock.Unlock()
	if m.st.Production == req.Version {
		return m.production(), nil
	}
	// Since modelV3 the reads of a promotion run at once: the version's state, its catalog row, the
	// fence, and the state of the version it replaces. They are independent of each other, and under the
	// lock nothing else moves what they read, so reading them together answers as reading them one after
	// the other would, in one round trip instead of four. A refused promotion wasted the reads, no more.
	var pre *switchReads
	inspectVersion := m.startInspect(ctx, req.Version)
	var rowF workflow.Future
	if m.v >= modelV3 {
		pre = &switchReads{snap: catalogCall(ctx, true, catalogActivityOptions, a.LoadModel, m.in.Model)}
		rowF = catalogCall(ctx, true, catalogActivityOptions, a.GetVersionRow, m.in.Model, req.Version)
		if prior := m.st.Production; prior != 0 && m.v < modelV5 {
			pre.prior = m.startInspect(ctx, prior)
		}
	}
	info, status, err := inspectVersion(ctx)
	if err != nil {
		return ProductionResult{}, err
	}
	if reason := promotionRefusal(m.in.Model, req.Version, status, info); reason != "" {
		return ProductionResult{}, m.refuse(ctx, UpdatePromote, req.Version, req, "promote refused: "+reason)
	}
	// The catalog must agree: a run started again under a closed version's ID (or reset) is not the
	// lifecycle's, and the catalog, which only the lifecycle's own run can move, says so.
	if rowF == nil {
		rowF = catalogCall(ctx, m.localCatalog(), catalogActivityOptions, a.GetVersionRow, m.in.Model, req.Version)
	}
	var row activities.VersionRow
	if err := rowF.Get(ctx, &row); err != nil {
		return ProductionResult{}, err
	}
	if row.Stage != StageApproved || row.ManifestDigest != info.ManifestDigest {
		return ProductionResult{}, m.refuse(ctx, UpdatePromote, req.Version, req, fmt.Sprintf(
			"promote refused: the catalog says %s v%d is %s (manifest %s), not %s with the manifest its workflow names", m.in.Model, req.Version, orNone(row.Stage), orNone(row.ManifestDigest), StageApproved))
	}
	if m.v >= modelV4 {
		// What follows depends on the production version, which a reset can have left the run wrong about.
		var snap catalog.ModelSnapshot
		if err := pre.snap.Get(ctx, &snap); err != nil {
			return ProductionResult{}, err
		}
		if m.adoptNewerCatalog(ctx, snap) {
			pre.prior = nil
			if m.st.Production == req.Version {
				return m.production(), nil
			}
		}
	}
	// The comparison with the champion ran at validation; production may have changed since.
	if info.ChampionMetric != "" && info.Champion != m.st.Production {
		var cr activities.ChampionResult
		qctx := workflow.WithActivityOptions(ctx, catalogActivityOptions)
		if err := workflow.ExecuteActivity(qctx, a.RecheckChampion, activities.ChampionInput{
			Model: m.in.Model, Version: req.Version, Metric: info.ChampionMetric, LowerIsBetter: info.LowerIsBetter,
			Tolerance: info.Tolerance, Value: info.Value,
		}).Get(ctx, &cr); err != nil {
			return ProductionResult{}, err
		}
		if !cr.Check.Passed {
			return ProductionResult{}, m.refuse(ctx, UpdatePromote, req.Version, req, fmt.Sprintf(
				"promote refused: production changed since v%d was validated (then v%d, now v%d) and it no longer beats the champion: %s",
				req.Version, info.Champion, cr.Champion, cr.Check.Detail))
		}
	}
	actor := req.Actor
	if m.v >= modelV5 && info.Approver != "" {
		actor = info.Approver // the request's is whatever its sender typed
	}
	if err := m.switchV1(ctx, req.Version, "promote", actor, req.Reason, false, pre); err != nil {
		return ProductionResult{}, err
	}
	return m.production(), nil
}

func (m *modelWF) rollbackV1(ctx workflow.Context, req RollbackRequest) (ProductionResult, error) {
	var claim *catalog.RequestDone
	if m.v >= modelV4 {
		claim = &catalog.RequestDone{ID: workflow.GetCurrentUpdateInfo(ctx).ID}
	}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(ctx, func() bool { return m.loaded }); err != nil {
		return ProductionResult{}, err
	}
	if claim == nil {
		return m.rollbackOnce(ctx, req, nil, 0)
	}
	cl, err := m.claimRequest(ctx, UpdateRollback, req.To, req, claim)
	if err != nil {
		return ProductionResult{}, err
	}
	resume := 0
	if cl.TakenOver && cl.Prior.Target != nil {
		// The handler this one replaces had decided on a switch and may have half made it: finish that one.
		resume = *cl.Prior.Target
	}
	res, err := m.rollbackOnce(ctx, req, claim, resume)
	if err != nil {
		// A switch that moved the pointer wrote its outcome with it; this is every other ending.
		outcome := "failed: " + rootMessage(err)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == ErrTypeRefused {
			outcome = "refused: " + rootMessage(err)
		}
		m.finishRequest(ctx, claim, outcome)
	}
	return res, err
}

func (m *modelWF) finishRequest(ctx workflow.Context, claim *catalog.RequestDone, outcome string) {
	if err := catalogCall(ctx, true, catalogActivityOptions, a.FinishRequest, activities.FinishRequestInput{
		Model: m.in.Model, ID: claim.ID, Token: claim.Token, Outcome: outcome,
	}).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("a rollback's outcome was not recorded; a second delivery of it would be acted on", "update", claim.ID, "error", err)
	}
}

// claimRequest claims, in the catalog, the update being handled under claim.ID for this handler (a
// token of its own, a side effect, so that a reset that keeps the handler, or a retry of the claim,
// presents the same one). An update handled before, in an earlier run or a branch a reset left, is
// refused with what became of it.
func (m *modelWF) claimRequest(ctx workflow.Context, name string, version int, payload any, claim *catalog.RequestDone) (catalog.Claim, error) {
	token, err := randomID(ctx)
	if err != nil {
		return catalog.Claim{}, err
	}
	claim.Token = token
	var cl catalog.Claim
	if err := catalogCall(ctx, true, catalogActivityOptions, a.ClaimRequest, activities.ClaimRequestInput{
		Model: m.in.Model, Name: name, ID: claim.ID, Token: token,
	}).Get(ctx, &cl); err != nil {
		return cl, err
	}
	if cl.TakenOver {
		workflow.GetLogger(ctx).Warn("a request claimed by a handler that never finished (its run was reset or ended) is handled again",
			"name", name, "update", claim.ID, "decidedTarget", cl.Prior.Target)
	}
	if cl.Mine {
		return cl, nil
	}
	outcome, at := "", ""
	if cl.Prior.Outcome != nil {
		outcome = *cl.Prior.Outcome
	}
	if cl.Prior.DoneAt != nil {
		at = cl.Prior.DoneAt.Format(time.RFC3339)
	}
	// The catalog's pointer, not the run's: a run reset to an earlier point remembers an older one.
	return cl, m.refuse(ctx, name, version, payload, fmt.Sprintf(
		"%s %s was already handled at %s (%s), and a request is acted on once: this is a second delivery of it (a reset of the model's workflow re-applies the updates after its reset point, and a client may retry one), so nothing changed; production is v%d",
		name, claim.ID, at, outcome, cl.Production))
}

// rollbackOnce is a rollback (of the request claimed as claim since modelV4). resume, when not 0, is
// the target a handler of the same request decided on before a reset ended its run: the switch to it
// is finished (whatever of it was made is made again as a no-op) instead of a target chosen anew, which
// could pick the version that handler had already archived.
func (m *modelWF) rollbackOnce(ctx workflow.Context, req RollbackRequest, claim *catalog.RequestDone, resume int) (ProductionResult, error) {
	if strings.TrimSpace(req.Actor) == "" {
		return ProductionResult{}, m.refuse(ctx, UpdateRollback, req.To, req, "rollback needs an actor (who is rolling back)")
	}
	what := "rollback"
	if req.To > 0 {
		what = fmt.Sprintf("rollback to v%d", req.To)
	}
	queued := m.waitForSwitch(ctx, what)
	err := m.lock.Lock(ctx)
	queued()
	if err != nil {
		return ProductionResult{}, err
	}
	defer m.lock.Unlock()
	pre := &switchReads{request: claim}
	if m.v >= modelV4 {
		// The target is chosen from the archive, which the run may know less of than the catalog.
		pre.snap = catalogCall(ctx, true, catalogActivityOptions, a.LoadModel, m.in.Model)
		var snap catalog.ModelSnapshot
		if err := pre.snap.Get(ctx, &snap); err != nil {
			return ProductionResult{}, err
		}
		m.adoptNewerCatalog(ctx, snap)
	}
	to := req.To
	if resume > 0 {
		to = resume
		if m.st.Production == to {
			m.finishRequest(ctx, claim, fmt.Sprintf("v%d in production (seq %d), switched by the run before a reset", to, m.st.Seq))
			return m.production(), nil
		}
	} else if to == 0 {
		for i := len(m.st.Archived) - 1; i >= 0; i-- {
			// Since modelV4 the archive is the catalog's, where a switch cut off by a reset may have
			// archived the version still in production.
			if v := m.st.Archived[i]; m.v < modelV4 || v != m.st.Production {
				to = v
				break
			}
		}
		if to == 0 {
			return ProductionResult{}, m.refuse(ctx, UpdateRollback, 0, req, fmt.Sprintf("model %q has no archived version to roll back to", m.in.Model))
		}
	}
	if !slices.Contains(m.st.Archived, to) {
		// Older than the window kept in memory: the catalog knows. A resumed switch may have restored
		// its target already.
		var row activities.VersionRow
		if err := catalogCall(ctx, m.localCatalog(), catalogActivityOptions, a.GetVersionRow, m.in.Model, to).Get(ctx, &row); err != nil {
			return ProductionResult{}, err
		}
		if !row.Found || (row.Stage != StageArchived && (resume == 0 || row.Stage != StageProduction)) {
			stage := "not registered"
			if row.Found {
				stage = row.Stage
			}
			return ProductionResult{}, m.refuse(ctx, UpdateRollback, to, req, fmt.Sprintf("v%d of model %q is %s, not %s (production is v%d)", to, m.in.Model, stage, StageArchived, m.st.Production))
		}
	}
	if claim != nil {
		// Written before anything moves, so that a delivery taking this request over after a reset
		// finishes this switch.
		if err := catalogCall(ctx, true, catalogActivityOptions, a.SetRequestTarget, activities.RequestTargetInput{
			Model: m.in.Model, ID: claim.ID, Token: claim.Token, Target: to, Prior: m.st.Production,
		}).Get(ctx, nil); err != nil {
			return ProductionResult{}, err
		}
	}
	if pre.snap == nil {
		pre = nil
	}
	if err := m.switchV1(ctx, to, "rollback", req.Actor, req.Reason, true, pre); err != nil {
		return ProductionResult{}, err
	}
	return m.production(), nil
}

// switchReads are a switch's reads started before it (see promoteV1): the model's catalog snapshot,
// and the query of the version in production when it started (nil: none, or not started); and the
// claimed request the switch answers (a rollback since modelV4), whose outcome is written with the
// pointer.
type switchReads struct {
	snap    workflow.Future
	prior   func(workflow.Context) (PromotionInfo, string, error)
	request *catalog.RequestDone
}

// adoptNewerCatalog makes the run's production pointer and archive the catalog's when the catalog holds
// a newer change than the run knows of (since modelV4). Only the model's workflow moves the pointer, so
// a newer change was made by a run this one does not descend from: the branch a reset to an earlier
// point left behind. Deciding from the run's memory would archive a version that is not in production
// and restore one that is. It reports whether it adopted anything.
func (m *modelWF) adoptNewerCatalog(ctx workflow.Context, snap catalog.ModelSnapshot) bool {
	if m.v < modelV4 || snap.Seq <= m.st.Seq {
		return false
	}
	workflow.GetLogger(ctx).Warn("the catalog holds a newer production change than this run knows of (a reset to an earlier point?); the catalog's is used",
		"catalogSeq", snap.Seq, "catalogProduction", snap.Production, "runSeq", m.st.Seq, "runProduction", m.st.Production)
	m.st.Production, m.st.Seq = snap.Production, snap.Seq
	m.st.Archived = slices.Clone(snap.Archived)
	if snap.LastVersion > m.st.LastVersion {
		m.st.LastVersion = snap.LastVersion
	}
	m.refreshDetails(ctx)
	return true
}

// closedTarget reports whether err is an update's answer that its target workflow is not running, and
// how it ended (activities.UpdateWorkflow puts that in the error's details).
func closedTarget(err error) (string, bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeNotRunning {
		return "", false
	}
	status := "NotFound"
	if appErr.HasDetails() {
		_ = appErr.Details(&status)
	}
	return status, true
}

func randomID(ctx workflow.Context) (string, error) {
	var id string
	err := workflow.SideEffect(ctx, func(workflow.Context) any {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}).Get(&id)
	return id, err
}

// switchV1 makes version the production version: the prior one archived, the target restored (a
// rollback), the catalog pointer moved under a fence read from the catalog itself (so that neither a
// reset nor a fresh run can reuse a sequence number), and then the deployment event delivered, outside
// the lock. The caller holds m.lock.
func (m *modelWF) switchV1(ctx workflow.Context, version int, kind, actor, reason string, restore bool, pre *switchReads) error {
	id, err := randomID(ctx)
	if err != nil {
		return err
	}
	var snap catalog.ModelSnapshot
	cctx := workflow.WithActivityOptions(ctx, catalogActivityOptions)
	if pre == nil {
		pre = &switchReads{snap: catalogCall(ctx, m.localCatalog(), catalogActivityOptions, a.LoadModel, m.in.Model)}
	}
	if err := pre.snap.Get(ctx, &snap); err != nil {
		return err
	}
	if m.adoptNewerCatalog(ctx, snap) && pre.prior != nil {
		pre.prior = nil // it asked about the version the run thought was in production
	}
	seq := max(m.st.Seq, snap.Seq) + 1
	prior := m.st.Production
	if snap.Production != prior {
		workflow.GetLogger(ctx).Warn("the catalog's production pointer differs from the workflow's; the workflow's is used",
			"catalog", snap.Production, "workflow", prior)
	}
	m.switching = &SwitchInfo{ID: id, Kind: kind, Version: version, Prior: prior}
	m.refreshDetails(ctx)
	defer func() {
		m.switching = nil
		m.refreshDetails(ctx)
	}()

	if restore {
		// A target whose workflow an operator ended cannot come back: refuse before anything moves.
		if _, status, err := m.inspect(ctx, version); err != nil {
			return err
		} else if status != "Running" {
			return m.refuse(ctx, UpdateRollback, version, SwitchInfo{Kind: kind, Version: version, Prior: prior},
				fmt.Sprintf("v%d cannot be restored: its lifecycle workflow is %s; production stays v%d", version, status, prior))
		}
	}
	if prior != 0 {
		status := "Running"
		if m.v < modelV5 {
			inspectPrior := pre.prior
			if inspectPrior == nil {
				inspectPrior = m.startInspect(ctx, prior)
			}
			if _, status, err = inspectPrior(ctx); err != nil {
				return err
			}
		}
		reason := fmt.Sprintf("replaced by v%d (%s)", version, kind)
		if status == "Running" {
			err := m.updateVersion(cctx, prior, UpdateArchive, "archive/"+id, ArchiveRequest{
				SchemaVersion: SchemaVersion, ReplacedBy: version, Actor: actor, Reason: reason, SwitchID: id,
			})
			if st, closed := closedTarget(err); closed && m.v >= modelV5 {
				status = st
			} else if err != nil {
				return fmt.Errorf("v%d could not be archived, so production stays v%d: %w", prior, prior, err)
			}
		}
		if status != "Running" {
			// Nobody will ever move a version whose workflow was ended from outside; the switch archives
			// it in the catalog itself rather than wait for it.
			if err := catalogCall(ctx, m.localCatalog(), catalogActivityOptions, a.ArchiveClosedVersion, activities.ArchiveClosedInput{
				Model: m.in.Model, Version: prior, Status: status, Reason: reason,
			}).Get(ctx, nil); err != nil {
				return fmt.Errorf("v%d (its workflow %s) could not be archived, so production stays v%d: %w", prior, status, prior, err)
			}
		}
		if m.v < modelV4 || !slices.Contains(m.st.Archived, prior) {
			m.st.Archived = append(m.st.Archived, prior)
		}
		if len(m.st.Archived) > activities.ArchivedWindow {
			m.st.Archived = m.st.Archived[len(m.st.Archived)-activities.ArchivedWindow:]
		}
	}
	if restore {
		arg := ArchiveRequest{SchemaVersion: SchemaVersion, Actor: actor, Reason: reason, SwitchID: id}
		if err := m.updateVersion(cctx, version, UpdateRestore, "restore/"+id, arg); err != nil {
			// Put the prior version back, so the model is not left without production.
			if prior != 0 {
				m.switching = &SwitchInfo{ID: id + "-undo", Kind: "undo", Version: prior}
				undo := ArchiveRequest{SchemaVersion: SchemaVersion, Actor: "registry", Reason: fmt.Sprintf("rollback to v%d failed; v%d restored", version, prior), SwitchID: id + "-undo"}
				if uerr := m.updateVersion(cctx, prior, UpdateRestore, "undo/"+id, undo); uerr != nil {
					return fmt.Errorf("v%d could not be restored (%v), nor could v%d be put back: %w", version, err, prior, uerr)
				}
				m.st.Archived = slices.DeleteFunc(m.st.Archived, func(v int) bool { return v == prior })
			}
			return fmt.Errorf("v%d could not be restored, production stays v%d: %w", version, prior, err)
		}
		m.st.Archived = slices.DeleteFunc(m.st.Archived, func(v int) bool { return v == version })
	}
	var applied bool
	setIn := activities.SetProductionInput{Model: m.in.Model, Version: version, Seq: seq}
	if pre.request != nil {
		done := *pre.request
		done.Outcome = fmt.Sprintf("v%d in production (seq %d), v%d before", version, seq, prior)
		setIn.Request = &done
	}
	if m.v >= modelV5 && !restore {
		// The version's own workflow records its Production transition after this switch; should an
		// operator end that workflow in between, the pointer would name a version the catalog still has
		// Approved. So the transition goes with the pointer, in its words.
		why := "promoted"
		if prior != 0 {
			why = fmt.Sprintf("promoted, replacing v%d", prior)
		}
		setIn.Promoted = &catalog.Promoted{Actor: actor, Reason: why, At: workflow.Now(ctx).UTC()}
	}
	if err := catalogCall(ctx, m.localCatalog(), catalogActivityOptions, a.SetProductionFenced, setIn).Get(ctx, &applied); err != nil {
		return err
	}
	if !applied {
		return fmt.Errorf("the catalog's production pointer of %s holds a change newer than seq %d; run `starter check`", m.in.Model, seq)
	}
	now := workflow.Now(ctx).UTC()
	m.st.Production, m.st.Seq = version, seq
	m.st.History = append(m.st.History, ProductionChange{Seq: seq, Version: version, Previous: prior, Kind: kind, Actor: actor, Reason: reason, At: now})
	if len(m.st.History) > historyWindow {
		m.st.History = m.st.History[len(m.st.History)-historyWindow:]
	}
	m.startDelivery(ctx, activities.DeploymentEvent{
		SchemaVersion: SchemaVersion, EventID: fmt.Sprintf("%s/%s/v%d/%s", m.in.Model, kind, version, id),
		Kind: kind, Model: m.in.Model, Version: version, Stage: StageProduction, PreviousVersion: prior, At: now,
	})
	return nil
}

// startDelivery delivers ev in the background; a newer switch supersedes a delivery still pending.
func (m *modelWF) startDelivery(ctx workflow.Context, ev activities.DeploymentEvent) {
	if d := m.st.Delivery; d != nil && d.Status == DeliveryPending {
		d.Status = DeliverySuperseded
		d.Error = fmt.Sprintf("superseded by %s of v%d", ev.Kind, ev.Version)
		if m.cancelDelivery != nil {
			m.cancelDelivery()
		}
		m.recordDelivery(ctx, d)
	}
	m.st.Delivery = &Delivery{Event: ev, Status: DeliveryPending}
	m.runDelivery(ctx)
	m.refreshDetails(ctx)
}

// recordDelivery projects a delivery's state into the catalog (best effort: the catalog is where
// `starter check` and `starter status` read it, and the workflow's describe has it too).
func (m *modelWF) recordDelivery(ctx workflow.Context, d *Delivery) {
	opts := workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 20},
	}
	row := catalog.Delivery{Model: m.in.Model, EventID: d.Event.EventID, Version: d.Event.Version, Kind: d.Event.Kind,
		Previous: d.Event.PreviousVersion, Status: d.Status, Error: d.Error, At: d.Event.At}
	if err := catalogCall(ctx, m.localCatalog(), opts, a.RecordDelivery, row).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("delivery state not recorded in the catalog", "event", d.Event.EventID, "error", err)
	}
}

// runDelivery runs the pending delivery in a coroutine of its own (again after continue-as-new).
func (m *modelWF) runDelivery(ctx workflow.Context) {
	d := m.st.Delivery
	if d == nil || d.Status != DeliveryPending {
		return
	}
	dctx, cancel := workflow.WithCancel(m.root)
	m.cancelDelivery = cancel
	workflow.Go(dctx, func(gctx workflow.Context) {
		m.recordDelivery(gctx, d)
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(gctx, deliveryActivityOptions), a.NotifyDeployment, d.Event).Get(gctx, nil)
		if d.Status != DeliveryPending {
			return // superseded meanwhile
		}
		at := workflow.Now(m.root).UTC()
		d.At = &at
		var appErr *temporal.ApplicationError
		switch {
		case err == nil:
			d.Status = DeliveryDelivered
		case errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeRefusedByReceiver:
			d.Status, d.Error = DeliveryRefused, rootMessage(err)
		default:
			d.Status, d.Error = DeliveryFailed, rootMessage(err)
		}
		m.refreshDetails(gctx)
		// Not gctx itself: a newer switch cancels it, and the outcome must still be written.
		nctx, _ := workflow.NewDisconnectedContext(gctx)
		m.recordDelivery(nctx, d)
	})
}

// redeliver sends the last switch's deployment event again (after a refusal or a failure).
func (m *modelWF) redeliver(ctx workflow.Context, req RedeliverRequest) (Delivery, error) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	d := m.st.Delivery
	if d == nil {
		return Delivery{}, refused("model %q has no deployment event to redeliver", m.in.Model)
	}
	if d.Status == DeliveryPending {
		return *d, nil
	}
	d.Status, d.Error, d.At = DeliveryPending, "", nil
	d.Attempts++
	m.runDelivery(ctx)
	m.refreshDetails(ctx)
	return *d, nil
}

// decodeJSON and encodeJSON are encoding/json on plain structs, which is deterministic; workflowcheck
// cannot see through its reflection.
//
//workflowcheck:ignore
func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

// encodeJSON: see decodeJSON. An unencodable value is recorded as its error.
//
//workflowcheck:ignore
func encodeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// watchUnknownSignals records every signal sent to the model's workflow, which takes none (its messages
// are updates): a sender who signals "promote" or "approve" here learns nothing from Temporal, but the
// audit shows it.
func (m *modelWF) watchUnknownSignals(ctx workflow.Context) {
	workflow.Go(ctx, func(gctx workflow.Context) {
		for {
			if err := workflow.Await(gctx, func() bool { return len(workflow.GetUnhandledSignalNames(gctx)) > 0 }); err != nil {
				return
			}
			for _, name := range workflow.GetUnhandledSignalNames(gctx) {
				// Reading the channel lists the name among the workflow's signals (the SDK keeps every
				// channel asked for), so it says there that the name is not one.
				desc := descUnknownModel
				if m.v >= modelV3 {
					desc = descUnknownModelV3
				}
				ch := workflow.GetSignalChannelWithOptions(gctx, name, workflow.SignalChannelOptions{Description: desc})
				for {
					var raw RawPayload
					if !ch.ReceiveAsync(&raw) {
						break
					}
					_ = m.refuseSignal(gctx, name, raw.Data)
				}
			}
		}
	})
}

func (m *modelWF) refuseSignal(ctx workflow.Context, name string, payload []byte) error {
	takes := "takes no signals"
	if m.v >= modelV3 {
		takes = "takes only the signal " + SignalRegister
	}
	return m.recordRefusal(ctx, name, "signal", 0, []byte(clip(payload, catalog.MaxRefusalPayload)), fmt.Sprintf(
		"unknown signal %q: the model's workflow %s; its messages are the updates %s, %s and %s",
		clip([]byte(name), 200), takes, UpdateRegister, UpdateRollback, UpdateRedeliver))
}
