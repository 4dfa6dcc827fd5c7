package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/control"
	"github.com/modelreg/modelreg/internal/names"
	"github.com/modelreg/modelreg/workflows"
)

// ModelPath is the {model} path parameter.
type ModelPath struct {
	Model string `path:"model" maxLength:"200" doc:"Model name."`
}

// VersionPath is the {model}/{version} path parameters.
type VersionPath struct {
	Model   string `path:"model" maxLength:"200" doc:"Model name."`
	Version int    `path:"version" minimum:"1" doc:"Version number."`
}

type PageQuery struct {
	Cursor string `query:"cursor" maxLength:"1024" doc:"Where the previous page ended (its nextCursor)."`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" doc:"Items per page (default 50)."`
}

func (q PageQuery) limit() int {
	if q.Limit <= 0 {
		return 50
	}
	return q.Limit
}

// ModelList is one page of models.
type ModelList struct {
	Models     []catalog.ModelSummary `json:"models"`
	NextCursor string                 `json:"nextCursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
}

// ModelDetail is one model.
type ModelDetail struct {
	catalog.ModelSummary
	Policy    catalog.Policy `json:"policy"`
	CreatedAt time.Time      `json:"createdAt"`
}

// VersionList is one page of versions, newest first.
type VersionList struct {
	Versions   []catalog.Version `json:"versions"`
	NextCursor string            `json:"nextCursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
}

// VersionDetail is everything known about one version.
type VersionDetail struct {
	catalog.Version
	Files       []artifact.FileEntry `json:"files,omitempty" doc:"The manifest's files (absent before the manifest is written)."`
	Transitions []catalog.Transition `json:"transitions"`
	Decisions   []catalog.Decision   `json:"decisions"`
	Deliveries  []catalog.Delivery   `json:"deliveries"`
	// Live is the version's workflow state (validation report, gates, approvals so far), when a worker
	// answered; the catalog fields above do not need one.
	Live      *workflows.VersionState `json:"live,omitempty"`
	LiveError string                  `json:"liveError,omitempty" doc:"Why live is absent (no worker polling, the workflow's retention passed)."`
}

// Artifact is one file of the production version and where it is.
type Artifact struct {
	artifact.FileEntry
	URI string `json:"uri" doc:"Where the bytes are (s3://… or file://…)."`
}

// Production is what a deployer needs to serve a model.
type Production struct {
	Model          string     `json:"model"`
	Version        int        `json:"version"`
	Stage          string     `json:"stage"`
	ManifestURI    string     `json:"manifestUri"`
	ManifestDigest string     `json:"manifestDigest"`
	Artifacts      []Artifact `json:"artifacts"`
	Seq            int64      `json:"seq" doc:"The production pointer's sequence number; it grows with every switch."`
	Since          time.Time  `json:"since" doc:"When the version entered Production."`
}

