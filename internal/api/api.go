// Package api is the registry's HTTP/JSON front door, served by the worker process: deployers read and
// watch what is in production, training jobs register versions, approvers decide, and operators roll
// back and set policies, without credentials for Temporal, the catalog or the artifact store.
//
// Routes are declared with huma, which derives the OpenAPI 3.1 document served at /v1/openapi.json from
// the same Go declarations that serve the requests; a test fails if any route the server answers is
// missing from the document or the other way round. Reads come from the catalog and work while no
// worker polls; writes are Temporal updates sent as the bearer token's principal. See
// docs/architecture.md, "HTTP API".
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"go.temporal.io/sdk/client"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/metrics"
)

// Version is the API's version; its routes are under /v1.
const Version = "1.0.0"

// OpenAPIPath is where the OpenAPI document is served (and /v1/openapi.yaml).
const OpenAPIPath = "/v1/openapi"

// MaxWait bounds a long poll; clients re-issue the request.
const MaxWait = 60 * time.Second

// Options are the API server's dependencies.
type Options struct {
	Catalog *catalog.Catalog
	Store   artifact.Store
	// Temporal sends writes; nil answers every write 503 (reads keep working) until SetTemporal.
	Temporal client.Client
	// Auth resolves bearer tokens; nil refuses every write.
	Auth   *Authenticator
	Logger *slog.Logger
	// WatchInterval is how often the production views are refreshed from the catalog (default 200ms):
	// GET …/production may be that much behind, and long polls wake within it.
	WatchInterval time.Duration
	// Ready reports whether Temporal is reachable, for /readyz; nil checks Temporal's health API.
	Ready func(ctx context.Context) error
	// Metrics, when set, is served at /metrics and counts every request.
	Metrics *metrics.Registry
	// Sources are the s3://bucket/prefix URIs a registration may import from; none: s3:// sources
	// are refused (the worker's credentials would copy whatever they can read for any registrant).
	Sources []string
	// MaxUploadBytes bounds one file sent through the API (default DefaultMaxUploadBytes).
	MaxUploadBytes int64
}

// Server serves the API.
type Server struct {
	opts      Options
	mux       *recordingMux
	api       huma.API
	watch     *watcher
	manifests sync.Map // "model/version/digest" → artifact.Manifest; manifests are immutable
	tclient   atomic.Pointer[client.Client]
}

// SetTemporal gives the server its Temporal client once connected: the worker serves reads while
// Temporal is still unreachable.
func (s *Server) SetTemporal(c client.Client) { s.tclient.Store(&c) }

// tc is the Temporal client, nil until there is one.
func (s *Server) tc() client.Client {
	if c := s.tclient.Load(); c != nil {
		return *c
	}
	return nil
}

// New builds the server; Run must be called for long polls to be answered.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = 200 * time.Millisecond
	}
	s := &Server{opts: opts, mux: newRecordingMux()}
	if opts.Temporal != nil {
		s.SetTemporal(opts.Temporal)
	}
	s.watch = newWatcher(opts.Catalog, opts.WatchInterval, opts.Logger, s.loadProduction)
	cfg := huma.DefaultConfig("modelreg", Version)
	cfg.Info.Description = "The model registry's HTTP API: models, versions, production, decisions and policies. " +
		"Writes need a bearer token; errors are JSON objects with a stable code and a message."
	cfg.OpenAPIPath = OpenAPIPath
	cfg.DocsPath = ""
	cfg.SchemasPath = ""
	// No $schema links in bodies: clients in any language decode plain objects.
	cfg.CreateHooks = nil
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "A token from the registry's tokens file (MODELREG_API_TOKENS_FILE)."},
	}
	s.api = huma.NewAPI(cfg, spanAdapter{humago.NewAdapter(s.mux, "")})
	s.api.UseMiddleware(s.authenticate)
	opts.Metrics.Watchers(s.watch.watching)
	s.routes()
	return s
}

// Run answers long polls until ctx ends.
func (s *Server) Run(ctx context.Context) { s.watch.run(ctx) }

// Handler is the API's HTTP handler. It counts and times every request by its route pattern (never the
// raw path: model names would make the label set unbounded) and the status it was answered with; a
// client that went away before its answer (a long poll given up) is status 499, as in nginx's logs,
// not a server error.
func (s *Server) Handler() http.Handler {
	if s.opts.Metrics == nil {
		return s.mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		s.mux.ServeHTTP(rec, r)
		method, route, ok := strings.Cut(r.Pattern, " ")
		if !ok {
			method, route = r.Method, r.Pattern
		}
		status := rec.status
		switch {
		case r.Context().Err() != nil && status == 0, r.Context().Err() != nil && status >= 500:
			status = 499
		case status == 0:
			status = http.StatusOK
		}
		s.opts.Metrics.HTTPRequest(route, method, status, time.Since(start))
	})
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush and Unwrap keep streaming and http.ResponseController working through the wrapper.
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Routes lists every "METHOD /path" pattern the server answers, for the drift test.
func (s *Server) Routes() []string { return s.mux.patterns() }

// recordingMux is a ServeMux that remembers its patterns, so a test can compare what is served with
// what the OpenAPI document says.
type recordingMux struct {
	*http.ServeMux
	mu   sync.Mutex
	pats []string
}

