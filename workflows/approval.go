package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

// changeApprovalPolicy names the GetVersion branch that introduced approval policies.
const changeApprovalPolicy = "approval-policy"

// policy is the model's policy as copied into this version when it was validated; a later change of the
// model's policy does not reach a decision in flight.
func (w *versionWF) policy() catalog.Policy {
	if w.st.Validation != nil {
		return w.st.Validation.Policy
	}
	return catalog.Policy{}
}

func (w *versionWF) quorum() int {
	if n := w.policy().RequiredApprovals; n > 1 && w.policyV1 {
		return n
	}
	return 1
}

// approvers lists the distinct people whose approvals were accepted.
func (w *versionWF) approvers() []string {
	var out []string
	for _, d := range w.st.Decisions {
		if d.Kind == UpdateApprove && !slices.Contains(out, d.Approver) {
			out = append(out, d.Approver)
		}
	}
	return out
}

func (w *versionWF) rejection() *AcceptedDecision {
	for i := range w.st.Decisions {
		if w.st.Decisions[i].Kind == UpdateReject {
			return &w.st.Decisions[i]
		}
	}
	return nil
}

func (w *versionWF) decided() bool {
	if !w.policyV1 {
		return w.st.Pending != nil
	}
	return w.rejection() != nil || len(w.approvers()) >= w.quorum()
}

func (w *versionWF) setDecisionHandlers(ctx workflow.Context) error {
	if w.bv >= versionV1 {
		for _, kind := range []string{UpdateApprove, UpdateReject} {
			kind := kind
			// Every decision reaches the handler, which checks it as the signal of the same name is
			// checked and audits a refusal; the validator would refuse without a trace. Only a message
			// too large to record is refused before (converter.go, checkMessageSize).
			if err := workflow.SetUpdateHandlerWithOptions(ctx, kind,
				func(ctx workflow.Context, raw RawPayload) (DecisionResult, error) {
					return w.onDecisionUpdateV1(ctx, kind, raw)
				},
				workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, raw RawPayload) error {
					return checkRawMessage(raw, MaxSmallRequestBytes)
				}, Description: w.decisionDescription(kind, false)}); err != nil {
				return err
			}
		}
		// As for decisions, every verdict reaches the handler, so that a refused one is audited too.
		return workflow.SetUpdateHandlerWithOptions(ctx, UpdateVerdict, w.onVerdictV1,
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, raw RawPayload) error {
				return checkRawMessage(raw, MaxSmallRequestBytes)
			}, Description: descVerdict})
	}
	for _, kind := range []string{UpdateApprove, UpdateReject} {
		kind := kind
		err := workflow.SetUpdateHandlerWithOptions(ctx, kind,
			func(ctx workflow.Context, d Decision) (DecisionResult, error) {
				w.accept(ctx, kind, "update", d)
				if w.policyV1 {
					w.recordDecision(ctx, kind, "update", d, true, "accepted")
				}
				// Answer once the stage moved when this decision completes it, so the caller sees the stage
				// it led to; an approval short of the quorum answers at once.
				var err error
				if w.decided() {
					err = workflow.Await(ctx, func() bool { return w.st.Stage != StagePendingApproval })
				}
				return DecisionResult{SchemaVersion: SchemaVersion, Stage: w.decisionStage(), Approvals: len(w.approvers()), Required: w.quorum()}, err
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, d Decision) error {
				return w.checkDecision(ctx, kind, d)
			}, Description: w.decisionDescription(kind, false)})
		if err != nil {
			return err
		}
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateVerdict, w.onVerdict,
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, v Verdict) error {
			_, err := w.checkVerdict(ctx, v)
			return err
		}, Description: descVerdict})
}

// decisionStage is the stage the decision led to (Approved or Rejected), not whatever the version has
// reached by the time the caller is answered, so the answer does not depend on timing.
func (w *versionWF) decisionStage() string {
	for i := len(w.st.History) - 1; i >= 0; i-- {
		if w.st.History[i].From == StagePendingApproval {
			return w.st.History[i].To
		}
	}
	return w.st.Stage
}

