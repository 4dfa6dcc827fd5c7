package workflows

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
)

// Gate statuses.
const (
	GateRequested = "requested"
	GatePassed    = "passed"
	GateFailed    = "failed"
	GateExpired   = "expired"
)

// runGates sends a validation request to each external validator of the policy and waits durably for
// their verdicts (the verdict update), each until its own deadline. Every verdict joins the validation
// report as a check; a validator that cannot be reached or never answers fails its check.
func (w *versionWF) runGates(ctx workflow.Context) error {
	p := w.policy()
	now := workflow.Now(ctx).UTC()
	for _, v := range p.Validators {
		var token string
		// The token is random and must stay the same on replay, so it is recorded as a side effect.
		if err := workflow.SideEffect(ctx, func(workflow.Context) any {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			return hex.EncodeToString(b)
		}).Get(&token); err != nil {
			return err
		}
		w.st.Gates = append(w.st.Gates, Gate{Name: v.Name, URL: v.URL, Token: token, Status: GateRequested,
			Deadline: now.Add(time.Duration(v.TimeoutSeconds) * time.Second)})
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
	for i := range w.st.Gates {
		g := &w.st.Gates[i]
		req := activities.ValidationRequest{
			SchemaVersion: SchemaVersion, Validator: g.Name, URL: g.URL, Model: w.in.Model, Version: w.in.Version,
			WorkflowID: VersionWorkflowID(w.in.Model, w.in.Version), ManifestURI: w.st.ManifestURI,
			ManifestDigest: w.st.ManifestDigest, Token: g.Token, Deadline: g.Deadline,
		}
		if err := workflow.ExecuteActivity(actx, a.RequestValidation, req).Get(ctx, nil); err != nil {
			at := workflow.Now(ctx).UTC()
			g.Status, g.Detail, g.At = GateFailed, "the validation request could not be delivered: "+rootMessage(err), &at
		}
	}
	w.refreshDetails(ctx)
	return w.awaitGates(ctx)
}

// awaitGates waits for the gates' verdicts (or deadlines) and adds them to the validation report. It is
// where a run continues as new while validators take their time (versionV1), and where the next run
// resumes.
func (w *versionWF) awaitGates(ctx workflow.Context) error {
	for {
		pending := false
		var next time.Time
		for _, g := range w.st.Gates {
			if g.Status == GateRequested {
				pending = true
				if next.IsZero() || g.Deadline.Before(next) {
					next = g.Deadline
				}
			}
		}
		if !pending {
			break
		}
		timeout := max(next.Sub(workflow.Now(ctx)), time.Nanosecond)
		if _, err := w.waitUntil(ctx, func() bool { return !w.gatesPending(next) }, timeout); err != nil {
			return err
		}
		now := workflow.Now(ctx).UTC()
		for i := range w.st.Gates {
			g := &w.st.Gates[i]
			if g.Status == GateRequested && !now.Before(g.Deadline) {
				g.Status, g.At = GateExpired, &now
				g.Detail = fmt.Sprintf("no verdict by the deadline %s", g.Deadline.Format(time.RFC3339))
			}
		}
		w.refreshDetails(ctx)
	}
	rep := *w.st.Validation
	rep.Checks = append([]activities.ValidationCheck(nil), rep.Checks...)
	for _, g := range w.st.Gates {
		detail := g.Status
		if g.ReportURL != "" {
			detail += ", report " + g.ReportURL
		}
		if g.Detail != "" {
			detail += ": " + g.Detail
		}
		rep.Checks = append(rep.Checks, activities.ValidationCheck{Name: "validator " + g.Name, Passed: g.Status == GatePassed, Detail: detail})
		rep.Passed = rep.Passed && g.Status == GatePassed
	}
	w.st.Validation = &rep
	return nil
}

// gatesPending reports whether a gate due no later than next still waits for its verdict.
func (w *versionWF) gatesPending(next time.Time) bool {
	for _, g := range w.st.Gates {
		if g.Status == GateRequested && !g.Deadline.After(next) {
			return true
		}
	}
	return false
}

// checkVerdict finds the gate a verdict is for, or says why it is refused.
func (w *versionWF) checkVerdict(ctx workflow.Context, v Verdict) (int, error) {
	name := fmt.Sprintf("%s v%d", w.in.Model, w.in.Version)
	for i, g := range w.st.Gates {
		if g.Name != v.Validator {
			continue
		}
		if g.Token != v.Token {
			return -1, fmt.Errorf("the token does not match the validation request %s sent to %s: is this verdict for another version?", name, g.Name)
		}
		if g.Status != GateRequested {
			return -1, fmt.Errorf("validator %s of %s already has an outcome (%s): the verdict is too late or repeated", g.Name, name, g.Status)
		}
		if w.st.Stage != StageValidating || !workflow.Now(ctx).Before(g.Deadline) {
			return -1, fmt.Errorf("the verdict of %s for %s is too late: its deadline was %s", g.Name, name, g.Deadline.Format(time.RFC3339))
		}
		if len(v.ReportURL) > 2048 || len(v.Detail) > 4096 {
			return -1, fmt.Errorf("reportUrl (max 2048 bytes) or detail (max 4096 bytes) is too long")
		}
		return i, nil
	}
	return -1, fmt.Errorf("%s has no pending validation by %q (stage %s)", name, v.Validator, w.st.Stage)
}

func (w *versionWF) onVerdict(ctx workflow.Context, v Verdict) (DecisionResult, error) {
	i, err := w.checkVerdict(ctx, v)
	if err != nil {
		// The state moved between validation and execution of the update.
		return DecisionResult{}, temporal.NewNonRetryableApplicationError(err.Error(), "Refused", nil)
	}
	now := workflow.Now(ctx).UTC()
	g := &w.st.Gates[i]
	g.Status, g.ReportURL, g.Detail, g.At = GateFailed, v.ReportURL, v.Detail, &now
	if v.Passed {
		g.Status = GatePassed
	}
	comment := g.Status
	if v.ReportURL != "" {
		comment += " " + v.ReportURL
	}
	w.recordDecision(ctx, UpdateVerdict, "update", Decision{Approver: "validator:" + g.Name, Comment: comment, Digest: w.st.ManifestDigest}, true, "verdict "+g.Status)
	w.refreshDetails(ctx)
	return DecisionResult{SchemaVersion: SchemaVersion, Stage: w.st.Stage}, nil
}

// onVerdictV1 decodes a verdict strictly and checks it; a refusal is audited and sent back.
func (w *versionWF) onVerdictV1(ctx workflow.Context, raw RawPayload) (DecisionResult, error) {
	ctx = w.handlerContext(ctx)
	var v Verdict
	err := decodeVerdict(raw)(&v)
	if err == nil {
		_, err = w.checkVerdict(ctx, v)
	}
	if err != nil {
		reason := clip([]byte(err.Error()), 1024)
		w.keepRefused(ctx, RejectedMessage{Name: UpdateVerdict, Via: "update", Reason: reason, Payload: clip(raw.Data, 512), At: workflow.Now(ctx).UTC()})
		w.queueDecision(ctx, w.decisionRow(ctx, UpdateVerdict, "update", Decision{Approver: "validator:" + clip([]byte(v.Validator), 100)}, false, reason))
		return DecisionResult{}, refused("%s", reason)
	}
	return w.onVerdict(ctx, v)
}

// decodeVerdict is the verdict's strict decoder (unknown fields and trailing data refused); see
// decodeDecision.
//
//workflowcheck:ignore
func decodeVerdict(raw RawPayload) func(*Verdict) error {
	return func(v *Verdict) error {
		switch {
		case raw.DecodeError != "":
			return fmt.Errorf("payload does not decode: %s", raw.DecodeError)
		case raw.Encoding != "json/plain":
			return fmt.Errorf("payload encoding %q is not json/plain", raw.Encoding)
		case len(raw.Data) > maxDecisionBytes:
			return fmt.Errorf("payload of %d bytes is not a verdict: a verdict is at most %d bytes", len(raw.Data), maxDecisionBytes)
		}
		dec := json.NewDecoder(bytes.NewReader(raw.Data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf(`payload is not a verdict {"validator": string, "token": string, "passed": bool, "reportUrl": string, "detail": string}: %v`, err)
		}
		if t := bytes.TrimLeft(raw.Data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
			return errors.New("payload is not a verdict: not a JSON object")
		}
		if len(bytes.TrimLeft(raw.Data[dec.InputOffset():], " \t\r\n")) > 0 {
			return errors.New("payload has data after the verdict object")
		}
		return nil
	}
}