func newRecordingMux() *recordingMux {
	m := &recordingMux{ServeMux: http.NewServeMux()}
	// Anything else is a JSON 404, never Go's text one.
	m.ServeMux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "route_not_found", fmt.Sprintf("no route %s %s (the API is described at %s.json)", r.Method, r.URL.Path, OpenAPIPath))
	})
	return m
}

func (m *recordingMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.mu.Lock()
	m.pats = append(m.pats, pattern)
	m.mu.Unlock()
	m.ServeMux.HandleFunc(pattern, h)
}

func (m *recordingMux) Handle(pattern string, h http.Handler) { m.HandleFunc(pattern, h.ServeHTTP) }

func (m *recordingMux) patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.pats...)
}

// Error is every error the API answers: a stable machine-readable code and a message for people.
type Error struct {
	Status  int      `json:"-"`
	Code    string   `json:"code" doc:"Stable machine-readable code, e.g. not_found, unauthenticated, forbidden, refused, bad_cursor, body_too_large."`
	Message string   `json:"message" doc:"What went wrong, for people."`
	Details []string `json:"details,omitempty" doc:"Each problem found in the request, when there are several."`
}

func (e *Error) Error() string  { return e.Message }
func (e *Error) GetStatus() int { return e.Status }

// ContentType keeps errors application/json: clients need one content type to decode.
func (e *Error) ContentType(string) string { return "application/json" }

func apiError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// codeOf names the errors huma itself raises (validation, content negotiation, body limits).
func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusNotAcceptable:
		return "not_acceptable"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusUnprocessableEntity:
		return "invalid_request"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return "error"
}

func init() {
	// huma's own errors (a malformed body, a failed validation) come out in the same shape as ours.
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		e := &Error{Status: status, Code: codeOf(status), Message: msg}
		for _, x := range errs {
			if x == nil {
				continue
			}
			var ours *Error
			if errors.As(x, &ours) {
				return ours
			}
			if len(e.Details) == maxErrorDetails {
				e.Details = append(e.Details, "(more problems not listed)")
				break
			}
			e.Details = append(e.Details, detail(x))
		}
		if status == http.StatusRequestEntityTooLarge || strings.Contains(msg, "too large") {
			e.Status, e.Code = http.StatusRequestEntityTooLarge, "body_too_large"
		}
		return e
	}
}

// maxErrorDetails bounds the problems one error lists: a body of a thousand bad fields must not make a
// response a thousand times its size.
const maxErrorDetails = 10

// detail is one problem of a request for its error: huma's validation messages quote the offending
// value (a Go dump of the whole object for an unexpected property), so only the message and the
// location are kept.
func detail(err error) string {
	var d *huma.ErrorDetail
	if errors.As(err, &d) {
		msg := d.Message
		if d.Location != "" {
			msg = d.Location + ": " + msg
		}
		return truncate(msg, 200)
	}
	return truncate(err.Error(), 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"code\":%q,\"message\":%q}\n", code, msg)
}

type ctxKey int

const principalKey ctxKey = 0

// authenticate resolves the bearer token of every request. A token that is present but wrong is
// refused here, even on reads: a client with a typo learns at once instead of on its first write.
func (s *Server) authenticate(ctx huma.Context, next func(huma.Context)) {
	p, err := s.opts.Auth.Resolve(ctx.Header("Authorization"))
	if err != nil {
		ctx.SetHeader("WWW-Authenticate", `Bearer realm="modelreg"`)
		_ = huma.WriteErr(s.api, ctx, http.StatusUnauthorized, err.Error(), apiError(http.StatusUnauthorized, "unauthenticated", err.Error()))
		return
	}
	// Writes are refused before their body is read and validated: a request without the role costs
	// the server nothing, whatever it carries.
	if op := ctx.Operation(); len(op.Security) > 0 {
		if p == nil {
			ctx.SetHeader("WWW-Authenticate", `Bearer realm="modelreg"`)
			_ = huma.WriteErr(s.api, ctx, http.StatusUnauthorized, "", apiError(http.StatusUnauthorized, "unauthenticated", "this request needs a bearer token (Authorization: Bearer <token>)"))
			return
		}
		if role := operationRoles[op.OperationID]; role != "" && !p.Can(ctx.Param("model"), role) {
			_ = huma.WriteErr(s.api, ctx, http.StatusForbidden, "", apiError(http.StatusForbidden, "forbidden",
				fmt.Sprintf("principal %q does not hold the %s role on model %q", p.Name, role, ctx.Param("model"))))
			return
		}
	}
	if p != nil {
		ctx = huma.WithValue(ctx, principalKey, p)
	}
	next(ctx)
}

// operationRoles is the role each write needs on its {model}; the handlers check it again.
var operationRoles = map[string]string{
	"approve-version": RoleApprove, "reject-version": RoleApprove, "rollback-model": RoleRollback,
	"put-policy": RoleAdmin, "register-version": RoleRegister, "plan-upload": RoleRegister, "put-blob": RoleRegister,
}

// require returns the request's principal if it holds role on model.
func require(ctx context.Context, model, role string) (*Principal, error) {
	p, _ := ctx.Value(principalKey).(*Principal)
	if p == nil {
		return nil, apiError(http.StatusUnauthorized, "unauthenticated", "this request needs a bearer token (Authorization: Bearer <token>)")
	}
	if !p.Can(model, role) {
		return nil, apiError(http.StatusForbidden, "forbidden", fmt.Sprintf("principal %q does not hold the %s role on model %q", p.Name, role, model))
	}
	return p, nil
}

var bearer = []map[string][]string{{"bearer": {}}}
