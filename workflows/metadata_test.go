package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

// The SDK's built-in query that serves user metadata (what the Temporal UI and `temporal workflow
// metadata` read).
const metadataQuery = "__temporal_workflow_metadata"

func metadataOf(t *testing.T, env *testsuite.TestWorkflowEnvironment) *sdkpb.WorkflowMetadata {
	t.Helper()
	v, err := env.QueryWorkflow(metadataQuery)
	require.NoError(t, err)
	var md sdkpb.WorkflowMetadata
	require.NoError(t, v.Get(&md))
	require.LessOrEqual(t, len(md.GetCurrentDetails()), maxDetailsBytes)
	return &md
}

func defNames(defs []*sdkpb.WorkflowInteractionDefinition) []string {
	var out []string
	for _, d := range defs {
		out = append(out, d.GetName())
	}
	return out
}

// requireInternalLast checks that a human who opens the list of a workflow's handlers (sorted by name,
// as the SDK sends them) meets every public handler before any internal one.
func requireInternalLast(t *testing.T, defs []*sdkpb.WorkflowInteractionDefinition) {
	t.Helper()
	internal := false
	for _, d := range defs {
		if strings.HasPrefix(d.GetDescription(), "INTERNAL") {
			internal = true
		} else {
			require.False(t, internal, "public handler %s is listed after an internal one: %v", d.GetName(), defNames(defs))
		}
	}
}

func description(defs []*sdkpb.WorkflowInteractionDefinition, name string) string {
	for _, d := range defs {
		if d.GetName() == name {
			return d.GetDescription()
		}
	}
	return ""
}

