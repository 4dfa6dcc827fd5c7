// Package activities holds everything the registry's workflows do to the outside world: the artifact
// store, the catalog, webhooks, and updates sent to other workflows. Activities are methods on one struct
// that carries those dependencies; each one is idempotent, because Temporal may run it more than once.
package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/metrics"
	"github.com/modelreg/modelreg/internal/names"
)

// Activities carries the dependencies of every activity.
type Activities struct {
	Catalog *catalog.Catalog
	Store   artifact.Store
	// SourceS3 reads s3:// registration sources; nil means such sources are refused.
	SourceS3 *s3.Client
	// Temporal sends updates to other workflows (archive, restore, promote).
	Temporal client.Client
	// HTTP posts deployment events.
	HTTP *http.Client
	// TempDir holds files being imported from s3:// sources.
	TempDir string
	// WebhookSecret (MODELREG_WEBHOOK_SECRET) signs every POST the registry makes with SignatureHeader;
	// empty means requests go unsigned.
	WebhookSecret []byte
	// Metrics counts what the activities do; nil counts nothing.
	Metrics *metrics.Registry
}

// Error types callers may match on; they are not retried.
const (
	ErrTypeBadSource  = "BadSource"
	ErrTypeRejected   = "UpdateRejected"
	ErrTypeBadRequest = "BadRequest"
	// ErrTypeRefusedByReceiver: a webhook answered 4xx (other than 408 and 429); the delivery ends.
	ErrTypeRefusedByReceiver = "RefusedByReceiver"
	// ErrTypeRefused is the type of the refusals the registry's workflows send back (workflows uses
	// it); ErrTypeRefusedByWorkflow is UpdateWorkflow's error for such a refusal.
	ErrTypeRefused           = "Refused"
	ErrTypeRefusedByWorkflow = "RefusedByWorkflow"
	// ErrTypeFenced: a catalog write this run made was turned away by a newer one.
	ErrTypeFenced = "Fenced"
	// ErrTypeNotRunning: the update's target workflow is not running.
	ErrTypeNotRunning = "NotRunning"
	// ErrTypeBusy: the target refused the update for now (a model's workflow with as many promotions
	// waiting for its lock as it takes); UpdateWorkflow sends it again shortly. Retried, not a verdict.
	ErrTypeBusy = "Busy"
	// ErrTypeNotMine: a write on behalf of a request (a rollback) whose claim another handler took over
	// (catalog.ErrRequestNotMine); nothing was written.
	ErrTypeNotMine = "NotMine"
)

// busyRetryDelay is how soon UpdateWorkflow sends an update refused as busy again: about the time one
// production switch takes, with jitter so that the waiting versions do not all come back at once.
var busyRetryDelay = func() time.Duration { return 500*time.Millisecond + time.Duration(rand.Int64N(int64(time.Second))) }

// CreateVersion writes the catalog row of a freshly minted version (stage Registered, seq 1).
func (a *Activities) CreateVersion(ctx context.Context, v catalog.Version) error {
	err := a.Catalog.CreateVersion(ctx, v)
	if errors.Is(err, catalog.ErrConflict) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadRequest, err)
	}
	return err
}

