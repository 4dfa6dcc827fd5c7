package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"golang.org/x/sync/errgroup"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/names"
	"github.com/modelreg/modelreg/workflows"
)

// Artifacts travel through the API as content-addressed blobs: a training job asks which of its files
// the store lacks and where to send them, sends them (to the store itself on a presigned URL, or to
// the API, which checks them on the way), then registers the version naming them. A deployer fetches a
// version's file by its path. See docs/architecture.md, "Artifacts through the API".

// Upload limits. A plan covers as many files as a registration may list inline; a version of more
// files asks for several plans, the listing blob among them.
const (
	MaxPlanFiles = workflows.MaxInlineFiles
	// maxPlanBody fits MaxPlanFiles entries with the longest paths an artifact may have.
	maxPlanBody = 1 << 20
	// DefaultMaxUploadBytes bounds a blob sent through the API (S3's largest object).
	DefaultMaxUploadBytes = 5 << 40
	// uploadTTL is how long a presigned upload stays valid: long enough to send the batch of files a
	// plan covers, short enough that a leaked URL soon stops being usable (it only ever stores the
	// bytes it was signed for).
	uploadTTL = time.Hour
	// downloadTTL bounds a presigned download, which the client follows at once.
	downloadTTL = 10 * time.Minute
	// transferIdle is how long a streamed body may stall before the connection is dropped; a slow
	// client is not cut off, a dead one does not hold a connection forever.
	transferIdle = time.Minute
)

// UploadPlanRequest lists the files a client is about to register.
type UploadPlanRequest struct {
	Files []artifact.FileEntry `json:"files" minItems:"1" maxItems:"1000" doc:"The files (path, size, lowercase hex SHA-256), at most 1000 per request. A listing blob for a version of more files is one more entry (any path)."`
}

// UploadPlan says, for each distinct blob of the request, whether the store has it and where to send
// it otherwise.
type UploadPlan struct {
	Blobs []BlobPlan `json:"blobs"`
}

// BlobPlan is one blob of an UploadPlan.
type BlobPlan struct {
	SHA256  string        `json:"sha256"`
	Size    int64         `json:"size"`
	Present bool          `json:"present" doc:"The store already holds these bytes: do not send them."`
	Upload  *UploadTarget `json:"upload,omitempty" doc:"Where to send the bytes (absent when present)."`
}

// UploadTarget is the request that stores a blob. Either the store's own presigned URL (send no
// Authorization header: the signature is the credential), which refuses bytes of another size or
// digest; or the API's upload route, relative to the API's URL (send the bearer token), which does.
type UploadTarget struct {
	Method  string            `json:"method" doc:"PUT"`
	URL     string            `json:"url" doc:"Absolute (the store's presigned URL) or, with bearer, a path on this API."`
	Headers map[string]string `json:"headers" doc:"Send each header exactly as given (a presigned URL signs them)."`
	Bearer  bool              `json:"bearer" doc:"Send this API's bearer token with the request."`
	Expires *time.Time        `json:"expires,omitempty" doc:"When a presigned URL stops working; ask for a new plan after."`
}

// StoredBlob is what the upload route answers once the bytes are at their address.
type StoredBlob struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

type uploadPlanInput struct {
	ModelPath
	Body UploadPlanRequest
}

type uploadPlanOutput struct{ Body UploadPlan }

type putBlobInput struct {
	ModelPath
	SHA256        string `path:"sha256" minLength:"64" maxLength:"64" pattern:"^[0-9a-f]{64}$" doc:"The blob's lowercase hex SHA-256: its name and what its bytes must hash to."`
	ContentLength string `header:"Content-Length" doc:"The blob's size; required (a chunked body is refused)."`
}

type fileInput struct {
	VersionPath
	Path        string `path:"path" maxLength:"512" doc:"The file's path in the version; it may contain slashes (model/weights.bin)."`
	IfNoneMatch string `header:"If-None-Match" doc:"The file's ETag (its quoted SHA-256): 304 when it matches."`
	Range       string `header:"Range" doc:"A byte range (bytes=0-1023), answered 206 when the registry serves the bytes itself."`
}

type streamOutput struct{ Body func(huma.Context) }

// spansSegments marks an operation whose last path parameter may hold slashes (its value is the
// parameter's name). ServeMux spells such a parameter {name...}; OpenAPI has no such syntax, so the
// document keeps {name} and says so, and spanAdapter serves the wildcard.
const spansSegments = "spansSegments"

type spanAdapter struct{ huma.Adapter }

func (a spanAdapter) Handle(op *huma.Operation, h func(huma.Context)) {
	if name, ok := op.Metadata[spansSegments].(string); ok && strings.HasSuffix(op.Path, "{"+name+"}") {
		o := *op
		o.Path = strings.TrimSuffix(op.Path, "{"+name+"}") + "{" + name + "...}"
		op = &o
	}
	a.Adapter.Handle(op, h)
}