// checkDecision says why a decision cannot be taken, in words for the person who sent it.
func (w *versionWF) checkDecision(ctx workflow.Context, kind string, d Decision) error {
	name := fmt.Sprintf("%s v%d", w.in.Model, w.in.Version)
	if w.st.Stage != StagePendingApproval {
		return fmt.Errorf("%s is not waiting for a decision: its stage is %s", name, w.st.Stage)
	}
	if !w.policyV1 && w.st.Pending != nil {
		return fmt.Errorf("%s already has a decision being recorded (%s by %s)", name, w.st.Pending.Kind, w.st.Pending.Approver)
	}
	if strings.TrimSpace(d.Approver) == "" {
		return errors.New("a decision needs an approver (who decides)")
	}
	if w.bv >= versionV1 && (strings.TrimSpace(d.Approver) != d.Approver || strings.ContainsFunc(d.Approver, unicode.IsControl)) {
		// "carol " is carol: a name that differs only by spaces or invisible characters would beat the
		// self-approval rule and count twice towards a quorum.
		return fmt.Errorf("approver %q must not start or end with spaces or contain control characters", clip([]byte(d.Approver), MaxActorBytes))
	}
	if len(d.Approver) > MaxActorBytes || len(d.Comment) > MaxCommentBytes {
		return fmt.Errorf("approver (max %d bytes) or comment (max %d bytes) is too long", MaxActorBytes, MaxCommentBytes)
	}
	if !w.policyV1 {
		return nil
	}
	if w.decided() {
		return fmt.Errorf("%s is already decided; its stage is being recorded", name)
	}
	if w.st.Deadline != nil && !workflow.Now(ctx).Before(*w.st.Deadline) {
		return fmt.Errorf("the approval deadline of %s passed at %s", name, w.st.Deadline.Format(time.RFC3339))
	}
	if d.Digest != w.st.ManifestDigest {
		if d.Digest == "" {
			return fmt.Errorf("the decision must name the manifest digest it was made on: %s has %s", name, w.st.ManifestDigest)
		}
		shown := d.Digest
		if w.bv >= versionV1 {
			shown = clip([]byte(d.Digest), 100)
		}
		return fmt.Errorf("the decision names digest %s but %s has manifest digest %s", shown, name, w.st.ManifestDigest)
	}
	p := w.policy()
	if len(p.AllowedApprovers) > 0 && !slices.Contains(p.AllowedApprovers, d.Approver) {
		return fmt.Errorf("%s is not an allowed approver of model %s (allowed: %s)", d.Approver, w.in.Model, strings.Join(p.AllowedApprovers, ", "))
	}
	if kind == UpdateApprove {
		same := func(a, b string) bool { return a == b }
		if w.bv >= versionV1 {
			same = strings.EqualFold // Alice is alice
		}
		if !p.AllowSelfApproval && same(d.Approver, w.in.Request.RegisteredBy) {
			return fmt.Errorf("%s registered %s and may not approve it (the policy forbids self-approval)", d.Approver, name)
		}
		have := w.approvers()
		if slices.ContainsFunc(have, func(a string) bool { return same(a, d.Approver) }) {
			return fmt.Errorf("%s already approved %s; %d of %d distinct approvals so far", d.Approver, name, len(have), w.quorum())
		}
	}
	return nil
}

func (w *versionWF) accept(ctx workflow.Context, kind, via string, d Decision) {
	ad := AcceptedDecision{Kind: kind, Via: via, Approver: d.Approver, Comment: d.Comment, At: workflow.Now(ctx).UTC()}
	if !w.policyV1 {
		w.st.Pending = &ad
		return
	}
	w.st.Decisions = append(w.st.Decisions, ad)
	w.refreshDetails(ctx)
}

// refuse records a message the workflow did not act on, with why: in the describe query always, and
// in the catalog's decisions audit once approval policies are in force.
func (w *versionWF) refuse(ctx workflow.Context, name, via, reason string, payload []byte, d Decision) {
	if w.bv >= versionV1 {
		w.keepRefused(ctx, RejectedMessage{Name: name, Via: via, Reason: reason, Payload: clip(payload, 512), At: workflow.Now(ctx).UTC()})
		w.queueDecision(ctx, w.decisionRow(ctx, name, via, d, false, reason))
		return
	}
	if len(payload) > 512 {
		payload = payload[:512]
	}
	w.st.Rejected = append(w.st.Rejected, RejectedMessage{Name: name, Via: via, Reason: reason, Payload: string(payload), At: workflow.Now(ctx).UTC()})
	w.refreshDetails(ctx)
	if w.policyV1 {
		w.recordDecision(ctx, name, via, d, false, reason)
	}
}

// recordDecision appends to the catalog's decisions audit. A failure to write it must not block the
// lifecycle, so it is retried for a while and then logged.
func (w *versionWF) recordDecision(ctx workflow.Context, kind, via string, d Decision, accepted bool, reason string) {
	if w.bv >= versionV1 {
		w.queueDecision(ctx, w.decisionRow(ctx, kind, via, d, accepted, reason))
		return
	}
	w.st.DecisionCount++
	row := catalog.Decision{
		Model: w.in.Model, Version: w.in.Version, ID: fmt.Sprintf("%06d", w.st.DecisionCount), Kind: kind, Via: via,
		Approver: d.Approver, Comment: d.Comment, Digest: d.Digest, Accepted: accepted, Reason: reason, At: workflow.Now(ctx).UTC(),
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 20},
	})
	if err := workflow.ExecuteActivity(actx, a.RecordDecision, row).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("decision not recorded in the catalog", "id", row.ID, "error", err)
	}
}