func (s *Server) routes() {
	huma.Register(s.api, huma.Operation{
		OperationID: "list-models", Method: http.MethodGet, Path: "/v1/models", Tags: []string{"models"},
		Summary: "List models", Description: "Models in name order, with their production version and how many versions wait for a decision.",
	}, s.listModels)
	huma.Register(s.api, huma.Operation{
		OperationID: "get-model", Method: http.MethodGet, Path: "/v1/models/{model}", Tags: []string{"models"},
		Summary: "Get a model and its policy",
	}, s.getModel)
	huma.Register(s.api, huma.Operation{
		OperationID: "list-model-versions", Method: http.MethodGet, Path: "/v1/models/{model}/versions", Tags: []string{"versions"},
		Summary: "List a model's versions", Description: "Newest first; the cursor is stable while versions are registered.",
	}, s.listModelVersions)
	huma.Register(s.api, huma.Operation{
		OperationID: "list-versions", Method: http.MethodGet, Path: "/v1/versions", Tags: []string{"versions"},
		Summary: "List versions of every model", Description: "Newest first by registration time, e.g. ?stage=PendingApproval for what waits for a decision.",
	}, s.listAllVersions)
	huma.Register(s.api, huma.Operation{
		OperationID: "get-version", Method: http.MethodGet, Path: "/v1/models/{model}/versions/{version}", Tags: []string{"versions"},
		Summary: "Get a version", Description: "The catalog's record with its files, audit trail, decisions and deliveries, and the workflow's live state when a worker answers.",
	}, s.getVersion)
	huma.Register(s.api, huma.Operation{
		OperationID: "list-transitions", Method: http.MethodGet, Path: "/v1/models/{model}/versions/{version}/transitions", Tags: []string{"versions"},
		Summary: "A version's audit trail",
	}, s.listTransitions)
	huma.Register(s.api, huma.Operation{
		OperationID: "list-decisions", Method: http.MethodGet, Path: "/v1/models/{model}/versions/{version}/decisions", Tags: []string{"versions"},
		Summary: "Every decision and verdict a version received, accepted or refused",
	}, s.listDecisions)
	huma.Register(s.api, huma.Operation{
		OperationID: "get-policy", Method: http.MethodGet, Path: "/v1/models/{model}/policy", Tags: []string{"models"},
		Summary: "A model's policy",
	}, s.getPolicy)
	huma.Register(s.api, huma.Operation{
		OperationID: "get-production", Method: http.MethodGet, Path: "/v1/models/{model}/production", Tags: []string{"production"},
		Summary: "What is in production",
		Description: "The production version and its artifacts, with an ETag. With If-None-Match it answers 304 while nothing changed; " +
			"with ?wait=30s as well it holds the request until production changes (then 200) or the wait ends (then 304).",
	}, s.getProduction)
	s.writeRoutes()
	s.artifactRoutes()
	s.healthRoutes()
	s.metricsRoute()
	s.uiRoutes()
}

func validModel(name string) error {
	if err := names.ValidateModel(name); err != nil {
		return apiError(http.StatusBadRequest, "bad_model_name", err.Error())
	}
	return nil
}

// catalogError maps catalog errors to API errors.
func catalogError(err error, what string) error {
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return apiError(http.StatusNotFound, "not_found", what+" not found")
	case errors.Is(err, catalog.ErrInconsistent):
		return apiError(http.StatusServiceUnavailable, "inconsistent", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apiError(http.StatusServiceUnavailable, "unavailable", "the catalog did not answer in time")
	}
	return apiError(http.StatusServiceUnavailable, "catalog_unavailable", "the catalog could not be read: "+err.Error())
}

func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, into any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		err = dec.Decode(into)
	}
	if err != nil {
		return apiError(http.StatusBadRequest, "bad_cursor", "cursor is not one this API handed out (pass a page's nextCursor unchanged)")
	}
	return nil
}

type modelCursor struct {
	After string `json:"a"`
}

type listModelsInput struct {
	PageQuery
}

type listModelsOutput struct{ Body ModelList }

func (s *Server) listModels(ctx context.Context, in *listModelsInput) (*listModelsOutput, error) {
	var cur modelCursor
	if in.Cursor != "" {
		if err := decodeCursor(in.Cursor, &cur); err != nil {
			return nil, err
		}
	}
	limit := in.limit()
	ms, err := s.opts.Catalog.ListModelSummaries(ctx, cur.After, limit+1)
	if err != nil {
		return nil, catalogError(err, "models")
	}
	out := &listModelsOutput{Body: ModelList{Models: ms}}
	if len(ms) > limit {
		out.Body.Models = ms[:limit]
		out.Body.NextCursor = encodeCursor(modelCursor{After: ms[limit-1].Name})
	}
	if out.Body.Models == nil {
		out.Body.Models = []catalog.ModelSummary{}
	}
	return out, nil
}

type getModelOutput struct{ Body ModelDetail }

func (s *Server) getModel(ctx context.Context, in *ModelPath) (*getModelOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	m, err := s.opts.Catalog.GetModel(ctx, in.Model)
	if err != nil {
		return nil, catalogError(err, fmt.Sprintf("model %q", in.Model))
	}
	sum, err := s.opts.Catalog.GetModelSummary(ctx, in.Model)
	if err != nil {
		return nil, catalogError(err, fmt.Sprintf("model %q", in.Model))
	}
	return &getModelOutput{Body: ModelDetail{ModelSummary: sum, Policy: policyFor(ctx, m.Name, m.Policy), CreatedAt: m.CreatedAt}}, nil
}