// RecordTransition moves a version's catalog stage, fenced by seq, and appends the audit row. Leaving or
// entering Archived also moves the archived mark on the version's artifacts.
//
// The catalog goes first and the mark follows what it holds afterwards: a transition the catalog refuses
// (a second Production version) leaves the mark alone, and a late retry that the fence turns away (a
// newer transition is stored) does not overwrite the mark that newer transition set. A retry after a
// crash between the two writes finds its own seq stored and sets the mark again.
func (a *Activities) RecordTransition(ctx context.Context, t catalog.Transition) error {
	applied, err := a.Catalog.RecordTransition(ctx, t)
	if err != nil {
		return err
	}
	if applied {
		a.observeTransition(ctx, t)
	}
	if !applied {
		// Not applied: a retry of this very transition (the row holds its seq), or the row is past it,
		// which only happens when this run of the version's workflow is not the lifecycle's own (started
		// again under the ID of a closed one, or reset): it must not go on as if it were.
		v, err := a.Catalog.GetVersion(ctx, t.Model, t.Version)
		if err != nil {
			return err
		}
		if v.Seq > t.Seq {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"the catalog holds a newer state of %s v%d (seq %d, %s) than this run of its workflow (seq %d, %s -> %s): "+
					"the run was started or reset outside the lifecycle and stops here", t.Model, t.Version, v.Seq, v.Stage, t.Seq, t.From, t.To),
				ErrTypeFenced, nil)
		}
	}
	if t.To != catalog.StageArchived && !(t.From == catalog.StageArchived && t.To == catalog.StageProduction) {
		return nil
	}
	v, err := a.Catalog.GetVersion(ctx, t.Model, t.Version)
	if err != nil {
		return err
	}
	if v.Seq != t.Seq {
		return nil // fenced off: a newer transition owns the mark
	}
	return a.Store.SetArchived(ctx, t.Model, t.Version, v.Stage == catalog.StageArchived)
}

// SetProductionInput moves the model's production pointer.
type SetProductionInput struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	Seq     int64  `json:"seq"`
	// Request, if set, is the claimed request the switch answers: its outcome is written with the pointer.
	Request *catalog.RequestDone `json:"request,omitempty"`
	// Promoted, if set, is a promotion's audit: the version moves from Approved to Production with the
	// pointer (catalog.SetProductionPromoting).
	Promoted *catalog.Promoted `json:"promoted,omitempty"`
}

// SetProduction moves the catalog's production pointer, fenced by the model's seq.
func (a *Activities) SetProduction(ctx context.Context, in SetProductionInput) error {
	v := in.Version
	var p *int
	if v > 0 {
		p = &v
	}
	_, err := a.Catalog.SetProduction(ctx, in.Model, p, in.Seq)
	return err
}

// StoreArtifactsInput names a version and its source.
type StoreArtifactsInput struct {
	Model     string               `json:"model"`
	Version   int                  `json:"version"`
	SourceURI string               `json:"sourceUri,omitempty"`
	Files     []artifact.FileEntry `json:"files,omitempty"`
	// Listing names the version's file list stored as a blob. When the workflow gives neither a source
	// URI, files nor a listing, StoreArtifacts asks the version's workflow for its request's listing.
	Listing *artifact.ListingRef `json:"listing,omitempty"`
}

// StoreArtifactsResult says where the version's manifest is.
type StoreArtifactsResult struct {
	ManifestURI    string `json:"manifestUri"`
	ManifestDigest string `json:"manifestDigest"`
	Files          int    `json:"files"`
	TotalBytes     int64  `json:"totalBytes"`
}