// A version's current details follow it through every stage: the headline with the champion metric,
// while it waits for approval the quorum so far, who may still decide and the exact commands, then who
// approved it and where it is; the handlers' descriptions put the human decisions first and mark the
// internal ones.
func TestVersionCurrentDetailsEveryStage(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pinBehaviour(env, 1)
	env.SetDataConverter(NewDataConverter())
	env.RegisterWorkflow(ModelVersionWorkflow)
	env.RegisterActivity(&activities.Activities{})
	env.OnActivity(a.RecordTransition, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.RecordDecisions, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.RecordRefusal, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.StoreArtifacts, mock.Anything, mock.Anything).After(time.Minute).Return(activities.StoreArtifactsResult{
		ManifestURI: "file:///m.json", ManifestDigest: digest, Files: 1, TotalBytes: 3}, nil)
	champion := 0.95
	policy := catalog.Policy{ChampionMetric: "accuracy", ChampionTolerance: 0.01, RequiredApprovals: 2,
		AllowedApprovers: []string{"alice", "bob", "carol", "trainer"}, ApprovalTimeoutSeconds: 72 * 3600}
	env.OnActivity(a.Validate, mock.Anything, mock.Anything).After(time.Minute).Return(activities.ValidationReport{
		Passed: true, Policy: policy, ChampionVersion: 5, ChampionValue: &champion,
		Checks: []activities.ValidationCheck{{Name: "integrity", Passed: true}, {Name: "champion accuracy", Passed: true}}}, nil)
	// The model's workflow takes its time to switch production.
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).After(10*time.Minute).Return(
		json.RawMessage(`{"schemaVersion":1,"model":"fraud","version":1,"previous":5}`), nil)
	in := versionInput()
	in.Request.Metrics = map[string]float64{"auc": 0.97, "accuracy": 0.955, "brier": 0.04, "zz": 1}

	details := map[string]string{}
	var first, second *updateResult
	env.RegisterDelayedCallback(func() { details["registered"] = metadataOf(t, env).GetCurrentDetails() }, 30*time.Second)
	env.RegisterDelayedCallback(func() { details["validating"] = metadataOf(t, env).GetCurrentDetails() }, 90*time.Second)
	env.RegisterDelayedCallback(func() {
		md := metadataOf(t, env)
		details["pending"] = md.GetCurrentDetails()
		def := md.GetDefinition()
		require.Equal(t, VersionWorkflowType, def.GetType())
		// The SDK sorts every list by name; what a human meets first among the updates is approve.
		require.Equal(t, []string{"approve", "archive", "reject", "restore", "verdict"}, defNames(def.GetUpdateDefinitions()))
		require.Equal(t, []string{"approve", "reject"}, defNames(def.GetSignalDefinitions()))
		for _, n := range []string{"archive", "restore"} {
			require.True(t, strings.HasPrefix(description(def.GetUpdateDefinitions(), n), "INTERNAL (sent by the registry's own workflows; refused from anyone else): "), n)
		}
		require.True(t, strings.HasPrefix(description(def.GetQueryDefinitions(), QueryPromotion), "INTERNAL"))
		for _, n := range []string{"approve", "reject", "verdict"} {
			require.NotContains(t, description(def.GetUpdateDefinitions(), n), "INTERNAL", n)
			require.NotEmpty(t, description(def.GetUpdateDefinitions(), n), n)
		}
		require.Contains(t, description(def.GetUpdateDefinitions(), "approve"), `"digest"`)
		require.Contains(t, description(def.GetSignalDefinitions(), "approve"), "only signal")
		require.NotEmpty(t, description(def.GetQueryDefinitions(), QueryDescribe))
		require.NotEmpty(t, description(def.GetQueryDefinitions(), QueryStage))
		first = update(env, UpdateApprove, rawDecision(fmt.Sprintf(`{"approver":"alice","digest":%q}`, digest)))
	}, 3*time.Minute)
	env.RegisterDelayedCallback(func() {
		require.NoError(t, first.completeErr)
		env.SignalWorkflow(SignalApprove, Decision{Approver: "bob", Digest: "sha256:wrong"})
	}, 4*time.Minute)
	env.RegisterDelayedCallback(func() {
		details["one approval"] = metadataOf(t, env).GetCurrentDetails()
		second = update(env, UpdateApprove, rawDecision(fmt.Sprintf(`{"approver":"bob","comment":"ok","digest":%q}`, digest)))
	}, 5*time.Minute)
	env.RegisterDelayedCallback(func() { details["approved"] = metadataOf(t, env).GetCurrentDetails() }, 6*time.Minute)
	env.RegisterDelayedCallback(func() { details["production"] = metadataOf(t, env).GetCurrentDetails() }, 20*time.Minute)
	env.RegisterDelayedCallback(func() { endRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelVersionWorkflow, in)
	require.NoError(t, second.completeErr)

	for k, d := range details {
		t.Logf("%s:\n%s", k, d)
	}
	// Before validation the policy is not known: the first metrics by name.
	require.True(t, strings.HasPrefix(details["registered"], "fraud v1 · Registered · accuracy 0.955, auc 0.97, brier 0.04, 1 more\n"), details["registered"])
	require.Contains(t, details["registered"], "Now: `storing artifacts`")
	require.True(t, strings.HasPrefix(details["validating"], "fraud v1 · Validating · "), details["validating"])
	require.Contains(t, details["validating"], "Now: `validating`")

	p := details["pending"]
	require.True(t, strings.HasPrefix(p, "fraud v1 · PendingApproval · accuracy 0.955 vs 0.95 in production (v5)\n"), p)
	require.Contains(t, p, "0 of the 2 approvals the policy requires.")
	require.Contains(t, p, "May still approve: `alice`, `bob`, `carol`;", "the registrant may not approve")
	require.Contains(t, p, "Deadline ")
	require.Contains(t, p, fmt.Sprintf(`temporal workflow update execute --workflow-id model/fraud/v1 --name approve --input '{"approver":"YOUR-NAME","digest":"%s"}'`, digest))
	require.Contains(t, p, "starter approve --model fraud --version 1 --digest "+digest)
	require.Contains(t, p, "Validation passed (2 checks)")

	o := details["one approval"]
	require.Contains(t, o, "1 of the 2 approvals the policy requires (`alice`)")
	require.Contains(t, o, "May still approve: `bob`, `carol`;")
	require.Contains(t, o, "Refused messages: 1; the last, `approve` by signal: `the decision names digest sha256:wrong")

	require.True(t, strings.HasPrefix(details["approved"], "fraud v1 · Approved · "), details["approved"])
	require.Contains(t, details["approved"], "Approved by `alice`, `bob`")
	require.Contains(t, details["approved"], "Now: `waiting for the model's workflow to switch production`")
	require.NotContains(t, details["approved"], "temporal workflow update execute", "no decision is asked for any more")

	require.True(t, strings.HasPrefix(details["production"], "fraud v1 · Production · "), details["production"])
	require.Contains(t, details["production"], "(`promoted, replacing v5`)")
	require.Contains(t, details["production"], "starter rollback --model fraud")
	require.NotContains(t, details["production"], "Now:")
}

