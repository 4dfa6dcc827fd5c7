package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

// Versions of ModelVersionWorkflow's behaviour beyond the approval policy (changeApprovalPolicy),
// recorded at the start of every run.
const (
	changeVersionBehaviour = "version-behaviour"
	versionV0              = workflow.DefaultVersion
	// versionV1: every waiting stage continues as new; state keeps bounded windows; decisions by
	// update and by signal get the same checks and are all audited, early ones refused; unknown signal
	// names are reported; archive and restore must name the model's running switch; a refused promotion
	// rejects the version; reminders missed during an outage are not fired back to back; store and
	// validation outages are retried for a day instead of 20 attempts.
	versionV1 workflow.Version = 1
	// versionV2: stage transitions, decisions and refusals are written to the catalog by local
	// activities (see catalogCall).
	versionV2 workflow.Version = 2
	// versionV3: update handlers work on a context that a cancel request does not cancel, as the main
	// path always has; before, a cancel request made every later archive, restore and decision fail
	// with "canceled" (a decision after it was recorded and acted on all the same).
	versionV3 workflow.Version = 3
	// versionLatest is what a new run records.
	versionLatest = versionV3
)

// Bounds of what a version's workflow keeps in memory since versionV1 (the catalog keeps everything).
const (
	rejectedWindow     = 20
	stageHistoryWindow = 50
	// Continue as new once the history holds this many bytes, whatever the event count: a few signals
	// near Temporal's 2 MB payload limit must not carry the history to its 50 MB limit.
	maxHistoryBytes = 8 << 20
	auditBatch      = 200
)

// errContinueAsNew is returned by waitUntil when the run must continue as new before it goes on waiting.
var errContinueAsNew = errors.New("continue as new")

// storeActivityOptionsV1 rides out store and catalog outages for a day (README, "Limits") instead of
// failing the version after 20 attempts.
var storeActivityOptionsV1 = workflow.ActivityOptions{
	StartToCloseTimeout:    6 * time.Hour,
	ScheduleToCloseTimeout: 24 * time.Hour,
	HeartbeatTimeout:       30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval: 2 * time.Second, MaximumInterval: time.Minute,
		NonRetryableErrorTypes: []string{activities.ErrTypeBadSource},
	},
}

func (w *versionWF) storeOptions() workflow.ActivityOptions {
	if w.bv >= versionV1 {
		return storeActivityOptionsV1
	}
	return storeActivityOptions
}

// shouldContinueAsNew: the history is long or large, and nothing is in flight that the next run could
// not pick up.
func (w *versionWF) shouldContinueAsNew(ctx workflow.Context) bool {
	if w.bv < versionV1 {
		return false
	}
	info := workflow.GetInfo(ctx)
	long := info.GetCurrentHistoryLength() >= w.maxEvents() || info.GetCurrentHistorySize() >= maxHistoryBytes || info.GetContinueAsNewSuggested()
	// Under a steady stream of messages the audit queue is never empty, so it is carried across (when
	// small enough) rather than waited for.
	return long && !w.busy && w.auditBytes() <= maxCarriedAuditBytes && workflow.AllHandlersFinished(ctx)
}

// maxCarriedAuditBytes bounds the audit rows a continue-as-new carries; a larger queue is written first.
const maxCarriedAuditBytes = 256 << 10

// auditBytes is the size of the audit queue, kept as a running total: it is asked on every event while
// the history is long, and a storm queues thousands of rows.
func (w *versionWF) auditBytes() int { return w.auditSize }

func decisionBytes(d catalog.Decision) int {
	return 200 + len(d.Approver) + len(d.Comment) + len(d.Digest) + len(d.Reason)
}

func refusalBytes(r catalog.Refusal) int { return 200 + len(r.Name) + len(r.Reason) + len(r.Payload) }

func (w *versionWF) maxEvents() int {
	if w.in.MaxHistoryEvents > 0 {
		return w.in.MaxHistoryEvents
	}
	return defaultMaxHistoryEvents
}