type VersionFilterQuery struct {
	PageQuery
	Stage        []string `query:"stage,explode" doc:"Only versions in these stages (repeatable)."`
	Tag          []string `query:"tag,explode" doc:"key=value, or key for any value (repeatable; all must match)."`
	Metric       []string `query:"metric,explode" doc:"name>=value, name>value, name<=value, name<value or name=value (repeatable; all must match)."`
	RegisteredBy string   `query:"registeredBy" maxLength:"200" doc:"Only versions registered by this principal."`
}

func (q VersionFilterQuery) filter() (catalog.VersionFilter, error) {
	f := catalog.VersionFilter{Stages: q.Stage, RegisteredBy: q.RegisteredBy, Limit: q.limit() + 1}
	for _, st := range q.Stage {
		if !catalog.ValidStage(st) {
			return f, apiError(http.StatusBadRequest, "bad_filter", fmt.Sprintf("stage %q is not one of %s", st, strings.Join(catalog.Stages, ", ")))
		}
	}
	for _, t := range q.Tag {
		k, v, has := strings.Cut(t, "=")
		if k == "" {
			return f, apiError(http.StatusBadRequest, "bad_filter", fmt.Sprintf("tag filter %q: give key=value or key", t))
		}
		f.Tags = append(f.Tags, catalog.TagFilter{Key: k, Value: v, HasValue: has})
	}
	for _, m := range q.Metric {
		mf, err := parseMetricFilter(m)
		if err != nil {
			return f, err
		}
		f.Metrics = append(f.Metrics, mf)
	}
	return f, nil
}

func parseMetricFilter(s string) (catalog.MetricFilter, error) {
	// The first operator character ends the name, so ">=1" is a filter without a name, not a metric
	// called ">".
	if i := strings.IndexAny(s, "<>="); i > 0 {
		op := s[i : i+1]
		if strings.HasPrefix(s[i:], ">=") || strings.HasPrefix(s[i:], "<=") {
			op = s[i : i+2]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(s[i+len(op):]), 64)
		name := strings.TrimSpace(s[:i])
		// Metrics are finite numbers: NaN or Inf would match nothing or everything, silently.
		if err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) && name != "" {
			return catalog.MetricFilter{Name: name, Op: op, Value: v}, nil
		}
	}
	return catalog.MetricFilter{}, apiError(http.StatusBadRequest, "bad_filter",
		fmt.Sprintf("metric filter %q: give name>=value, name>value, name<=value, name<value or name=value with a finite number", s))
}

type listModelVersionsInput struct {
	ModelPath
	VersionFilterQuery
}

type listVersionsOutput struct{ Body VersionList }

func (s *Server) listModelVersions(ctx context.Context, in *listModelVersionsInput) (*listVersionsOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	if _, err := s.opts.Catalog.GetModel(ctx, in.Model); err != nil {
		return nil, catalogError(err, fmt.Sprintf("model %q", in.Model))
	}
	f, err := in.filter()
	if err != nil {
		return nil, err
	}
	f.Model = in.Model
	return s.findVersions(ctx, f, in.Cursor)
}

type listAllVersionsInput struct {
	VersionFilterQuery
	Model string `query:"model" maxLength:"200" doc:"Only this model's versions (same as /v1/models/{model}/versions)."`
}

func (s *Server) listAllVersions(ctx context.Context, in *listAllVersionsInput) (*listVersionsOutput, error) {
	f, err := in.filter()
	if err != nil {
		return nil, err
	}
	if in.Model != "" {
		if err := validModel(in.Model); err != nil {
			return nil, err
		}
		f.Model = in.Model
	}
	return s.findVersions(ctx, f, in.Cursor)
}