// A version that ends says why, in its last details (what the UI shows of a closed workflow).
func TestVersionCurrentDetailsRejectedAndFailed(t *testing.T) {
	t.Run("rejected", func(t *testing.T) {
		env := newVersionEnvV1(t, &audit{})
		storeOK(env)
		env.OnActivity(a.Validate, mock.Anything, mock.Anything).Return(activities.ValidationReport{
			Passed: false, Policy: catalog.Policy{ChampionMetric: "accuracy"},
			Checks: []activities.ValidationCheck{{Name: "threshold accuracy >= 0.99", Passed: false, Detail: "accuracy = 0.95"}}}, nil)
		env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
		require.NoError(t, env.GetWorkflowError())
		d := metadataOf(t, env).GetCurrentDetails()
		t.Log(d)
		require.True(t, strings.HasPrefix(d, "fraud v1 · Rejected · accuracy 0.95 (nothing in production to compare with)\n"), d)
		require.Contains(t, d, "**Rejected** by `validation`")
		require.Contains(t, d, "`validation failed: threshold accuracy >= 0.99: accuracy = 0.95`")
	})
	t.Run("failed", func(t *testing.T) {
		env := newVersionEnvV1(t, &audit{})
		env.OnActivity(a.StoreArtifacts, mock.Anything, mock.Anything).Return(activities.StoreArtifactsResult{},
			temporal.NewNonRetryableApplicationError("s3://training/nothing has no objects", activities.ErrTypeBadSource, nil))
		env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
		d := metadataOf(t, env).GetCurrentDetails()
		t.Log(d)
		require.True(t, strings.HasPrefix(d, "fraud v1 · Failed · accuracy 0.95\n"), d)
		require.Contains(t, d, "**Failed** at ")
		require.Contains(t, d, "`artifacts could not be stored: s3://training/nothing has no objects")
		require.NotContains(t, d, "Now:", "a version that ended waits on nothing")
	})
}

// Text from outside (names, reasons, URLs) cannot break out of the Markdown it is shown in, cannot
// carry credentials into the UI, and the details stay within a few KB however much was sent.
func TestUserMetadataIsBoundedAndInert(t *testing.T) {
	in := versionInput()
	in.Request.RegisteredBy = "eve`\n# <img src=x onerror=alert(1)>"
	in.Request.SourceRun = "https://ci:hunter2@mlflow.example/runs/8?token=s3cr3t#x"
	in.Request.Source = ArtifactSource{URI: "s3://training/runs/8"}
	in.Request.Metrics = map[string]float64{}
	for i := 0; i < 1000; i++ {
		in.Request.Metrics[fmt.Sprintf("%03d-%s", i, strings.Repeat("m", 190))] = float64(i)
	}
	summary, details := versionStartMetadata(in)
	require.NotContains(t, summary, "\n")
	require.Contains(t, summary, "registered by `eve' # <img src=x onerror=alert(1)>`")
	require.NotContains(t, details, "hunter2")
	require.NotContains(t, details, "s3cr3t")
	require.Contains(t, details, "`https://mlflow.example/runs/8`")
	require.Contains(t, details, "`s3://training/runs/8`")
	require.Contains(t, details, "995 more")
	require.LessOrEqual(t, len(details), maxDetailsBytes)

	w := &versionWF{in: in, policyV1: true, st: VersionState{Stage: StageRejected, History: []StageChange{
		{To: StageRejected, Actor: strings.Repeat("a", 5000), Reason: strings.Repeat("r\n", 5000)}}}}
	for i := 0; i < 20; i++ {
		w.st.Rejected = append(w.st.Rejected, RejectedMessage{Name: "approve", Reason: strings.Repeat("x", 1024)})
	}
	d := w.currentDetails()
	require.LessOrEqual(t, len(d), maxDetailsBytes)
	require.Equal(t, 1, strings.Count(d, "\n\n**Rejected**"), "the reason stays on its line")

	require.Equal(t, `f1\_score \<b\>`, plain("f1_score <b>", 60))
	require.Equal(t, "`it's`", code("it`s", 60))
	require.Equal(t, "`ab…`", code("abc", 2))
	require.Equal(t, "(not shown: it may carry credentials)", withoutCredentials("user@host:path"))

	ms, md := ModelStartMetadata("fraud")
	require.Equal(t, "fraud · model registry: mints versions, owns the production pointer", ms)
	require.Contains(t, md, `temporal workflow list --query 'ModelName="fraud" AND ModelStage="PendingApproval"'`)
}