// StoreArtifacts makes the version's files content-addressed blobs (importing them from an s3:// source,
// or checking that the uploaded ones are there) and writes its manifest once.
func (a *Activities) StoreArtifacts(ctx context.Context, in StoreArtifactsInput) (StoreArtifactsResult, error) {
	files := in.Files
	switch {
	case in.SourceURI != "":
		if a.SourceS3 == nil {
			return StoreArtifactsResult{}, temporal.NewNonRetryableApplicationError(
				"this registry has no S3 client configured for s3:// sources (set MODELREG_SOURCE_S3_* or MODELREG_S3_*)", ErrTypeBadSource, nil)
		}
		imported, err := artifact.ImportS3Prefix(ctx, a.SourceS3, in.SourceURI, meteredStore{a.Store, a.Metrics}, a.TempDir, heartbeat(ctx))
		if err != nil {
			if errors.Is(err, artifact.ErrNotFound) || names.IsCaseCollision(err) {
				return StoreArtifactsResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadSource, err)
			}
			return StoreArtifactsResult{}, err
		}
		files = imported
	default:
		ref := in.Listing
		if ref == nil && len(files) == 0 {
			var err error
			if ref, err = a.requestListing(ctx); err != nil {
				return StoreArtifactsResult{}, err
			}
		}
		if ref != nil {
			listed, err := artifact.ReadListing(ctx, a.Store, *ref)
			if errors.Is(err, artifact.ErrBadListing) {
				return StoreArtifactsResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadSource, err)
			}
			if err != nil {
				return StoreArtifactsResult{}, err
			}
			files = listed
		}
		if err := a.checkUploaded(ctx, files); err != nil {
			return StoreArtifactsResult{}, err
		}
	}
	if len(files) == 0 {
		return StoreArtifactsResult{}, temporal.NewNonRetryableApplicationError("the version has no artifact files", ErrTypeBadSource, nil)
	}
	// The register update's validator refuses such paths inline, but a request it accepted before it did
	// may still be storing: fail it now, not after the manifest write's retries.
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	if err := names.CaseCollision(paths); err != nil {
		return StoreArtifactsResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadSource, err)
	}
	// An error here must fail the attempt before anything is written: a manifest written with another
	// time would contradict the next attempt's, and ErrManifestConflict fails the version for good.
	createdAt, err := a.versionCreatedAt(ctx, in.Model, in.Version)
	if err != nil {
		return StoreArtifactsResult{}, err
	}
	files = append([]artifact.FileEntry(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	m := artifact.Manifest{
		SchemaVersion: artifact.ManifestSchemaVersion,
		Model:         in.Model,
		Version:       in.Version,
		Files:         files,
		// The manifest is written once; a retry must produce the same bytes, so its time comes from the
		// catalog row (stable across attempts), not from the clock.
		CreatedAt: createdAt,
	}
	uri, digest, err := a.Store.PutManifest(ctx, m)
	if err != nil {
		if errors.Is(err, artifact.ErrManifestConflict) {
			return StoreArtifactsResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadSource, err)
		}
		return StoreArtifactsResult{}, err
	}
	if err := a.Catalog.SetManifest(ctx, in.Model, in.Version, uri, digest); err != nil {
		return StoreArtifactsResult{}, err
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	a.Metrics.ManifestWritten(total)
	return StoreArtifactsResult{ManifestURI: uri, ManifestDigest: digest, Files: len(files), TotalBytes: total}, nil
}

// statConcurrency is how many blobs checkUploaded stats at once: a listing of 100,000 files checked one
// request at a time would take minutes of round trips.
const statConcurrency = 16

// checkUploaded checks that every file's blob is stored with the registered size.
func (a *Activities) checkUploaded(ctx context.Context, files []artifact.FileEntry) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statConcurrency)
	var checked atomic.Int64
	for _, f := range files {
		g.Go(func() error {
			size, err := a.Store.StatBlob(gctx, f.SHA256)
			if errors.Is(err, artifact.ErrNotFound) {
				return temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("file %q (sha256 %s) was never uploaded to the artifact store", f.Path, f.SHA256), ErrTypeBadSource, err)
			}
			if err != nil {
				return err
			}
			if size != f.Size {
				return temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("file %q: stored blob has %d bytes, registration says %d", f.Path, size, f.Size), ErrTypeBadSource, nil)
			}
			if checked.Add(1)%256 == 0 {
				activity.RecordHeartbeat(gctx)
			}
			return nil
		})
	}
	return g.Wait()
}

// describeQuery is workflows.QueryDescribe (this package cannot import workflows).
const describeQuery = "describe"

// requestListing asks the version's workflow (the one running this activity) for its registration's
// source.listing. The workflow hands StoreArtifacts the source's URI and files but not the listing,
// and the request is in the workflow's input, which only the workflow itself can tell.
func (a *Activities) requestListing(ctx context.Context) (*artifact.ListingRef, error) {
	if a.Temporal == nil {
		return nil, temporal.NewNonRetryableApplicationError("the version has no artifact files", ErrTypeBadSource, nil)
	}
	wf := activity.GetInfo(ctx).WorkflowExecution
	v, err := a.Temporal.QueryWorkflow(ctx, wf.ID, wf.RunID, describeQuery)
	if err != nil {
		return nil, fmt.Errorf("ask workflow %s for its request's listing: %w", wf.ID, err)
	}
	var d struct {
		Request struct {
			Source struct {
				Listing *artifact.ListingRef `json:"listing"`
			} `json:"source"`
		} `json:"request"`
	}
	if err := v.Get(&d); err != nil {
		return nil, fmt.Errorf("ask workflow %s for its request's listing: %w", wf.ID, err)
	}
	if d.Request.Source.Listing == nil {
		return nil, temporal.NewNonRetryableApplicationError("the version has no artifact files", ErrTypeBadSource, nil)
	}
	return d.Request.Source.Listing, nil
}

