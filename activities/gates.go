package activities

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/internal/catalog"
)

// RecordDecision appends an approve, reject or verdict message (accepted or refused) to the catalog's
// decisions audit; a retry with the same ID is a no-op.
func (a *Activities) RecordDecision(ctx context.Context, d catalog.Decision) error {
	err := a.Catalog.RecordDecision(ctx, d)
	if errors.Is(err, catalog.ErrNotFound) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadRequest, err)
	}
	return err
}

// ValidationRequest is the JSON body POSTed to an external validator (a CI job, a load test, a fairness
// check). The validator answers later with the verdict update on WorkflowID, quoting Token.
type ValidationRequest struct {
	SchemaVersion int    `json:"schemaVersion"`
	Validator     string `json:"validator"`
	// URL is where the request goes; it is not part of the body.
	URL            string    `json:"url,omitempty"`
	Model          string    `json:"model"`
	Version        int       `json:"version"`
	WorkflowID     string    `json:"workflowId"`
	ManifestURI    string    `json:"manifestUri"`
	ManifestDigest string    `json:"manifestDigest"`
	Token          string    `json:"token"`
	Deadline       time.Time `json:"deadline"`
}

// RequestValidation POSTs the validation request to the validator's URL until it answers 2xx.
func (a *Activities) RequestValidation(ctx context.Context, req ValidationRequest) error {
	url := req.URL
	req.URL = ""
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c := a.HTTP
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	return a.post(ctx, c, url, req.WorkflowID+"/validate/"+req.Validator, body)
}