func (s *Server) artifactRoutes() {
	reg := s.api.OpenAPI().Components.Schemas
	jsonOf := func(v any, hint string) map[string]*huma.MediaType {
		return map[string]*huma.MediaType{"application/json": {Schema: reg.Schema(reflect.TypeOf(v), true, hint)}}
	}
	binary := map[string]*huma.MediaType{"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}

	huma.Register(s.api, huma.Operation{
		OperationID: "get-version-file", Method: http.MethodGet, Path: "/v1/models/{model}/versions/{version}/files/{path}", Tags: []string{"artifacts"},
		Summary: "Download one file of a version",
		Description: "With the S3 store, a 307 redirect to a presigned URL of the store (valid a few minutes); with the directory store, " +
			"the bytes, with Content-Length, Range support and ETag (the quoted SHA-256). Either way the ETag and Repr-Digest headers give the " +
			"file's SHA-256, which the client should check (the version's file list has it too). {path} may contain slashes.",
		Metadata: map[string]any{spansSegments: "path"},
		Responses: map[string]*huma.Response{
			"200": {Description: "The file's bytes.", Content: binary},
			"206": {Description: "The requested range of the file's bytes.", Content: binary},
			"304": {Description: "The file is the one the client has (If-None-Match)."},
			"307": {Description: "Fetch the bytes from the Location header (a presigned URL of the store; send no Authorization header)."},
		},
		Errors: []int{http.StatusBadRequest, http.StatusNotFound, http.StatusServiceUnavailable},
	}, s.getFile)

	huma.Register(s.api, huma.Operation{
		OperationID: "plan-upload", Method: http.MethodPost, Path: "/v1/models/{model}/uploads", Tags: []string{"artifacts"},
		Summary: "Plan the upload of a version's files",
		Description: "Needs the register role on the model (which need not exist yet). For each distinct blob of the files: whether the store " +
			"has it, and otherwise the request that stores it — a presigned PUT of the store, whose signed size and SHA-256 make the store " +
			"refuse other bytes, or a PUT to this API's upload route. Then register the version with POST /v1/models/{model}/versions. " +
			"A version of more than 1000 files registers with a listing blob (a JSON array of the files, see the README), uploaded the same way.",
		Security: bearer, MaxBodyBytes: maxPlanBody,
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusServiceUnavailable},
	}, s.planUpload)

	huma.Register(s.api, huma.Operation{
		OperationID: "put-blob", Method: http.MethodPut, Path: "/v1/models/{model}/uploads/{sha256}", Tags: []string{"artifacts"},
		Summary: "Upload one blob's bytes",
		Description: "Needs the register role on the model. The body is the file's bytes, Content-Length its size. They are hashed as they " +
			"arrive and stored under {sha256} only if they hash to it: other bytes are refused with 400 digest_mismatch and nothing is kept.",
		Security: bearer, DefaultStatus: http.StatusCreated,
		RequestBody: &huma.RequestBody{Required: true, Content: binary},
		Responses: map[string]*huma.Response{
			"201": {Description: "The bytes are stored under their digest.", Content: jsonOf(StoredBlob{}, "StoredBlob")},
		},
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusLengthRequired,
			http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable},
	}, s.putBlob)
}

func (s *Server) transfer() (artifact.Transfer, error) {
	t, ok := s.opts.Store.(artifact.Transfer)
	if !ok {
		return nil, apiError(http.StatusNotImplemented, "not_implemented", "this registry's artifact store cannot move bytes for clients")
	}
	return t, nil
}

func (s *Server) maxUpload() int64 {
	if s.opts.MaxUploadBytes > 0 {
		return s.opts.MaxUploadBytes
	}
	return DefaultMaxUploadBytes
}

func storeError(err error, what string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return apiError(http.StatusServiceUnavailable, "unavailable", "the artifact store did not answer in time")
	}
	return apiError(http.StatusServiceUnavailable, "store_unavailable", what+": "+err.Error())
}

