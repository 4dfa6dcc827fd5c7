// Package check compares the registry's three stores of state — the catalog, the artifact store and the
// workflows — for one model or all of them, and reports every disagreement it finds. It reads only;
// it never repairs anything.
//
// The workflows are the authority for transitions and the catalog is their projection, written by
// activities a moment before the workflow's own state moves on. A version caught mid-transition can
// therefore disagree for an instant: every finding is checked again after a short delay, and only the
// findings that are still there are reported.
package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/workflows"
)

// Kinds of finding. Each names one disagreement; README's `starter check` row lists them.
const (
	// A version's or model's workflow does not exist (never started, or removed by retention).
	KindWorkflowNotFound = "workflow-not-found"
	// A workflow exists but its query (or the description of its execution) failed.
	KindWorkflowQuery = "workflow-query-failed"
	// A workflow has closed (terminated, failed, timed out, canceled, completed) while it should run: a
	// model's workflow always, a version's unless its stage is Rejected or Failed. A closed workflow
	// still answers queries with its last state, so only its execution status shows this.
	KindWorkflowClosed = "workflow-closed"
	// Catalog stage differs from the version workflow's stage.
	KindStage = "stage"
	// Catalog manifest URI or digest differs from the version workflow's.
	KindManifestURI    = "manifest-uri"
	KindManifestDigest = "manifest-digest"
	// The catalog names a manifest digest but the store has no manifest for the version.
	KindManifestMissing = "manifest-missing"
	// The store's manifest digest differs from the catalog's.
	KindManifestMismatch = "manifest-mismatch"
	// A blob listed in the manifest is absent, has another size, or (with Verify) does not hash to its
	// address.
	KindBlobMissing = "blob-missing"
	KindBlobSize    = "blob-size"
	KindBlobCorrupt = "blob-corrupt"
	// The store's archived mark disagrees with the catalog stage.
	KindArchivedMark = "archived-mark"
	// The store answered with an unexpected error.
	KindStoreError = "store-error"
	// The production pointer names a version that is not in Production, or none while one is.
	KindProductionPointer = "production-pointer"
	// More than one version has catalog stage Production.
	KindMultipleProduction = "multiple-production"
	// The model workflow's production version differs from the catalog pointer.
	KindProductionWorkflow = "production-workflow"
	// Catalog version numbers are not 1..N.
	KindVersionGap = "version-gap"
	// The model workflow's next version is not N+1.
	KindNextVersion = "next-version"
	// The audit trail does not end in the catalog stage.
	KindAuditEnd = "audit-end"
	// A transition does not start where the previous one ended.
	KindAuditChain = "audit-chain"
	// KindDeliveryUndelivered: the last deployment event was refused, failed, or has been retried for
	// longer than DeliveryGrace.
	KindDeliveryUndelivered = "delivery-undelivered"
)

// Finding is one disagreement. Version 0 means the model as a whole.
type Finding struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	Kind    string `json:"kind"`
	Detail  string `json:"detail"`
	// model is true for a finding of the model-wide checks (also when it names a version).
	model bool
}

// String is the finding's one-line form: "fraud v3: catalog stage Approved, workflow stage Production".
func (f Finding) String() string {
	if f.Version == 0 {
		return fmt.Sprintf("%s: %s", f.Model, f.Detail)
	}
	return fmt.Sprintf("%s v%d: %s", f.Model, f.Version, f.Detail)
}

// Report is the outcome of Run.
type Report struct {
	Models   int       `json:"models"`
	Versions int       `json:"versions"`
	Findings []Finding `json:"findings"`
}

