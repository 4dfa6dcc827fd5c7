package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/control"
	"github.com/modelreg/modelreg/workflows"
)

// maxWriteBody bounds a write's JSON body. A registration with the most inline files is about 150 KB;
// file lists beyond that travel as a listing blob.
const maxWriteBody = workflows.MaxRequestBytes + 16<<10

// DecisionBody is an approval or rejection. The approver is the token's principal, never the body's.
type DecisionBody struct {
	Digest  string `json:"digest" minLength:"71" maxLength:"71" pattern:"^sha256:[0-9a-f]{64}$" doc:"The manifest digest the decision is made on (the version's manifestDigest)."`
	Comment string `json:"comment,omitempty" maxLength:"4096" doc:"Why."`
}

type decisionInput struct {
	VersionPath
	Body DecisionBody
}

type decisionOutput struct{ Body workflows.DecisionResult }

// RollbackBody puts an archived version back into production.
type RollbackBody struct {
	To     int    `json:"to,omitempty" minimum:"0" doc:"The archived version to restore (default: the most recently archived)."`
	Reason string `json:"reason,omitempty" maxLength:"4096" doc:"Why."`
}

type rollbackInput struct {
	ModelPath
	Body RollbackBody
}

type rollbackOutput struct{ Body workflows.ProductionResult }

type putPolicyInput struct {
	ModelPath
	Body catalog.Policy
}

// RegisterBody registers a version from files already in the store (uploaded through this API or the
// starter), a listing blob, or an s3:// prefix the worker copies.
type RegisterBody struct {
	IdempotencyKey string                   `json:"idempotencyKey,omitempty" maxLength:"200" doc:"Retry key: the same key always returns the same version (default: derived from the content)."`
	Source         workflows.ArtifactSource `json:"source"`
	Metrics        map[string]float64       `json:"metrics,omitempty"`
	Params         map[string]string        `json:"params,omitempty"`
	Tags           map[string]string        `json:"tags,omitempty"`
	SourceRun      string                   `json:"sourceRun,omitempty" maxLength:"1024"`
}

type registerInput struct {
	ModelPath
	Body RegisterBody
}

type registerOutput struct {
	Status int
	Body   workflows.RegisterResult
}

// WhoAmI is the token's principal and its roles on a model.
type WhoAmI struct {
	Principal string   `json:"principal"`
	Model     string   `json:"model,omitempty"`
	Roles     []string `json:"roles,omitempty" doc:"Roles held on model (when ?model= is given)."`
}

type whoamiInput struct {
	Model string `query:"model" maxLength:"200"`
}

type whoamiOutput struct{ Body WhoAmI }

func (s *Server) writeRoutes() {
	write := func(op huma.Operation) huma.Operation {
		op.Security = bearer
		op.MaxBodyBytes = maxWriteBody
		op.Errors = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
			http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusServiceUnavailable}
		return op
	}
	for _, kind := range []string{workflows.UpdateApprove, workflows.UpdateReject} {
		huma.Register(s.api, write(huma.Operation{
			OperationID: kind + "-version", Method: http.MethodPost, Path: "/v1/models/{model}/versions/{version}/" + kind, Tags: []string{"decisions"},
			Summary:     kind + " a version waiting for approval",
			Description: "Needs the approve role on the model. The decision is recorded as the token's principal and bound to the manifest digest given.",
		}), func(ctx context.Context, in *decisionInput) (*decisionOutput, error) { return s.decide(ctx, kind, in) })
	}
	huma.Register(s.api, write(huma.Operation{
		OperationID: "rollback-model", Method: http.MethodPost, Path: "/v1/models/{model}/rollback", Tags: []string{"production"},
		Summary: "Put an archived version back into production", Description: "Needs the rollback role on the model.",
	}), s.rollback)
	huma.Register(s.api, write(huma.Operation{
		OperationID: "put-policy", Method: http.MethodPut, Path: "/v1/models/{model}/policy", Tags: []string{"models"},
		Summary: "Replace a model's policy", Description: "Needs the admin role on the model; applies to versions validated from now on.",
	}), s.putPolicy)
	huma.Register(s.api, write(huma.Operation{
		OperationID: "register-version", Method: http.MethodPost, Path: "/v1/models/{model}/versions", Tags: []string{"versions"},
		Summary: "Register a version", DefaultStatus: http.StatusCreated,
		Description: "Needs the register role on the model. The registrant is the token's principal. Files must already be in the store " +
			"(upload them through the upload routes first) or come from an s3:// source. 201 for a new version, 200 when the idempotency key names an existing one.",
	}), s.register)
	huma.Register(s.api, huma.Operation{
		OperationID: "whoami", Method: http.MethodGet, Path: "/v1/whoami", Tags: []string{"auth"}, Security: bearer,
		Summary: "The bearer token's principal (and its roles on ?model=)",
	}, s.whoami)
}