func (a *Activities) versionCreatedAt(ctx context.Context, model string, version int) (time.Time, error) {
	v, err := a.Catalog.GetVersion(ctx, model, version)
	if err != nil {
		return time.Time{}, err
	}
	return v.CreatedAt.UTC().Truncate(time.Second), nil
}

// heartbeat reports progress at most once a second, and not in the activity's first second: the SDK
// sends an activity's first heartbeat at once, a call to the server that writes the activity's state,
// which work done within a second does not need (heartbeat timeouts are 15 s and more), and which
// validation made once per lifecycle. It is safe for concurrent use.
func heartbeat(ctx context.Context) artifact.Progress {
	var mu sync.Mutex
	last := time.Now()
	return func(done int64) {
		mu.Lock()
		due := time.Since(last) >= time.Second
		if due {
			last = time.Now()
		}
		mu.Unlock()
		if due {
			activity.RecordHeartbeat(ctx, done)
		}
	}
}

// DeploymentEvent is the JSON body POSTed to a model's webhooks when its production version changes.
// Receivers deduplicate on EventID: a retry delivers the same event again.
type DeploymentEvent struct {
	SchemaVersion   int       `json:"schemaVersion"`
	EventID         string    `json:"eventId"`
	Kind            string    `json:"kind"` // promote or rollback
	Model           string    `json:"model"`
	Version         int       `json:"version"`
	Stage           string    `json:"stage"`
	PreviousVersion int       `json:"previousVersion,omitempty"`
	ManifestURI     string    `json:"manifestUri"`
	ManifestDigest  string    `json:"manifestDigest"`
	At              time.Time `json:"at"`
}

// NotifyDeployment POSTs the event to every webhook of the model's policy until each acknowledges it
// with a 2xx. Webhooks already acknowledged in an earlier attempt are skipped (heartbeat details).
func (a *Activities) NotifyDeployment(ctx context.Context, ev DeploymentEvent) error {
	v, err := a.Catalog.GetVersion(ctx, ev.Model, ev.Version)
	if err != nil {
		return err
	}
	ev.ManifestURI, ev.ManifestDigest = v.ManifestURI, v.ManifestDigest
	policy, err := a.Catalog.GetPolicy(ctx, ev.Model)
	if err != nil {
		return err
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &done)
	}
	client := a.HTTP
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	// done holds, per webhook, whether it acknowledged (true) or refused (false) the event in this or an
	// earlier attempt; neither is asked again. Temporal only sees an *ApplicationError returned as is,
	// so refusals are reported as one, and only once every other webhook has acknowledged.
	var retry, refusals []error
	for _, url := range policy.Webhooks {
		if _, asked := done[url]; asked {
			continue
		}
		err := a.post(ctx, client, url, ev.EventID, body)
		var appErr *temporal.ApplicationError
		switch {
		case err == nil:
			done[url] = true
		case errors.As(err, &appErr) && appErr.Type() == ErrTypeRefusedByReceiver:
			done[url] = false
			refusals = append(refusals, err)
		default:
			retry = append(retry, err)
			continue
		}
		activity.RecordHeartbeat(ctx, done)
	}
	if len(retry) > 0 {
		return errors.Join(retry...)
	}
	if len(refusals) == 0 {
		for url, ok := range done {
			if !ok {
				refusals = append(refusals, fmt.Errorf("webhook %s refused the event in an earlier attempt", url))
			}
		}
	}
	if len(refusals) > 0 {
		return temporal.NewNonRetryableApplicationError(errors.Join(refusals...).Error(), ErrTypeRefusedByReceiver, nil)
	}
	return nil
}