// Summary is the report's last line: "checked 2 models, 5 versions: 1 finding".
func (r Report) Summary() string {
	return fmt.Sprintf("checked %s, %s: %s", plural(r.Models, "model"), plural(r.Versions, "version"), plural(len(r.Findings), "finding"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Catalog is what the checker reads from the catalog; *catalog.Catalog implements it.
type Catalog interface {
	ListModels(ctx context.Context) ([]catalog.Model, error)
	GetModel(ctx context.Context, name string) (catalog.Model, error)
	ListVersions(ctx context.Context, model, stage string) ([]catalog.Version, error)
	Transitions(ctx context.Context, model string, version int) ([]catalog.Transition, error)
	Deliveries(ctx context.Context, model string, version int) ([]catalog.Delivery, error)
}

// Querier queries workflows and describes their executions; client.Client implements it.
type Querier interface {
	QueryWorkflow(ctx context.Context, workflowID, runID, queryType string, args ...interface{}) (converter.EncodedValue, error)
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// Deps are the parts the checker reads and its options.
type Deps struct {
	Catalog  Catalog
	Store    artifact.Store
	Temporal Querier
	// Model limits the check to one model; empty checks every model in the catalog.
	Model string
	// Verify re-hashes every blob (VerifyBlob) instead of only checking that it exists with its size.
	Verify bool
	// RecheckDelay is how long to wait before checking a finding again (0: 2 s; negative: no re-check).
	RecheckDelay time.Duration
	// QueryTimeout bounds each workflow query (0: 30 s).
	QueryTimeout time.Duration
}

// DefaultRecheckDelay is the wait before a finding is checked again.
const DefaultRecheckDelay = 2 * time.Second

// Run checks the model named by d.Model, or every model, and returns what disagrees. An error means the
// check itself could not run (the catalog is unreachable, the context ended); disagreements, including
// a missing workflow or a store that refuses one object, are findings.
// DeliveryGrace is how long a deployment event may be retried before check reports it.
const DeliveryGrace = 5 * time.Minute

func Run(ctx context.Context, d Deps) (Report, error) {
	var models []string
	if d.Model != "" {
		m, err := d.Catalog.GetModel(ctx, d.Model)
		if err != nil {
			return Report{}, err
		}
		models = []string{m.Name}
	} else {
		ms, err := d.Catalog.ListModels(ctx)
		if err != nil {
			return Report{}, err
		}
		for _, m := range ms {
			models = append(models, m.Name)
		}
	}

	rep := Report{Models: len(models), Findings: []Finding{}}
	first := map[string][]Finding{}
	for _, name := range models {
		snap, err := d.load(ctx, name)
		if err != nil {
			return Report{}, err
		}
		rep.Versions += len(snap.versions)
		fs, err := d.checkModel(ctx, snap, nil, true)
		if err != nil {
			return Report{}, err
		}
		if len(fs) > 0 {
			first[name] = fs
		}
	}
	if len(first) == 0 {
		return rep, nil
	}

	delay := d.RecheckDelay
	if delay == 0 {
		delay = DefaultRecheckDelay
	}
	if delay < 0 {
		for _, name := range models {
			rep.Findings = append(rep.Findings, first[name]...)
		}
		return rep, nil
	}
	t := time.NewTimer(delay)
	select {
	case <-ctx.Done():
		t.Stop()
		return Report{}, ctx.Err()
	case <-t.C:
	}
	for _, name := range models {
		fs := first[name]
		if len(fs) == 0 {
			continue
		}
		// Check again only what disagreed: the model-wide checks if one of them found something, and the
		// versions that had findings. Report what is found both times.
		seen := map[findingKey]bool{}
		versions := map[int]bool{}
		modelWide := false
		for _, f := range fs {
			seen[keyOf(f)] = true
			if f.model {
				modelWide = true
			} else {
				versions[f.Version] = true
			}
		}
		snap, err := d.load(ctx, name)
		if err != nil {
			return Report{}, err
		}
		again, err := d.checkModel(ctx, snap, versions, modelWide)
		if err != nil {
			return Report{}, err
		}
		for _, f := range again {
			if seen[keyOf(f)] {
				rep.Findings = append(rep.Findings, f)
			}
		}
	}
	return rep, nil
}

type findingKey struct {
	version int
	kind    string
}

func keyOf(f Finding) findingKey { return findingKey{f.Version, f.Kind} }

// snapshot is what the catalog holds about one model.
type snapshot struct {
	model       catalog.Model
	versions    []catalog.Version
	transitions map[int][]catalog.Transition
}

func (d Deps) load(ctx context.Context, name string) (snapshot, error) {
	m, err := d.Catalog.GetModel(ctx, name)
	if err != nil {
		return snapshot{}, err
	}
	vs, err := d.Catalog.ListVersions(ctx, name, "")
	if err != nil {
		return snapshot{}, err
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Version < vs[j].Version })
	trs, err := d.Catalog.Transitions(ctx, name, 0)
	if err != nil {
		return snapshot{}, err
	}
	by := map[int][]catalog.Transition{}
	for _, t := range trs {
		by[t.Version] = append(by[t.Version], t)
	}
	return snapshot{model: m, versions: vs, transitions: by}, nil
}

// checkModel runs the per-version checks on the versions in only (all of them when only is nil) and,
// when modelWide, the model-wide checks. Findings come out ordered by version.
func (d Deps) checkModel(ctx context.Context, s snapshot, only map[int]bool, modelWide bool) ([]Finding, error) {
	var out []Finding
	for _, v := range s.versions {
		if only != nil && !only[v.Version] {
			continue
		}
		fs, err := d.checkVersion(ctx, v, s.transitions[v.Version])
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	if modelWide {
		fs, err := d.checkModelWide(ctx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// query runs a workflow query. found is false when the workflow does not exist; other query failures are
// returned as qerr (a finding), and only the end of ctx is returned as err.
func (d Deps) query(ctx context.Context, workflowID, name string, out any) (found bool, qerr, err error) {
	timeout := d.QueryTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, e := d.Temporal.QueryWorkflow(qctx, workflowID, "", name)
	if e == nil {
		e = v.Get(out)
	}
	if e == nil {
		return true, nil, nil
	}
	if ctx.Err() != nil {
		return false, nil, ctx.Err()
	}
	var nf *serviceerror.NotFound
	if errors.As(e, &nf) {
		return false, nil, nil
	}
	return true, e, nil
}

// status describes the latest run of a workflow (an empty run ID: a version in Production or Archived
// continues as new, and its earlier runs are ContinuedAsNew). found is false when the workflow does not
// exist; other failures are returned as derr (a finding), and only the end of ctx as err.
func (d Deps) status(ctx context.Context, workflowID string) (st enumspb.WorkflowExecutionStatus, found bool, derr, err error) {
	timeout := d.QueryTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, e := d.Temporal.DescribeWorkflowExecution(dctx, workflowID, "")
	if e == nil {
		return resp.GetWorkflowExecutionInfo().GetStatus(), true, nil, nil
	}
	if ctx.Err() != nil {
		return 0, false, nil, ctx.Err()
	}
	var nf *serviceerror.NotFound
	if errors.As(e, &nf) {
		return 0, false, nil, nil
	}
	return 0, true, e, nil
}

// isOpen reports whether a workflow with this status is still running. ContinuedAsNew counts as open: it
// is the status of a run that has just handed over to its successor.
func isOpen(st enumspb.WorkflowExecutionStatus) bool {
	return st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || st == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW
}

// endsClosed reports whether a version in this stage has finished its lifecycle, so that its workflow
// has completed.
func endsClosed(stage string) bool {
	return stage == catalog.StageRejected || stage == catalog.StageFailed
}

func (d Deps) checkVersion(ctx context.Context, v catalog.Version, trs []catalog.Transition) ([]Finding, error) {
	var out []Finding
	add := func(kind, format string, args ...any) {
		out = append(out, Finding{Model: v.Model, Version: v.Version, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}

	// Catalog against the version's workflow.
	wid := workflows.VersionWorkflowID(v.Model, v.Version)
	var desc workflows.VersionDescription
	found, qerr, err := d.query(ctx, wid, workflows.QueryDescribe, &desc)
	switch {
	case err != nil:
		return nil, err
	case !found:
		add(KindWorkflowNotFound, "workflow %s not found", wid)
	case qerr != nil:
		add(KindWorkflowQuery, "query %s on workflow %s failed: %v", workflows.QueryDescribe, wid, qerr)
	default:
		st := desc.State
		// Both stages must say the lifecycle is over for a closed workflow to be fine: the catalog is what
		// deployers read, and the workflow's own stage is what its last run left.
		if !endsClosed(v.Stage) || !endsClosed(st.Stage) {
			status, found, derr, err := d.status(ctx, wid)
			switch {
			case err != nil:
				return nil, err
			case !found:
				add(KindWorkflowNotFound, "workflow %s not found", wid)
			case derr != nil:
				add(KindWorkflowQuery, "describe workflow %s failed: %v", wid, derr)
			case !isOpen(status):
				stage := v.Stage
				if st.Stage != v.Stage {
					stage = fmt.Sprintf("%s (workflow stage %s)", v.Stage, orNone(st.Stage))
				}
				add(KindWorkflowClosed, "workflow %s is %s, but its stage %s needs it running", wid, status, stage)
			}
		}
		if v.Stage != st.Stage {
			add(KindStage, "catalog stage %s, workflow stage %s", v.Stage, orNone(st.Stage))
		}
		if v.ManifestURI != st.ManifestURI {
			add(KindManifestURI, "catalog manifest URI %s, workflow manifest URI %s", orNone(v.ManifestURI), orNone(st.ManifestURI))
		}
		if v.ManifestDigest != st.ManifestDigest {
			add(KindManifestDigest, "catalog manifest digest %s, workflow manifest digest %s", orNone(v.ManifestDigest), orNone(st.ManifestDigest))
		}
	}

	// Catalog against the artifact store.
	if v.ManifestDigest != "" {
		fs, err := d.checkStore(ctx, v)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}

	// The audit trail, in seq order (a late retry is stored where it belongs in that order).
	trs = slices.Clone(trs)
	sort.SliceStable(trs, func(i, j int) bool { return trs[i].Seq < trs[j].Seq })
	if len(trs) == 0 {
		add(KindAuditEnd, "audit trail is empty, catalog stage %s", v.Stage)
	} else {
		prev := ""
		for i, t := range trs {
			if t.From != prev {
				if i == 0 {
					add(KindAuditChain, "audit trail starts with %s -> %s (seq %d), not with the registration", orNone(t.From), t.To, t.Seq)
				} else {
					add(KindAuditChain, "audit transition %s -> %s (seq %d) does not follow the previous one, which ended in %s (seq %d)",
						orNone(t.From), t.To, t.Seq, prev, trs[i-1].Seq)
				}
			}
			prev = t.To
		}
		if prev != v.Stage {
			add(KindAuditEnd, "audit trail ends in %s (seq %d), catalog stage %s", prev, trs[len(trs)-1].Seq, v.Stage)
		}
	}
	return out, nil
}

func (d Deps) checkStore(ctx context.Context, v catalog.Version) ([]Finding, error) {
	var out []Finding
	add := func(kind, format string, args ...any) {
		out = append(out, Finding{Model: v.Model, Version: v.Version, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	m, digest, err := d.Store.GetManifest(ctx, v.Model, v.Version)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	switch {
	case errors.Is(err, artifact.ErrNotFound):
		add(KindManifestMissing, "manifest %s (catalog digest %s) is not in the artifact store", orNone(v.ManifestURI), v.ManifestDigest)
		return out, nil
	case err != nil:
		add(KindStoreError, "manifest could not be read: %v", err)
		return out, nil
	}
	if digest != v.ManifestDigest {
		add(KindManifestMismatch, "catalog manifest digest %s, stored manifest digest %s", v.ManifestDigest, digest)
	}
	for _, f := range m.Files {
		size, err := d.Store.StatBlob(ctx, f.SHA256)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch {
		case errors.Is(err, artifact.ErrNotFound):
			add(KindBlobMissing, "blob of %s (sha256:%s, %d bytes) is missing from the artifact store", f.Path, f.SHA256, f.Size)
			continue
		case err != nil:
			add(KindStoreError, "blob of %s (sha256:%s) could not be read: %v", f.Path, f.SHA256, err)
			continue
		case size != f.Size:
			add(KindBlobSize, "blob of %s (sha256:%s) is %d bytes, the manifest says %d", f.Path, f.SHA256, size, f.Size)
			continue
		}
		if d.Verify {
			err := d.Store.VerifyBlob(ctx, f, nil)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			switch {
			case errors.Is(err, artifact.ErrDigestMismatch):
				add(KindBlobCorrupt, "blob of %s (sha256:%s) does not hash to its digest: %v", f.Path, f.SHA256, err)
			case errors.Is(err, artifact.ErrNotFound):
				add(KindBlobMissing, "blob of %s (sha256:%s, %d bytes) is missing from the artifact store", f.Path, f.SHA256, f.Size)
			case err != nil:
				add(KindStoreError, "blob of %s (sha256:%s) could not be verified: %v", f.Path, f.SHA256, err)
			}
		}
	}
	archived, err := d.Store.IsArchived(ctx, v.Model, v.Version)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	want := v.Stage == catalog.StageArchived
	switch {
	case err != nil:
		add(KindStoreError, "archived mark could not be read: %v", err)
	case want && !archived:
		add(KindArchivedMark, "catalog stage %s, but the artifact store has no archived mark", v.Stage)
	case !want && archived:
		add(KindArchivedMark, "catalog stage %s, but the artifact store has an archived mark", v.Stage)
	}
	return out, nil
}

func (d Deps) checkModelWide(ctx context.Context, s snapshot) ([]Finding, error) {
	name := s.model.Name
	var out []Finding
	add := func(version int, kind, format string, args ...any) {
		out = append(out, Finding{Model: name, Version: version, Kind: kind, Detail: fmt.Sprintf(format, args...), model: true})
	}
	byNumber := map[int]catalog.Version{}
	var inProduction []int
	maxVersion := 0
	for _, v := range s.versions {
		byNumber[v.Version] = v
		if v.Stage == catalog.StageProduction {
			inProduction = append(inProduction, v.Version)
		}
		maxVersion = max(maxVersion, v.Version)
	}

	// Deployment events: the latest one must have been delivered (or still be within its first
	// minutes of retries); an older one that a newer switch superseded is fine.
	ds, err := d.Catalog.Deliveries(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	if n := len(ds); n > 0 {
		last := ds[n-1]
		switch {
		case last.Status == catalog.DeliveryRefused || last.Status == catalog.DeliveryFailed:
			add(last.Version, KindDeliveryUndelivered, "deployment event %s (%s of v%d) was not delivered: %s %s; redeliver with: temporal workflow update execute --workflow-id %s --name %s --input '{\"schemaVersion\":1}'",
				last.EventID, last.Kind, last.Version, last.Status, last.Error, workflows.ModelWorkflowID(name), workflows.UpdateRedeliver)
		case last.Status == catalog.DeliveryPending && time.Since(last.At) > DeliveryGrace:
			add(last.Version, KindDeliveryUndelivered, "deployment event %s (%s of v%d) is still being retried since %s: is the webhook down?",
				last.EventID, last.Kind, last.Version, last.At.Format(time.RFC3339))
		}
	}

	// The production pointer and the Production stage.
	pointer := 0
	if s.model.ProductionVersion != nil {
		pointer = *s.model.ProductionVersion
	}
	if len(inProduction) > 1 {
		add(0, KindMultipleProduction, "%s all have catalog stage %s", versionList(inProduction), catalog.StageProduction)
	}
	switch {
	case pointer != 0:
		v, ok := byNumber[pointer]
		switch {
		case !ok:
			add(pointer, KindProductionPointer, "the production pointer names v%d, which is not in the catalog", pointer)
		case v.Stage != catalog.StageProduction:
			also := ""
			if len(inProduction) > 0 {
				also = fmt.Sprintf(" (%s in %s)", versionList(inProduction), catalog.StageProduction)
			}
			add(pointer, KindProductionPointer, "the production pointer names v%d, whose catalog stage is %s%s", pointer, v.Stage, also)
		}
	case len(inProduction) > 0:
		for _, n := range inProduction {
			add(n, KindProductionPointer, "catalog stage %s, but the production pointer names no version", catalog.StageProduction)
		}
	}

	// Version numbers 1..N with no gaps (invariant 5).
	for n := 1; n < maxVersion; n++ {
		if _, ok := byNumber[n]; !ok {
			add(n, KindVersionGap, "missing from the catalog, which has versions up to v%d", maxVersion)
		}
	}

	// The model workflow: its production pointer and the next version it will mint.
	wid := workflows.ModelWorkflowID(name)
	var prod workflows.ProductionResult
	found, qerr, err := d.query(ctx, wid, workflows.QueryProduction, &prod)
	switch {
	case err != nil:
		return nil, err
	case !found:
		if len(s.versions) > 0 || pointer != 0 {
			add(0, KindWorkflowNotFound, "workflow %s not found", wid)
		}
		return out, nil
	case qerr != nil:
		add(0, KindWorkflowQuery, "query %s on workflow %s failed: %v", workflows.QueryProduction, wid, qerr)
	case prod.Version != pointer:
		add(0, KindProductionWorkflow, "catalog production pointer %s, model workflow production %s", vOrNone(pointer), vOrNone(prod.Version))
	}
	// The model workflow mints versions and serializes promotions; nothing can be registered or
	// promoted once it has closed.
	status, found, derr, err := d.status(ctx, wid)
	switch {
	case err != nil:
		return nil, err
	case !found:
		add(0, KindWorkflowNotFound, "workflow %s not found", wid)
	case derr != nil:
		add(0, KindWorkflowQuery, "describe workflow %s failed: %v", wid, derr)
	case !isOpen(status):
		add(0, KindWorkflowClosed, "workflow %s is %s; a model's workflow must always be running", wid, status)
	}
	var desc workflows.ModelDescription
	found, qerr, err = d.query(ctx, wid, workflows.QueryDescribe, &desc)
	switch {
	case err != nil:
		return nil, err
	case !found:
		add(0, KindWorkflowNotFound, "workflow %s not found", wid)
	case qerr != nil:
		add(0, KindWorkflowQuery, "query %s on workflow %s failed: %v", workflows.QueryDescribe, wid, qerr)
	case desc.State.NextVersion == 0 && desc.State.LastVersion < maxVersion:
		// Since the catalog mints numbers the workflow only remembers the last one it saw.
		add(0, KindNextVersion, "model workflow's last version is %s, catalog's highest version is %s",
			vOrNone(desc.State.LastVersion), vOrNone(maxVersion))
	case desc.State.NextVersion != 0 && desc.State.NextVersion != maxVersion+1:
		add(0, KindNextVersion, "model workflow's next version is %d, catalog's highest version is %s (want next %d)",
			desc.State.NextVersion, vOrNone(maxVersion), maxVersion+1)
	}
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func vOrNone(n int) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("v%d", n)
}

func versionList(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprintf("v%d", n)
	}
	return strings.Join(parts, ", ")
}