func (w *versionWF) continueAsNew(ctx workflow.Context) error {
	w.drainSignals(ctx)
	w.continuing = true
	next := w.in
	st := w.st
	next.State = &st
	next.PendingAudit, next.PendingRefusals = slices.Clone(w.audit), slices.Clone(w.refusalsOut)
	next.GateTokens = nil
	for _, g := range w.st.Gates {
		if next.GateTokens == nil {
			next.GateTokens = map[string]string{}
		}
		next.GateTokens[g.Name] = g.Token
	}
	return workflow.NewContinueAsNewError(ctx, ModelVersionWorkflow, next)
}

// watchSignals reads approve, reject and misnamed signals as they arrive, in every stage, so a decision
// sent too early is refused (and audited) at once rather than buffered and applied later.
func (w *versionWF) watchSignals(ctx workflow.Context) {
	approve, reject := workflow.GetSignalChannel(ctx, SignalApprove), workflow.GetSignalChannel(ctx, SignalReject)
	workflow.Go(ctx, func(gctx workflow.Context) {
		for {
			if err := workflow.Await(gctx, func() bool {
				return approve.Len() > 0 || reject.Len() > 0 || len(workflow.GetUnhandledSignalNames(gctx)) > 0
			}); err != nil {
				return
			}
			w.drainSignals(gctx)
		}
	})
}

// drainUnknownSignals records every signal sent under a name this workflow does not take (a typo such as
// "aprove" would otherwise sit unread until the run ends, and the sender would never know).
func (w *versionWF) drainUnknownSignals(ctx workflow.Context) {
	for _, name := range workflow.GetUnhandledSignalNames(ctx) {
		// Reading the channel lists the name among the workflow's signals (the SDK keeps every channel
		// asked for), so it says there that the name is not one.
		ch := workflow.GetSignalChannelWithOptions(ctx, name, workflow.SignalChannelOptions{Description: descUnknownVersion})
		for {
			var raw RawPayload
			if !ch.ReceiveAsync(&raw) {
				break
			}
			reason := fmt.Sprintf("unknown signal %q: this workflow takes the signals %q and %q", name, SignalApprove, SignalReject)
			w.keepRefused(ctx, RejectedMessage{Name: name, Via: "signal", Reason: reason, Payload: clip(raw.Data, 512), At: workflow.Now(ctx).UTC()})
			w.queueRefusal(ctx, name, "signal", reason, raw.Data)
		}
	}
}

func clip(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// keepRefused keeps a bounded window of refused messages in state; the catalog keeps them all.
func (w *versionWF) keepRefused(ctx workflow.Context, r RejectedMessage) {
	// A reason may quote what was sent (an unknown field's name, a wrong digest): what is kept is bounded.
	r.Name, r.Reason = clip([]byte(r.Name), 200), clip([]byte(r.Reason), 1024)
	w.st.RejectedTotal++
	w.st.Rejected = append(w.st.Rejected, r)
	if len(w.st.Rejected) > rejectedWindow {
		w.st.Rejected = w.st.Rejected[len(w.st.Rejected)-rejectedWindow:]
	}
	w.refreshDetails(ctx)
}

// queueRefusal audits a refused message that is not a decision (kind unknown to the decisions table).
func (w *versionWF) queueRefusal(ctx workflow.Context, name, via, reason string, payload []byte) {
	w.st.DecisionCount++
	info := workflow.GetInfo(ctx)
	r := catalog.Refusal{
		WorkflowID: info.WorkflowExecution.ID, ID: fmt.Sprintf("%s/%06d", info.WorkflowExecution.RunID, w.st.DecisionCount),
		Model: w.in.Model, Version: w.in.Version, Name: clip([]byte(name), 200), Via: via, Reason: reason,
		Payload: clip(payload, catalog.MaxRefusalPayload), At: workflow.Now(ctx).UTC(),
	}
	w.refusalsOut = append(w.refusalsOut, r)
	w.auditSize += refusalBytes(r)
	w.kickFlusher(ctx)
}

// queueDecision appends one row to the decisions audit, in order, through the flusher.
func (w *versionWF) queueDecision(ctx workflow.Context, d catalog.Decision) {
	w.audit = append(w.audit, d)
	w.auditSize += decisionBytes(d)
	w.kickFlusher(ctx)
}

// kickFlusher writes queued audit rows in batches, in a coroutine, so that a burst of thousands of
// refused signals costs a few activities instead of one each.
func (w *versionWF) kickFlusher(ctx workflow.Context) {
	if w.flushing {
		return
	}
	w.flushing = true
	workflow.Go(w.root, func(gctx workflow.Context) {
		defer func() { w.flushing = false }()
		opts := workflow.ActivityOptions{
			StartToCloseTimeout: 30 * time.Second,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 20},
		}
		// Rows leave the queue only once written, so the queue is everything not yet in the catalog:
		// what a continue-as-new carries to the next run (writes are idempotent by id).
		for len(w.audit) > 0 || len(w.refusalsOut) > 0 {
			if n := min(len(w.audit), auditBatch); n > 0 {
				batch := slices.Clone(w.audit[:n])
				if err := catalogCall(gctx, w.localCatalog(), opts, a.RecordDecisions, batch).Get(gctx, nil); err != nil {
					workflow.GetLogger(gctx).Error("decisions not recorded in the catalog", "count", n, "error", err)
				}
				for _, d := range w.audit[:n] {
					w.auditSize -= decisionBytes(d)
				}
				w.audit = w.audit[n:]
			}
			for len(w.refusalsOut) > 0 {
				r := w.refusalsOut[0]
				if err := catalogCall(gctx, w.localCatalog(), opts, a.RecordRefusal, r).Get(gctx, nil); err != nil {
					workflow.GetLogger(gctx).Error("refused message not recorded in the catalog", "name", r.Name, "error", err)
				}
				w.auditSize -= refusalBytes(r)
				w.refusalsOut = w.refusalsOut[1:]
			}
		}
	})
}