func (s *Server) findVersions(ctx context.Context, f catalog.VersionFilter, cursor string) (*listVersionsOutput, error) {
	limit := f.Limit - 1
	if cursor != "" {
		var c catalog.VersionCursor
		if err := decodeCursor(cursor, &c); err != nil {
			return nil, err
		}
		// A cursor of a one-model listing has no model; one across models has both. Mixing them up
		// would silently page the wrong listing.
		if (f.Model == "") != (c.Model != "") || c.Version < 1 {
			return nil, apiError(http.StatusBadRequest, "bad_cursor", "cursor belongs to another listing (pass a page's nextCursor to the same URL)")
		}
		f.After = &c
	}
	vs, err := s.opts.Catalog.FindVersions(ctx, f)
	if err != nil {
		return nil, catalogError(err, "versions")
	}
	out := &listVersionsOutput{Body: VersionList{Versions: vs}}
	if len(vs) > limit {
		out.Body.Versions = vs[:limit]
		last := vs[limit-1]
		c := catalog.VersionCursor{Version: last.Version}
		if f.Model == "" {
			c.Model, c.CreatedAt = last.Model, last.CreatedAt
		}
		out.Body.NextCursor = encodeCursor(c)
	}
	if out.Body.Versions == nil {
		out.Body.Versions = []catalog.Version{}
	}
	return out, nil
}

type getVersionOutput struct{ Body VersionDetail }

func (s *Server) version(ctx context.Context, in *VersionPath) (catalog.Version, error) {
	if err := validModel(in.Model); err != nil {
		return catalog.Version{}, err
	}
	v, err := s.opts.Catalog.GetVersion(ctx, in.Model, in.Version)
	if err != nil {
		return v, catalogError(err, fmt.Sprintf("model %q v%d", in.Model, in.Version))
	}
	return v, nil
}

func (s *Server) getVersion(ctx context.Context, in *VersionPath) (*getVersionOutput, error) {
	v, err := s.version(ctx, in)
	if err != nil {
		return nil, err
	}
	d := VersionDetail{Version: v}
	if d.Transitions, err = s.opts.Catalog.Transitions(ctx, v.Model, v.Version); err != nil {
		return nil, catalogError(err, "transitions")
	}
	if d.Decisions, err = s.opts.Catalog.Decisions(ctx, v.Model, v.Version); err != nil {
		return nil, catalogError(err, "decisions")
	}
	if d.Deliveries, err = s.opts.Catalog.Deliveries(ctx, v.Model, v.Version); err != nil {
		return nil, catalogError(err, "deliveries")
	}
	if v.ManifestDigest != "" {
		if m, err := s.manifest(ctx, v); err == nil {
			d.Files = m.Files
		}
	}
	if s.tc() == nil {
		d.LiveError = "this server is not connected to Temporal"
	} else {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		desc, err := control.DescribeVersion(qctx, s.tc(), v.Model, v.Version)
		cancel()
		if err != nil {
			d.LiveError = "the version's workflow did not answer: " + err.Error()
		} else {
			d.Live = liveFor(ctx, v.Model, desc.State)
		}
	}
	return &getVersionOutput{Body: d}, nil
}

type transitionsOutput struct {
	Body struct {
		Transitions []catalog.Transition `json:"transitions"`
	}
}

func (s *Server) listTransitions(ctx context.Context, in *VersionPath) (*transitionsOutput, error) {
	v, err := s.version(ctx, in)
	if err != nil {
		return nil, err
	}
	out := &transitionsOutput{}
	if out.Body.Transitions, err = s.opts.Catalog.Transitions(ctx, v.Model, v.Version); err != nil {
		return nil, catalogError(err, "transitions")
	}
	return out, nil
}

type decisionsOutput struct {
	Body struct {
		Decisions []catalog.Decision `json:"decisions"`
	}
}

func (s *Server) listDecisions(ctx context.Context, in *VersionPath) (*decisionsOutput, error) {
	v, err := s.version(ctx, in)
	if err != nil {
		return nil, err
	}
	out := &decisionsOutput{}
	if out.Body.Decisions, err = s.opts.Catalog.Decisions(ctx, v.Model, v.Version); err != nil {
		return nil, catalogError(err, "decisions")
	}
	if out.Body.Decisions == nil {
		out.Body.Decisions = []catalog.Decision{}
	}
	return out, nil
}