// temporalError maps what control returns to API errors.
func temporalError(err error) error {
	var refused *control.RefusedError
	switch {
	case errors.As(err, &refused):
		return apiError(http.StatusConflict, "refused", refused.Error())
	case errors.Is(err, control.ErrNotRunning):
		return apiError(http.StatusConflict, "not_running", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return apiError(http.StatusServiceUnavailable, "temporal_unavailable", "Temporal did not answer in time; the request may still take effect, retry it")
	}
	return apiError(http.StatusServiceUnavailable, "temporal_unavailable", "Temporal could not be reached: "+err.Error())
}

func (s *Server) temporal() error {
	if s.tc() == nil {
		return apiError(http.StatusServiceUnavailable, "temporal_unavailable", "this server is not connected to Temporal (yet)")
	}
	return nil
}

func (s *Server) decide(ctx context.Context, kind string, in *decisionInput) (*decisionOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	p, err := require(ctx, in.Model, RoleApprove)
	if err != nil {
		return nil, err
	}
	if err := s.temporal(); err != nil {
		return nil, err
	}
	v, err := s.version(ctx, &in.VersionPath)
	if err != nil {
		return nil, err
	}
	res, err := control.Decide(ctx, s.tc(), v.Model, v.Version, kind,
		workflows.Decision{Approver: p.Name, Comment: in.Body.Comment, Digest: in.Body.Digest})
	if errors.Is(err, control.ErrNotRunning) {
		return nil, apiError(http.StatusConflict, "not_waiting", fmt.Sprintf("%s v%d is not waiting for a decision: its stage is %s", v.Model, v.Version, v.Stage))
	}
	if err != nil {
		return nil, temporalError(err)
	}
	return &decisionOutput{Body: res}, nil
}

func (s *Server) rollback(ctx context.Context, in *rollbackInput) (*rollbackOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	p, err := require(ctx, in.Model, RoleRollback)
	if err != nil {
		return nil, err
	}
	if err := s.temporal(); err != nil {
		return nil, err
	}
	if _, err := s.opts.Catalog.GetModel(ctx, in.Model); err != nil {
		return nil, catalogError(err, fmt.Sprintf("model %q", in.Model))
	}
	res, err := control.Rollback(ctx, s.tc(), in.Model, workflows.RollbackRequest{
		SchemaVersion: workflows.SchemaVersion, To: in.Body.To, Actor: p.Name, Reason: in.Body.Reason})
	if err != nil {
		return nil, temporalError(err)
	}
	s.watch.refresh(ctx, in.Model)
	return &rollbackOutput{Body: res}, nil
}

func (s *Server) putPolicy(ctx context.Context, in *putPolicyInput) (*policyOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	if _, err := require(ctx, in.Model, RoleAdmin); err != nil {
		return nil, err
	}
	if err := catalog.ValidatePolicy(in.Body); err != nil {
		return nil, apiError(http.StatusBadRequest, "bad_policy", err.Error())
	}
	if err := s.opts.Catalog.SetPolicy(ctx, in.Model, in.Body); err != nil {
		return nil, catalogError(err, "policy")
	}
	p, err := s.opts.Catalog.GetPolicy(ctx, in.Model)
	if err != nil {
		return nil, catalogError(err, "policy")
	}
	return &policyOutput{Body: policyFor(ctx, in.Model, p)}, nil
}

func (s *Server) register(ctx context.Context, in *registerInput) (*registerOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	p, err := require(ctx, in.Model, RoleRegister)
	if err != nil {
		return nil, err
	}
	if err := s.temporal(); err != nil {
		return nil, err
	}
	b := in.Body
	req := workflows.RegisterRequest{
		SchemaVersion: workflows.SchemaVersion, Model: in.Model, IdempotencyKey: b.IdempotencyKey, Source: b.Source,
		Metrics: b.Metrics, Params: b.Params, Tags: b.Tags, SourceRun: b.SourceRun, RegisteredBy: p.Name,
	}
	files := b.Source.Files
	if l := b.Source.Listing; l != nil {
		// Read now, so that a listing nobody uploaded or that does not hash to its name is refused here
		// instead of failing the version later; and so that the content key is the one its files make,
		// whether they travel inline or listed.
		if err := l.Validate(); err != nil {
			return nil, apiError(http.StatusBadRequest, "bad_registration", err.Error())
		}
		if files, err = artifact.ReadListing(ctx, s.opts.Store, *l); errors.Is(err, artifact.ErrBadListing) {
			return nil, apiError(http.StatusBadRequest, "bad_listing", err.Error())
		} else if err != nil {
			return nil, storeError(err, "the listing could not be read")
		}
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = control.ContentKey(req, files)
	}
	if err := req.Validate(); err != nil {
		return nil, apiError(http.StatusBadRequest, "bad_registration", err.Error())
	}
	if req.Source.URI != "" && !s.sourceAllowed(req.Source.URI) {
		return nil, apiError(http.StatusForbidden, "source_not_allowed", fmt.Sprintf(
			"source %s is not under a prefix this registry imports from through the API (MODELREG_API_S3_SOURCES); upload the files instead", req.Source.URI))
	}
	// Inline files must be in the store: a registration naming bytes nobody uploaded would only fail
	// later, in validation, after a version number was spent.
	for _, f := range req.Source.Files {
		size, err := s.opts.Store.StatBlob(ctx, f.SHA256)
		if err != nil {
			return nil, apiError(http.StatusBadRequest, "missing_blob", fmt.Sprintf("file %s (sha256 %s) is not in the store: upload it first", f.Path, f.SHA256))
		}
		if size != f.Size {
			return nil, apiError(http.StatusBadRequest, "size_mismatch", fmt.Sprintf("file %s: the stored blob is %d bytes, the request says %d", f.Path, size, f.Size))
		}
	}
	res, err := control.Register(ctx, s.tc(), req)
	if err != nil {
		return nil, temporalError(err)
	}
	status := http.StatusCreated
	if res.Existing {
		status = http.StatusOK
	}
	return &registerOutput{Status: status, Body: res}, nil
}

func (s *Server) whoami(ctx context.Context, in *whoamiInput) (*whoamiOutput, error) {
	p, _ := ctx.Value(principalKey).(*Principal)
	if p == nil {
		return nil, apiError(http.StatusUnauthorized, "unauthenticated", "this request needs a bearer token (Authorization: Bearer <token>)")
	}
	out := &whoamiOutput{Body: WhoAmI{Principal: p.Name}}
	if in.Model != "" {
		out.Body.Model = in.Model
		out.Body.Roles = p.RolesOn(in.Model)
	}
	return out, nil
}

// sourceAllowed is whether uri is one of the allowed prefixes or below one (s3://b/runs allows
// s3://b/runs/7, not s3://b/runs-old).
func (s *Server) sourceAllowed(uri string) bool {
	b, p, err := artifact.ParseS3URI(uri)
	if err != nil {
		return false
	}
	for _, allowed := range s.opts.Sources {
		ab, ap, err := artifact.ParseS3URI(allowed)
		if err != nil || ab != b {
			continue
		}
		if ap == "" || p == ap || strings.HasPrefix(p, ap+"/") {
			return true
		}
	}
	return false
}