func (s *Server) planUpload(ctx context.Context, in *uploadPlanInput) (*uploadPlanOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	if _, err := require(ctx, in.Model, RoleRegister); err != nil {
		return nil, err
	}
	tr, err := s.transfer()
	if err != nil {
		return nil, err
	}
	if len(in.Body.Files) == 0 {
		return nil, apiError(http.StatusBadRequest, "bad_file", "list at least one file")
	}
	blobs := []BlobPlan{}
	sizes := map[string]int64{}
	paths := make([]string, 0, len(in.Body.Files))
	seen := make(map[string]bool, len(in.Body.Files))
	for _, f := range in.Body.Files {
		if _, err := names.CleanArtifactPath(f.Path); err != nil {
			return nil, apiError(http.StatusBadRequest, "bad_file", err.Error())
		}
		// The files are (some of) one version's: what its registration would refuse, refuse before
		// anything is uploaded.
		if seen[f.Path] {
			return nil, apiError(http.StatusBadRequest, "bad_file", fmt.Sprintf("path %q listed twice", f.Path))
		}
		seen[f.Path] = true
		paths = append(paths, f.Path)
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 || strings.ToLower(f.SHA256) != f.SHA256 {
			return nil, apiError(http.StatusBadRequest, "bad_file", fmt.Sprintf("file %s: sha256 %q is not 64 lowercase hex digits", f.Path, f.SHA256))
		}
		if f.Size < 0 {
			return nil, apiError(http.StatusBadRequest, "bad_file", fmt.Sprintf("file %s: negative size %d", f.Path, f.Size))
		}
		if f.Size > s.maxUpload() {
			return nil, apiError(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("file %s is %d bytes; this registry takes at most %d through its API", f.Path, f.Size, s.maxUpload()))
		}
		if n, seen := sizes[f.SHA256]; seen {
			if n != f.Size {
				return nil, apiError(http.StatusBadRequest, "bad_file", fmt.Sprintf("sha256 %s is listed with sizes %d and %d", f.SHA256, n, f.Size))
			}
			continue
		}
		sizes[f.SHA256] = f.Size
		blobs = append(blobs, BlobPlan{SHA256: f.SHA256, Size: f.Size})
	}
	if err := names.CaseCollision(paths); err != nil {
		return nil, apiError(http.StatusBadRequest, "bad_file", err.Error())
	}
	// A round trip to the store per blob: a thousand of them one after the other would take seconds.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	var mu sync.Mutex
	var tooLarge error
	for i := range blobs {
		b := &blobs[i]
		g.Go(func() error {
			e := artifact.FileEntry{SHA256: b.SHA256, Size: b.Size}
			ok, err := tr.HasBlob(gctx, e)
			if err != nil {
				return storeError(err, "the artifact store could not be asked for blob "+b.SHA256)
			}
			if b.Present = ok; ok {
				return nil
			}
			req, err := tr.BlobUpload(gctx, e, uploadTTL)
			switch {
			case errors.Is(err, artifact.ErrTooLarge):
				mu.Lock()
				tooLarge = apiError(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("blob %s is %d bytes, more than this registry's store takes in one upload (%d); "+
					"register it with store credentials (starter register without --server) or from an s3:// source", b.SHA256, b.Size, int64(artifact.MaxSinglePut)))
				mu.Unlock()
				return nil
			case err != nil:
				return storeError(err, "the upload of blob "+b.SHA256+" could not be prepared")
			case req != nil:
				exp := req.Expires
				b.Upload = &UploadTarget{Method: req.Method, URL: req.URL, Headers: req.Header, Expires: &exp}
			default:
				b.Upload = &UploadTarget{Method: http.MethodPut, URL: "/v1/models/" + in.Model + "/uploads/" + b.SHA256,
					Headers: map[string]string{"Content-Length": strconv.FormatInt(b.Size, 10), "Content-Type": "application/octet-stream"}, Bearer: true}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if tooLarge != nil {
		return nil, tooLarge
	}
	return &uploadPlanOutput{Body: UploadPlan{Blobs: blobs}}, nil
}

func (s *Server) putBlob(ctx context.Context, in *putBlobInput) (*streamOutput, error) {
	if err := validModel(in.Model); err != nil {
		return nil, err
	}
	if _, err := require(ctx, in.Model, RoleRegister); err != nil {
		return nil, err
	}
	tr, err := s.transfer()
	if err != nil {
		return nil, err
	}
	if in.ContentLength == "" {
		return nil, apiError(http.StatusLengthRequired, "length_required", "send the blob with a Content-Length header (its size): a chunked body is refused")
	}
	size, err := strconv.ParseInt(in.ContentLength, 10, 64)
	if err != nil || size < 0 {
		return nil, apiError(http.StatusBadRequest, "bad_request", fmt.Sprintf("Content-Length %q is not a size", in.ContentLength))
	}
	if size > s.maxUpload() {
		return nil, apiError(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the blob is %d bytes; this registry takes at most %d through its API", size, s.maxUpload()))
	}
	e := artifact.FileEntry{SHA256: in.SHA256, Size: size}
	return &streamOutput{Body: func(hctx huma.Context) {
		r, w := humago.Unwrap(hctx)
		rc := http.NewResponseController(w)
		body := &idleReader{r: r.Body, rc: rc}
		err := tr.WriteBlob(r.Context(), e, body)
		_ = rc.SetWriteDeadline(time.Now().Add(transferIdle))
		var fail *Error
		switch {
		case err == nil:
		case errors.Is(err, artifact.ErrDigestMismatch):
			why := strings.TrimSuffix(err.Error(), ": "+artifact.ErrDigestMismatch.Error())
			fail = apiError(http.StatusBadRequest, "digest_mismatch", fmt.Sprintf("refused, nothing stored: the body is not blob %s of %d bytes (%s)", e.SHA256, e.Size, why))
		case errors.Is(err, artifact.ErrTooLarge):
			fail = apiError(http.StatusRequestEntityTooLarge, "too_large", err.Error())
		case body.err != nil:
			fail = apiError(http.StatusBadRequest, "incomplete_body", "the body could not be read to its end, nothing stored: "+body.err.Error())
		default:
			fail = storeError(err, "the blob could not be stored").(*Error)
		}
		if fail != nil {
			s.opts.Logger.Warn("upload refused", "model", in.Model, "sha256", e.SHA256, "size", e.Size, "code", fail.Code, "error", err.Error())
			_ = huma.WriteErr(s.api, hctx, fail.Status, fail.Message, fail)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(StoredBlob{SHA256: e.SHA256, Size: e.Size})
	}}, nil
}

// idleReader reads a request body, pushing the connection's read and write deadlines on while bytes
// arrive: the server's own timeouts are sized for JSON requests, not for gigabytes.
type idleReader struct {
	r      io.Reader
	rc     *http.ResponseController
	pushed time.Time
	err    error
}

func (b *idleReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(b.pushed) > time.Second {
		b.pushed = now
		_ = b.rc.SetReadDeadline(now.Add(transferIdle))
		_ = b.rc.SetWriteDeadline(now.Add(2 * transferIdle))
	}
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// idleWriter does the same for a response body.
type idleWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	pushed time.Time
}

func (w *idleWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(w.pushed) > time.Second {
		w.pushed = now
		_ = w.rc.SetWriteDeadline(now.Add(transferIdle))
	}
	return w.ResponseWriter.Write(p)
}

func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) getFile(ctx context.Context, in *fileInput) (*streamOutput, error) {
	v, err := s.version(ctx, &in.VersionPath)
	if err != nil {
		return nil, err
	}
	if v.ManifestDigest == "" {
		return nil, apiError(http.StatusNotFound, "no_files", fmt.Sprintf("%s v%d has no stored files (stage %s)", v.Model, v.Version, v.Stage))
	}
	m, err := s.manifest(ctx, v)
	if err != nil {
		return nil, storeError(err, "the version's manifest could not be read")
	}
	i, found := slices.BinarySearchFunc(m.Files, in.Path, func(f artifact.FileEntry, p string) int { return strings.Compare(f.Path, p) })
	if !found {
		return nil, apiError(http.StatusNotFound, "file_not_found", fmt.Sprintf("%s v%d has no file %q", v.Model, v.Version, in.Path))
	}
	f := m.Files[i]
	etag := `"` + f.SHA256 + `"`
	headers := func(h http.Header) {
		h.Set("ETag", etag)
		// RFC 9530: the digest of the whole file, whatever range or redirect this answer is.
		b, _ := hex.DecodeString(f.SHA256)
		h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(b)+":")
	}
	if etagMatches(in.IfNoneMatch, etag) {
		return &streamOutput{Body: func(hctx huma.Context) {
			_, w := humago.Unwrap(hctx)
			headers(w.Header())
			w.WriteHeader(http.StatusNotModified)
		}}, nil
	}
	tr, err := s.transfer()
	if err != nil {
		return nil, err
	}
	d, err := tr.BlobDownload(ctx, f.SHA256, downloadTTL)
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, apiError(http.StatusServiceUnavailable, "blob_missing", fmt.Sprintf("the store has lost the bytes of %s v%d %s (sha256 %s); starter check reports it", v.Model, v.Version, f.Path, f.SHA256))
	}
	if err != nil {
		return nil, storeError(err, "the file could not be read")
	}
	return &streamOutput{Body: func(hctx huma.Context) {
		r, w := humago.Unwrap(hctx)
		headers(w.Header())
		if d.URL != "" {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Location", d.URL)
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		defer d.Content.Close()
		// A version's files never change.
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("Content-Type", "application/octet-stream")
		if cd := mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(f.Path)}); cd != "" {
			w.Header().Set("Content-Disposition", cd)
		}
		http.ServeContent(&idleWriter{ResponseWriter: w, rc: http.NewResponseController(w)}, r, "", d.ModTime, d.Content)
	}}, nil
}