type policyOutput struct{ Body catalog.Policy }

func (s *Server) getPolicy(ctx context.Context, in *ModelPath) (*policyOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	p, err := s.opts.Catalog.GetPolicy(ctx, in.Model)
	if err != nil {
		return nil, catalogError(err, fmt.Sprintf("model %q", in.Model))
	}
	return &policyOutput{Body: policyFor(ctx, in.Model, p)}, nil
}

// manifest reads a version's manifest once; manifests are written once, so the copy never goes stale.
func (s *Server) manifest(ctx context.Context, v catalog.Version) (artifact.Manifest, error) {
	key := fmt.Sprintf("%s/%d/%s", v.Model, v.Version, v.ManifestDigest)
	if m, ok := s.manifests.Load(key); ok {
		return m.(artifact.Manifest), nil
	}
	m, digest, err := s.opts.Store.GetManifest(ctx, v.Model, v.Version)
	if err != nil {
		return m, err
	}
	if digest != v.ManifestDigest {
		return m, fmt.Errorf("the stored manifest of %s v%d has digest %s, the catalog records %s", v.Model, v.Version, digest, v.ManifestDigest)
	}
	s.manifests.Store(key, m)
	return m, nil
}

type getProductionInput struct {
	ModelPath
	Wait        string `query:"wait" doc:"With If-None-Match: hold the request up to this long (e.g. 30s, at most 60s) until production changes."`
	IfNoneMatch string `header:"If-None-Match" doc:"The ETag of the production state the client has."`
}

type getProductionOutput struct {
	Status       int
	ETag         string `header:"ETag"`
	CacheControl string `header:"Cache-Control"`
	Body         *Production
}

// etagOf names a production state: it changes with every switch, rollback or repair of the pointer.
func etagOf(st catalog.ProductionState) string {
	v := 0
	if st.Version != nil {
		v = *st.Version
	}
	return fmt.Sprintf(`"p%d.%d"`, v, st.Seq)
}