// post sends one JSON body, signed with the webhook secret when there is one. The signature is made
// per attempt, so a retry carries a fresh timestamp.
func (a *Activities) post(ctx context.Context, c *http.Client, url, eventID string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("webhook URL %q: %v", url, err), ErrTypeBadRequest, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", eventID)
	sum := sha256.Sum256(body)
	req.Header.Set("Digest", "sha-256="+hex.EncodeToString(sum[:]))
	if len(a.WebhookSecret) > 0 {
		req.Header.Set(SignatureHeader, Sign(a.WebhookSecret, time.Now(), body))
	}
	// Errors end up in logs and in Temporal's history: a password in the URL is not shown there.
	shown := req.URL.Redacted()
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", shown, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		// A receiver that refuses the event (400 Bad Request, 403, 404, 410 …) will refuse it again:
		// retrying for ever would only hide that. Timeouts and rate limits are worth another try.
		if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("webhook %s refused the event: %s", shown, resp.Status), ErrTypeRefusedByReceiver, nil)
		}
		return fmt.Errorf("webhook %s answered %s", shown, resp.Status)
	}
	return nil
}

// UpdateWorkflowInput sends an update to another workflow and waits for its result. UpdateID makes it
// exactly-once: a retried activity re-attaches to the same update instead of running it twice.
type UpdateWorkflowInput struct {
	WorkflowID string          `json:"workflowId"`
	UpdateName string          `json:"updateName"`
	UpdateID   string          `json:"updateId"`
	Arg        json.RawMessage `json:"arg"`
	// With StartWorkflowType set, the target is started (with StartArg, on StartTaskQueue) if it is not
	// running, and the update sent with the start: update-with-start.
	StartWorkflowType string          `json:"startWorkflowType,omitempty"`
	StartTaskQueue    string          `json:"startTaskQueue,omitempty"`
	StartArg          json.RawMessage `json:"startArg,omitempty"`
	// StartSummary and StartDetails are the started workflow's user metadata (what the Temporal UI
	// shows); they apply only when this start is the one that creates the run.
	StartSummary string `json:"startSummary,omitempty"`
	StartDetails string `json:"startDetails,omitempty"`
}

// renamedUpdates maps the old names of internal updates to their names now. An activity scheduled
// before a rename carries the old name in its recorded input, and its retries run on upgraded workers
// whose workflows may no longer accept it (workflows.UpdatePromote says why promote was renamed).
var renamedUpdates = map[string]string{"promote": "system:promote"}

// CurrentUpdateName is the name an update scheduled as name is sent under now.
func CurrentUpdateName(name string) string {
	if n, ok := renamedUpdates[name]; ok {
		return n
	}
	return name
}

// UpdateWorkflow runs the update and returns its JSON result. A refusal by the update's validator is
// returned as a non-retryable error carrying the validator's message.
func (a *Activities) UpdateWorkflow(ctx context.Context, in UpdateWorkflowInput) (json.RawMessage, error) {
	// The update may wait behind other promotions; heartbeating lets a short heartbeat timeout notice a
	// crashed worker while a healthy one waits as long as it takes.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	in.UpdateName = CurrentUpdateName(in.UpdateName)
	opts := client.UpdateWorkflowOptions{
		WorkflowID:   in.WorkflowID,
		UpdateName:   in.UpdateName,
		UpdateID:     in.UpdateID,
		Args:         []any{in.Arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	}
	var h client.WorkflowUpdateHandle
	var err error
	if in.StartWorkflowType != "" {
		op := a.Temporal.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
			ID: in.WorkflowID, TaskQueue: in.StartTaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			StaticSummary:            in.StartSummary, StaticDetails: in.StartDetails,
		}, in.StartWorkflowType, in.StartArg)
		h, err = a.Temporal.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: op, UpdateOptions: opts})
	} else {
		h, err = a.Temporal.UpdateWorkflow(ctx, opts)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		// Without update-with-start, a target that is not running will not start by itself: retrying
		// for ever would hold up whoever sent it (a switch of the model's production) without a word.
		return nil, a.notRunning(ctx, in, err)
	}
	if err != nil {
		return nil, err
	}
	var out json.RawMessage
	if err := h.Get(ctx, &out); err != nil {
		var appErr *temporal.ApplicationError
		switch {
		case errors.As(err, &appErr) && appErr.Type() == "AcceptedUpdateCompletedWorkflow":
			// The target ended (terminated, reset, continued as new) while the update ran: that is no
			// answer to the request, so it is sent again, to the target's next run. A target that ended
			// for good has no next run, and sending again would get this answer for ever (with
			// update-with-start, sending again starts the next run).
			if in.StartWorkflowType != "" {
				return nil, fmt.Errorf("%s of %s: %w", in.UpdateName, in.WorkflowID, err)
			}
			return nil, a.notRunning(ctx, in, err)
		case errors.As(err, &appErr) && appErr.Type() == ErrTypeBusy:
			return nil, temporal.NewApplicationErrorWithOptions(fmt.Sprintf("%s of %s: %s", in.UpdateName, in.WorkflowID, appErr.Error()), ErrTypeBusy,
				temporal.ApplicationErrorOptions{NextRetryDelay: busyRetryDelay(), Cause: err})
		case errors.As(err, &appErr) && appErr.Type() == ErrTypeRefused:
			// The target checked the request and refused it, with the reason.
			return nil, temporal.NewNonRetryableApplicationError(appErr.Error(), ErrTypeRefusedByWorkflow, err)
		case errors.As(err, &appErr):
			return nil, temporal.NewNonRetryableApplicationError(appErr.Error(), ErrTypeRejected, err)
		}
		return nil, err
	}
	return out, nil
}