// The model's current details: what is in production and since when, the switch running and those
// waiting behind it, and the last deployment event, with what to do when it was refused.
func TestModelCurrentDetails(t *testing.T) {
	fc := &fakeCatalog{snap: catalog.ModelSnapshot{Exists: true, LastVersion: 11, Production: 7, Seq: 12, Archived: []int{5, 6}},
		promotion: map[int]PromotionInfo{10: approved(), 11: approved()}, updateDelay: time.Minute}
	refuse := true
	fc.notifyErr = func(activities.DeploymentEvent) error {
		if refuse {
			return temporal.NewNonRetryableApplicationError("webhook http://hooks.example/deploy answered 410 Gone", activities.ErrTypeRefusedByReceiver, nil)
		}
		return nil
	}
	env := newModelEnvV1(t, fc)
	details := map[string]string{}
	var p10, p11 *updateResult
	env.RegisterDelayedCallback(func() {
		md := metadataOf(t, env)
		details["rebuilt"] = md.GetCurrentDetails()
		def := md.GetDefinition()
		require.Equal(t, []string{"redeliver", "register", "rollback", "system:promote"}, defNames(def.GetUpdateDefinitions()))
		require.True(t, strings.HasPrefix(description(def.GetUpdateDefinitions(), UpdatePromote), "INTERNAL (sent by the registry's own workflows; refused from anyone else): "))
		requireInternalLast(t, def.GetUpdateDefinitions())
		require.True(t, strings.HasPrefix(description(def.GetQueryDefinitions(), QuerySwitch), "INTERNAL"))
		for _, n := range []string{"redeliver", "register", "rollback"} {
			require.NotContains(t, description(def.GetUpdateDefinitions(), n), "INTERNAL", n)
		}
		require.Equal(t, []string{"register"}, defNames(def.GetSignalDefinitions()), "since modelV3 register is also a signal")
		require.Equal(t, descRegisterSignal, description(def.GetSignalDefinitions(), SignalRegister))
		require.Equal(t, descRegistration, description(def.GetQueryDefinitions(), QueryRegistration))
		p10 = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 10, Actor: "alice"})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		p11 = update(env, UpdatePromote, PromoteRequest{SchemaVersion: 1, Version: 11, Actor: "bob"})
		env.SignalWorkflow("approve", map[string]string{"approver": "mallory"})
	}, 10*time.Second)
	env.RegisterDelayedCallback(func() { details["switching"] = metadataOf(t, env).GetCurrentDetails() }, 30*time.Second)
	env.RegisterDelayedCallback(func() {
		md := metadataOf(t, env)
		details["refused"] = md.GetCurrentDetails()
		require.Equal(t, []string{"approve", "register"}, defNames(md.GetDefinition().GetSignalDefinitions()), "the SDK lists every signal channel read")
		require.True(t, strings.HasPrefix(description(md.GetDefinition().GetSignalDefinitions(), "approve"), "NOT A SIGNAL OF THIS WORKFLOW"))
		refuse = false
		update(env, UpdateRedeliver, RedeliverRequest{SchemaVersion: 1})
	}, 10*time.Minute)
	env.RegisterDelayedCallback(func() { details["delivered"] = metadataOf(t, env).GetCurrentDetails() }, 11*time.Minute)
	env.RegisterDelayedCallback(func() { endModelRun(env) }, time.Hour)
	env.ExecuteWorkflow(ModelWorkflow, ModelInput{SchemaVersion: SchemaVersion, Model: "fraud"})
	require.NoError(t, p10.completeErr)
	require.NoError(t, p11.completeErr)

	for k, d := range details {
		t.Logf("%s:\n%s", k, d)
	}
	require.True(t, strings.HasPrefix(details["rebuilt"], "fraud · production v7 (seq 12)\n"), details["rebuilt"])
	require.Contains(t, details["rebuilt"], "- Versions: v1 to v11")
	require.Contains(t, details["rebuilt"], "- Archived (latest first): v6, v5")
	require.Contains(t, details["rebuilt"], `temporal workflow list --query 'ModelName="fraud" AND ModelStage="PendingApproval"'`)

	sw := details["switching"]
	require.True(t, strings.HasPrefix(sw, "fraud · production v7 (seq 12) · 1 waiting to switch\n"), sw)
	require.Contains(t, sw, "- Switching now: promote v10, archiving v7")
	require.Contains(t, sw, "- Waiting for the switch in progress: promote v11")

	r := details["refused"]
	require.True(t, strings.HasPrefix(r, "fraud · production v11 (seq 14) · last delivery refused\n"), r)
	require.Contains(t, r, "- Production: **v11** since ")
	require.Contains(t, r, "promote replacing v10 by `bob`")
	require.Contains(t, r, "answered 410 Gone")
	require.Contains(t, r, "Send it again: `starter redeliver --model fraud`")
	require.NotContains(t, r, "Switching now")

	require.True(t, strings.HasPrefix(details["delivered"], "fraud · production v11 (seq 14) · last delivery delivered\n"), details["delivered"])
	require.NotContains(t, details["delivered"], "Send it again")
}