func (s *Server) getProduction(ctx context.Context, in *getProductionInput) (*getProductionOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	var wait time.Duration
	if in.Wait != "" {
		d, err := time.ParseDuration(in.Wait)
		if err != nil || d < 0 || d > MaxWait {
			return nil, apiError(http.StatusBadRequest, "bad_wait", fmt.Sprintf("wait %q must be a duration from 0s to %s, e.g. 30s", in.Wait, MaxWait))
		}
		wait = d
	}
	deadline := time.Now().Add(wait)
	for {
		out, st, err := s.currentProduction(ctx, in.Model)
		inconsistent := errors.Is(err, catalog.ErrInconsistent)
		unknown := errors.Is(err, errUnknownModel)
		none := errors.Is(err, errNoProduction) || unknown
		if err != nil && !inconsistent && !none {
			return nil, err
		}
		unchanged := in.IfNoneMatch != "" && etagMatches(in.IfNoneMatch, out.ETag)
		left := time.Until(deadline)
		switch {
		case inconsistent && left <= 0:
			return nil, catalogError(err, "production")
		case inconsistent:
			// A pointer caught between its two writes is waited out while the client waits. The second
			// write is the version's, which does not move the pointer the watcher looks at: look again.
			select {
			case <-ctx.Done():
				return nil, apiError(http.StatusServiceUnavailable, "unavailable", "the request ended")
			case <-time.After(min(left, s.opts.WatchInterval)):
			}
			continue
		case unchanged && left <= 0:
			return &getProductionOutput{Status: http.StatusNotModified, ETag: out.ETag, CacheControl: "no-cache"}, nil
		case unchanged:
		case unknown:
			return nil, huma.ErrorWithHeaders(apiError(http.StatusNotFound, "not_found", fmt.Sprintf("model %q not found", in.Model)),
				http.Header{"ETag": {out.ETag}, "Cache-Control": {"no-cache"}})
		case none:
			return nil, huma.ErrorWithHeaders(apiError(http.StatusNotFound, "no_production_version", fmt.Sprintf("model %q has no version in production", in.Model)),
				http.Header{"ETag": {out.ETag}, "Cache-Control": {"no-cache"}})
		default:
			return out, nil
		}
		wctx, cancel := context.WithTimeout(ctx, left)
		s.watch.wait(wctx, in.Model, st)
		cancel()
		if ctx.Err() != nil {
			return nil, apiError(http.StatusServiceUnavailable, "unavailable", "the request ended")
		}
	}
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// currentProduction answers from the watcher's views, or from the catalog before the first scan and
// for a model created since the last one.
func (s *Server) currentProduction(ctx context.Context, model string) (*getProductionOutput, catalog.ProductionState, error) {
	if out, st, ok := s.watch.cached(model); ok {
		if out.Body == nil {
			return out, st, errNoProduction
		}
		return out, st, nil
	}
	return s.production(ctx, model)
}

// loadProduction is production for the watcher: nothing in production is an answer, not an error.
func (s *Server) loadProduction(ctx context.Context, model string) (*getProductionOutput, catalog.ProductionState, error) {
	out, st, err := s.production(ctx, model)
	if errors.Is(err, errNoProduction) {
		return out, st, nil
	}
	return out, st, err
}

// errNoProduction is a model with nothing in production; errUnknownModel a model not in the catalog.
var (
	errNoProduction = errors.New("no production version")
	errUnknownModel = errors.New("unknown model")
)

// production reads the production state and, when there is a production version, its artifacts. A
// model without one is a 404 that still carries an ETag, so a deployer can wait for the first one.
func (s *Server) production(ctx context.Context, model string) (*getProductionOutput, catalog.ProductionState, error) {
	st, pv, err := s.opts.Catalog.ProductionView(ctx, model)
	if errors.Is(err, catalog.ErrNotFound) {
		// A model not registered yet can be waited on like one with nothing in production.
		return &getProductionOutput{Status: http.StatusNotFound, ETag: etagOf(catalog.ProductionState{}), CacheControl: "no-cache"},
			catalog.ProductionState{Model: model}, errUnknownModel
	}
	if err != nil {
		return nil, st, catalogError(err, fmt.Sprintf("model %q", model))
	}
	out := &getProductionOutput{Status: http.StatusOK, ETag: etagOf(st), CacheControl: "no-cache"}
	if st.Version == nil {
		return out, st, errNoProduction
	}
	// The pointer and the version's stage are written by two activities; a deployer must never be
	// handed a version that is not in Production.
	if pv == nil || pv.Stage != catalog.StageProduction {
		return out, st, fmt.Errorf("the production pointer of model %q names v%d, which is not in Production yet: %w", model, *st.Version, catalog.ErrInconsistent)
	}
	v := *pv
	m, err := s.manifest(ctx, v)
	if err != nil {
		return nil, st, apiError(http.StatusServiceUnavailable, "store_unavailable", "the production version's manifest could not be read: "+err.Error())
	}
	p := &Production{Model: v.Model, Version: v.Version, Stage: v.Stage, ManifestURI: v.ManifestURI, ManifestDigest: v.ManifestDigest,
		Seq: st.Seq, Since: v.UpdatedAt, Artifacts: make([]Artifact, 0, len(m.Files))}
	for _, f := range m.Files {
		p.Artifacts = append(p.Artifacts, Artifact{FileEntry: f, URI: s.opts.Store.BlobURI(f.SHA256)})
	}
	out.Body = p
	return out, st, nil
}

// Health is a probe's answer.
type Health struct {
	Status string            `json:"status" doc:"ok, or unavailable"`
	Checks map[string]string `json:"checks,omitempty" doc:"Each dependency and ok or what failed."`
}

type healthOutput struct {
	Status int
	Body   Health
}

func (s *Server) healthRoutes() {
	huma.Register(s.api, huma.Operation{
		OperationID: "healthz", Method: http.MethodGet, Path: "/healthz", Tags: []string{"health"},
		Summary: "Liveness: the process serves requests",
	}, func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
		return &healthOutput{Status: http.StatusOK, Body: Health{Status: "ok"}}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz", Tags: []string{"health"},
		Summary: "Readiness: the catalog, the artifact store and Temporal answer", Description: "503 naming what failed otherwise.",
	}, s.readyz)
}