// notRunning answers an update whose target was not running when it was sent, or ended before it
// completed (err). How the target ended is the error's detail, for a sender that has something to do
// about a closed target (a switch archives such a version itself); one that runs again by now (a new run
// under its ID) gets the request again instead.
func (a *Activities) notRunning(ctx context.Context, in UpdateWorkflowInput, err error) error {
	status := "NotFound"
	d, derr := a.Temporal.DescribeWorkflowExecution(ctx, in.WorkflowID, "")
	var nf *serviceerror.NotFound
	switch {
	case derr == nil:
		status = statusName(d.GetWorkflowExecutionInfo().GetStatus())
	case !errors.As(derr, &nf):
		return fmt.Errorf("%s of %s: the workflow is not running (%v), and describing it failed: %w", in.UpdateName, in.WorkflowID, err, derr)
	}
	if status == "Running" {
		return fmt.Errorf("%s of %s: the workflow was not running, and runs again: %w", in.UpdateName, in.WorkflowID, err)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s of %s: the workflow is not running (%s): %v", in.UpdateName, in.WorkflowID, status, err), ErrTypeNotRunning, err, status)
}

// observeTransition counts an applied transition and, for a decision, how long the version waited.
func (a *Activities) observeTransition(ctx context.Context, t catalog.Transition) {
	if a.Metrics == nil {
		return
	}
	a.Metrics.Transitioned(t.From, t.To)
	if t.From != catalog.StagePendingApproval || (t.To != catalog.StageApproved && t.To != catalog.StageRejected) {
		return
	}
	trail, err := a.Catalog.Transitions(ctx, t.Model, t.Version)
	if err != nil {
		return // a metric is not worth failing a transition over
	}
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	for i := len(trail) - 1; i >= 0; i-- {
		if trail[i].To == catalog.StagePendingApproval {
			a.Metrics.ApprovalWaited(strings.ToLower(t.To), at.Sub(trail[i].At))
			return
		}
	}
}

// meteredStore counts the bytes an import writes and the bytes it finds already stored. PutFile's
// progress ends at the file's size for a blob already stored and at twice the size for one it wrote
// (artifact.Progress), which tells the two apart without a second request.
type meteredStore struct {
	artifact.Store
	m *metrics.Registry
}

func (s meteredStore) PutFile(ctx context.Context, localPath string, progress artifact.Progress) (artifact.FileEntry, error) {
	var done int64
	e, err := s.Store.PutFile(ctx, localPath, func(n int64) {
		done = n
		if progress != nil {
			progress(n)
		}
	})
	if err == nil {
		s.m.BlobPut(e.Size, done <= e.Size)
	}
	return e, err
}