// auditFlushed waits until every queued audit row is written, so that the trail lists decisions before
// the transition they cause.
func (w *versionWF) auditFlushed(ctx workflow.Context) error {
	return workflow.Await(ctx, func() bool { return len(w.audit) == 0 && len(w.refusalsOut) == 0 && !w.flushing })
}

// decisionRow is the audit row of a decision; what it keeps of a comment is bounded.
func (w *versionWF) decisionRow(ctx workflow.Context, kind, via string, d Decision, accepted bool, reason string) catalog.Decision {
	w.st.DecisionCount++
	return catalog.Decision{
		Model: w.in.Model, Version: w.in.Version,
		ID:   fmt.Sprintf("%s/%06d", workflow.GetInfo(ctx).WorkflowExecution.RunID, w.st.DecisionCount),
		Kind: kind, Via: via, Approver: clip([]byte(d.Approver), MaxActorBytes), Comment: clip([]byte(d.Comment), MaxCommentBytes),
		Digest: clip([]byte(d.Digest), 100), Accepted: accepted, Reason: clip([]byte(reason), 1024), At: workflow.Now(ctx).UTC(),
	}
}

// onDecisionUpdateV1 handles approve and reject updates exactly as the signals of the same name: the
// payload is decoded by the same strict decoder and checked by the same rules, and a refusal is audited
// before it is returned to the sender.
func (w *versionWF) onDecisionUpdateV1(ctx workflow.Context, kind string, raw RawPayload) (DecisionResult, error) {
	ctx = w.handlerContext(ctx)
	d, err := w.decode(raw)
	if err == nil {
		err = w.checkDecision(ctx, kind, d)
	}
	if err != nil {
		reason := clip([]byte(err.Error()), 1024)
		w.refuse(ctx, kind, "update", reason, raw.Data, d)
		return DecisionResult{}, refused("%s", reason)
	}
	w.accept(ctx, kind, "update", d)
	w.recordDecision(ctx, kind, "update", d, true, "accepted")
	var werr error
	if w.decided() {
		werr = workflow.Await(ctx, func() bool { return w.st.Stage != StagePendingApproval })
	}
	return DecisionResult{SchemaVersion: SchemaVersion, Stage: w.decisionStage(), Approvals: len(w.approvers()), Required: w.quorum()}, werr
}