// The details of the stages the lifecycle test above does not reach: validators pending, Archived, and
// a run from before approval policies, whose decisions carry no digest.
func TestVersionCurrentDetailsOtherStages(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	w := &versionWF{in: versionInput(), policyV1: true, st: VersionState{Stage: StageValidating, ManifestDigest: digest, Gates: []Gate{
		{Name: "ci", Token: "secret-token-1", Status: GateRequested, Deadline: at},
		{Name: "load", Token: "secret-token-2", Status: GateFailed, Detail: "p99 regressed"},
	}}}
	d := w.currentDetails()
	require.Contains(t, d, "- `ci`: requested, verdict due by 2026-11-26T10:00:00Z")
	require.Contains(t, d, "- `load`: failed (`p99 regressed`)")
	require.Contains(t, d, "`verdict` update")
	require.NotContains(t, d, "secret-token", "a gate's token is a secret between the registry and the validator")

	w.st = VersionState{Stage: StageArchived, History: []StageChange{{To: StageArchived, Reason: "replaced by v2 (promote)", At: at}}}
	d = w.currentDetails()
	require.Contains(t, d, "Archived since 2026-11-26T10:00:00Z (`replaced by v2 (promote)`)")
	require.Contains(t, d, "`starter rollback --model fraud --to 1`")

	w = &versionWF{in: versionInput(), policyV1: false, st: VersionState{Stage: StagePendingApproval, ManifestDigest: digest}}
	d = w.currentDetails()
	require.Contains(t, d, `--name approve --input '{"approver":"YOUR-NAME"}'`, "before approval policies a digest was refused")
	require.NotContains(t, d, "--digest")
	require.NotContains(t, w.decisionDescription(UpdateApprove, false), "digest")
	require.Contains(t, w.decisionDescription(SignalReject, true), "only signal")
}

func BenchmarkVersionCurrentDetails(b *testing.B) {
	champion := 0.95
	w := &versionWF{in: versionInput(), policyV1: true, st: VersionState{Stage: StagePendingApproval, ManifestDigest: digest,
		Validation: &activities.ValidationReport{Passed: true, ChampionVersion: 5, ChampionValue: &champion,
			Policy: catalog.Policy{ChampionMetric: "accuracy", RequiredApprovals: 2, AllowedApprovers: []string{"alice", "bob"}}},
		RejectedTotal: 5000, Rejected: []RejectedMessage{{Name: "approve", Via: "signal", Reason: strings.Repeat("x", 1024)}}}}
	for b.Loop() {
		_ = w.currentDetails()
	}
}