func (s *Server) metricsRoute() {
	if s.opts.Metrics == nil {
		return
	}
	h := s.opts.Metrics.Handler()
	huma.Register(s.api, huma.Operation{
		OperationID: "metrics", Method: http.MethodGet, Path: "/metrics", Tags: []string{"health"},
		Summary: "Prometheus metrics: the registry's (modelreg_*) and the Temporal SDK's (temporal_*)",
		Responses: map[string]*huma.Response{"200": {Description: "Prometheus text format",
			Content: map[string]*huma.MediaType{"text/plain": {Schema: &huma.Schema{Type: "string"}}}}},
	}, func(ctx context.Context, _ *struct{}) (*huma.StreamResponse, error) {
		return &huma.StreamResponse{Body: func(hc huma.Context) {
			r, w := humago.Unwrap(hc)
			h.ServeHTTP(w, r)
		}}, nil
	})
}

func (s *Server) readyz(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	check := func(name string, err error) {
		if err != nil {
			checks[name] = err.Error()
		} else {
			checks[name] = "ok"
		}
	}
	check("catalog", s.opts.Catalog.Ping(ctx))
	_, err := s.opts.Store.StatBlob(ctx, strings.Repeat("0", 64))
	if errors.Is(err, artifact.ErrNotFound) {
		err = nil // the store answered
	}
	check("store", err)
	switch {
	case s.opts.Ready != nil:
		check("temporal", s.opts.Ready(ctx))
	case s.tc() != nil:
		_, err := s.tc().CheckHealth(ctx, nil)
		check("temporal", err)
	default:
		check("temporal", errors.New("no Temporal client"))
	}
	out := &healthOutput{Status: http.StatusOK, Body: Health{Status: "ok", Checks: checks}}
	for _, v := range checks {
		if v != "ok" {
			out.Status, out.Body.Status = http.StatusServiceUnavailable, "unavailable"
		}
	}
	return out, nil
}

// policyFor is the policy as the request's principal may read it. Webhook and validator URLs often
// carry credentials (user info, a token in the query or, for chat webhooks, in the path), so only an
// admin of the model sees them whole; everyone else sees where they point.
func policyFor(ctx context.Context, model string, p catalog.Policy) catalog.Policy {
	if pr, _ := ctx.Value(principalKey).(*Principal); pr.Can(model, RoleAdmin) {
		return p
	}
	p.Webhooks = append([]string(nil), p.Webhooks...)
	for i, w := range p.Webhooks {
		p.Webhooks[i] = origin(w)
	}
	p.Validators = append([]catalog.ExternalValidator(nil), p.Validators...)
	for i := range p.Validators {
		p.Validators[i].URL = origin(p.Validators[i].URL)
	}
	return p
}

// origin is scheme://host/… of a URL: enough to tell where it points, nothing of how it authenticates.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(hidden)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// liveFor is a version's workflow state as the request's principal may read it: the policy copy as
// policyFor, and refused messages without their payloads (a mistyped verdict carries a valid validator
// token) unless the principal is an admin of the model.
func liveFor(ctx context.Context, model string, st workflows.VersionState) *workflows.VersionState {
	if pr, _ := ctx.Value(principalKey).(*Principal); pr.Can(model, RoleAdmin) {
		return &st
	}
	if st.Validation != nil {
		rep := *st.Validation
		rep.Policy = policyFor(ctx, model, rep.Policy)
		st.Validation = &rep
	}
	st.Rejected = append([]workflows.RejectedMessage(nil), st.Rejected...)
	for i := range st.Rejected {
		st.Rejected[i].Payload = ""
	}
	st.Gates = append([]workflows.Gate(nil), st.Gates...)
	for i := range st.Gates {
		st.Gates[i].URL = origin(st.Gates[i].URL)
	}
	return &st
}