// checkSwitch verifies that an archive or restore request names the production switch the model's
// workflow is running, and that the switch moves this version that way.
func (w *versionWF) checkSwitch(ctx workflow.Context, name string, r ArchiveRequest) error {
	var qr activities.QueryResult
	qctx := workflow.WithActivityOptions(ctx, queryActivityOptions)
	if err := workflow.ExecuteActivity(qctx, a.QueryWorkflow, activities.QueryInput{
		WorkflowID: ModelWorkflowID(w.in.Model), Query: QuerySwitch,
	}).Get(ctx, &qr); err != nil {
		return fmt.Errorf("the model's workflow could not be asked about the switch: %s", rootMessage(err))
	}
	var sw SwitchInfo
	if qr.Status == "Running" {
		if err := decodeJSON(qr.Result, &sw); err != nil {
			return fmt.Errorf("the model's workflow answered its switch query with %s", qr.Result)
		}
	}
	me := w.in.Version
	switch {
	case sw.ID == "":
		return fmt.Errorf("%s is internal: the model's workflow sends it during a production switch, and no switch is running", name)
	case sw.ID != r.SwitchID:
		return fmt.Errorf("%s names switch %q, but the model's workflow is running switch %q", name, r.SwitchID, sw.ID)
	case name == UpdateArchive && sw.Prior != me:
		return fmt.Errorf("switch %s archives v%d, not v%d", sw.ID, sw.Prior, me)
	case name == UpdateRestore && sw.Version != me:
		return fmt.Errorf("switch %s restores v%d, not v%d", sw.ID, sw.Version, me)
	}
	return nil
}

// moveV1 is move for requests that must prove they belong to the model's running switch.
func (w *versionWF) moveV1(ctx workflow.Context, name, from, to string, r ArchiveRequest) (string, error) {
	ctx = w.handlerContext(ctx)
	err := w.checkMove(to)
	if err == nil {
		err = w.checkSwitch(ctx, name, r)
	}
	if err != nil {
		raw := encodeJSON(r)
		reason := fmt.Sprintf("%s refused: %v", name, err)
		w.keepRefused(ctx, RejectedMessage{Name: name, Via: "update", Reason: reason, Payload: clip(raw, 512), At: workflow.Now(ctx).UTC()})
		w.queueRefusal(ctx, name, "update", reason, raw)
		return w.st.Stage, refused("%s", reason)
	}
	return w.move(ctx, from, to, r)
}

// promotionInfo answers the internal promotion query.
func (w *versionWF) promotionInfo() PromotionInfo {
	p := PromotionInfo{Stage: w.st.Stage, ManifestDigest: w.st.ManifestDigest, Approvals: len(w.approvers()),
		Required: w.quorum(), Rejected: w.rejection() != nil}
	p.Approver = w.lastApprover()
	if !w.policyV1 {
		for _, d := range w.st.Decisions {
			if d.Kind == UpdateApprove {
				p.Approvals = 1
			}
		}
	}
	if rep := w.st.Validation; rep != nil {
		p.Validated = rep.Passed
		p.Champion = rep.ChampionVersion
		p.ChampionMetric = rep.Policy.ChampionMetric
		p.LowerIsBetter = rep.Policy.ChampionLowerIsBetter
		p.Tolerance = rep.Policy.ChampionTolerance
		if v, ok := w.in.Request.Metrics[p.ChampionMetric]; ok && p.ChampionMetric != "" {
			p.Value = &v
		}
	}
	return p
}

// nextReminder is the index of the reminder due next: one after the last sent, or, after an outage that
// let several pass, the latest one due, so the missed ones are not fired back to back.
func (w *versionWF) nextReminder(now time.Time, interval time.Duration) int {
	next := w.st.Reminders + 1
	if w.bv >= versionV1 && w.st.PendingSince != nil && interval > 0 {
		if due := int(now.Sub(*w.st.PendingSince) / interval); due > next {
			next = due
		}
	}
	return next
}

// handlerContext is what an update handler works on. The SDK gives a handler a context of the
// workflow's root, which a cancel request cancels; since versionV3 that request stops nothing, as it
// never stopped the main path (see ModelVersionWorkflow).
func (w *versionWF) handlerContext(ctx workflow.Context) workflow.Context {
	if w.bv >= versionV3 {
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	return ctx
}

// lastApprover is who made the last decision (the one that met the quorum), "" before any.
func (w *versionWF) lastApprover() string {
	if n := len(w.st.Decisions); n > 0 {
		return w.st.Decisions[n-1].Approver
	}
	return ""
}