func (w *versionWF) onSignal(ctx workflow.Context, name string, raw RawPayload) {
	d, err := w.decode(raw)
	if err == nil {
		err = w.checkDecision(ctx, name, d)
	}
	if err != nil {
		w.refuse(ctx, name, "signal", err.Error(), raw.Data, d)
		return
	}
	w.accept(ctx, name, "signal", d)
	if w.policyV1 {
		w.recordDecision(ctx, name, "signal", d, true, "accepted")
	}
}

// awaitDecision waits in PendingApproval for a reject, or for the quorum of approvals, until the
// approval deadline, sending reminders on the policy's interval.
func (w *versionWF) awaitDecision(ctx workflow.Context) (done bool, err error) {
	p := w.policy()
	for {
		var timeout time.Duration
		now := workflow.Now(ctx)
		if w.st.Deadline != nil {
			// The deadline is absolute, so it holds across continue-as-new and worker restarts.
			if timeout = w.st.Deadline.Sub(now); timeout <= 0 {
				timeout = time.Nanosecond
			}
		}
		var remind time.Time
		interval := time.Duration(p.ReminderIntervalSeconds) * time.Second
		next := w.nextReminder(now, interval)
		if w.policyV1 && p.ReminderIntervalSeconds > 0 && w.st.PendingSince != nil {
			remind = w.st.PendingSince.Add(time.Duration(next) * interval)
			if r := remind.Sub(now); timeout == 0 || r < timeout {
				timeout = max(r, time.Nanosecond)
			}
		}
		ok, err := w.waitUntil(ctx, w.decided, timeout)
		if err != nil {
			return false, err
		}
		if ok {
			break
		}
		if w.st.Deadline != nil && !workflow.Now(ctx).Before(*w.st.Deadline) {
			return true, w.transition(ctx, StageRejected, "registry", "expired: the approval deadline passed at "+w.st.Deadline.Format(time.RFC3339))
		}
		if w.bv >= versionV1 {
			w.st.Reminders = next - 1
		}
		w.sendReminder(ctx)
	}
	var d AcceptedDecision
	if w.policyV1 {
		if r := w.rejection(); r != nil {
			d = *r
		} else {
			d = w.st.Decisions[len(w.st.Decisions)-1]
		}
	} else {
		d = *w.st.Pending
		w.st.Pending = nil
		w.st.Decisions = append(w.st.Decisions, d)
	}
	reason := map[string]string{UpdateApprove: "approved", UpdateReject: "rejected"}[d.Kind]
	if d.Kind == UpdateApprove && w.quorum() > 1 {
		reason = fmt.Sprintf("approved by %s", strings.Join(w.approvers(), ", "))
	}
	if d.Comment != "" {
		reason += ": " + d.Comment
	}
	if d.Kind == UpdateReject {
		return true, w.transition(ctx, StageRejected, d.Approver, reason)
	}
	return false, w.transition(ctx, StageApproved, d.Approver, reason)
}

// sendReminder tells the model's webhooks that the version still waits for a decision. Reminders are
// best effort: a webhook that is down does not hold up the lifecycle.
func (w *versionWF) sendReminder(ctx workflow.Context) {
	w.st.Reminders++
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumAttempts: 5},
	})
	ev := activities.DeploymentEvent{
		SchemaVersion: SchemaVersion, EventID: fmt.Sprintf("%s/v%d/reminder/%d", w.in.Model, w.in.Version, w.st.Reminders),
		Kind: "reminder", Model: w.in.Model, Version: w.in.Version, Stage: StagePendingApproval, At: workflow.Now(ctx).UTC(),
	}
	if err := workflow.ExecuteActivity(actx, a.NotifyDeployment, ev).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("approval reminder not delivered", "reminder", w.st.Reminders, "error", err)
	}
}

// maxDecisionBytes bounds a decision's payload: its fields have their own limits far below, and decoding
// megabytes of JSON per message would make a storm of them slow enough to stall the workflow.
const maxDecisionBytes = 64 << 10

func (w *versionWF) decode(raw RawPayload) (Decision, error) {
	if w.bv >= versionV1 && len(raw.Data) > maxDecisionBytes {
		return Decision{}, fmt.Errorf("payload of %d bytes is not a decision: a decision is at most %d bytes (approver %d, comment %d)",
			len(raw.Data), maxDecisionBytes, MaxActorBytes, MaxCommentBytes)
	}
	return decodeDecision(raw, w.policyV1)
}
