// Package metrics holds the registry's Prometheus metrics and the Temporal SDK's, served together at
// /metrics. Every method is safe on a nil *Registry, so code paths without metrics (tests, the starter)
// need no checks.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// Registry is every metric of one process.
type Registry struct {
	reg *prometheus.Registry

	registrations      *prometheus.CounterVec
	transitions        *prometheus.CounterVec
	validationFailures prometheus.Counter
	approvalWait       *prometheus.HistogramVec
	deliveries         *prometheus.CounterVec
	bytesRegistered    prometheus.Counter
	bytesStored        prometheus.Counter
	bytesDeduplicated  prometheus.Counter
	httpRequests       *prometheus.CounterVec
	httpDuration       *prometheus.HistogramVec
	watchers           prometheus.GaugeFunc

	sdkScope  tally.Scope
	sdkCloser func() error
}

// New makes a Registry with the Go runtime's and the process's collectors.
func New() *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { r.reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.registrations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelreg_registrations_total",
		Help: "Registrations the catalog answered: result=new minted a version, result=existing found the one its idempotency key names."}, []string{"result"})
	r.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelreg_transitions_total",
		Help: "Stage transitions recorded in the catalog, by target stage."}, []string{"to"})
	r.validationFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "modelreg_validation_failures_total",
		Help: "Versions rejected by validation (Validating -> Rejected)."})
	r.approvalWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "modelreg_approval_wait_seconds",
		Help:    "Time a version waited in PendingApproval before it was approved or rejected (by a human or the deadline).",
		Buckets: []float64{1, 10, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600}}, []string{"outcome"})
	r.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelreg_deliveries_total",
		Help: "Deployment events by final status: delivered, refused (4xx), failed (retries exhausted), superseded."}, []string{"status"})
	r.bytesRegistered = prometheus.NewCounter(prometheus.CounterOpts{Name: "modelreg_artifact_bytes_registered_total",
		Help: "Bytes of the files of every manifest written."})
	r.bytesStored = prometheus.NewCounter(prometheus.CounterOpts{Name: "modelreg_artifact_bytes_stored_total",
		Help: "Bytes this process wrote to the artifact store (imports from s3:// sources, uploads through the API)."})
	r.bytesDeduplicated = prometheus.NewCounter(prometheus.CounterOpts{Name: "modelreg_artifact_bytes_deduplicated_total",
		Help: "Bytes this process did not write because the store already held the blob."})
	r.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelreg_http_requests_total",
		Help: "HTTP API requests by route, method and status."}, []string{"route", "method", "status"})
	r.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "modelreg_http_request_duration_seconds",
		Help:    "HTTP API latency by route and method (long polls included: they last up to their wait).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 60}}, []string{"route", "method"})
	for _, c := range []prometheus.Collector{r.registrations, r.transitions, r.validationFailures, r.approvalWait, r.deliveries,
		r.bytesRegistered, r.bytesStored, r.bytesDeduplicated, r.httpRequests, r.httpDuration} {
		f(c)
	}
	return r
}

// Watchers reports the number of open production long polls as a gauge.
func (r *Registry) Watchers(n func() int) {
	if r == nil {
		return
	}
	r.watchers = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "modelreg_production_watchers",
		Help: "Open long polls on GET /v1/models/{model}/production."}, func() float64 { return float64(n()) })
	r.reg.MustRegister(r.watchers)
}

// SDKHandler is the Temporal client's metrics handler, reporting into this registry under temporal_*.
// Call it once per process.
func (r *Registry) SDKHandler() client.MetricsHandler {
	if r == nil {
		return nil
	}
	reporter := tallyprom.NewReporter(tallyprom.Options{Registerer: r.reg})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)
	r.sdkScope, r.sdkCloser = sdktally.NewPrometheusNamingScope(scope), closer.Close
	return sdktally.NewMetricsHandler(r.sdkScope)
}

// Close flushes the SDK's metrics.
func (r *Registry) Close() {
	if r != nil && r.sdkCloser != nil {
		_ = r.sdkCloser()
	}
}

// Handler serves the metrics in Prometheus's text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Registered counts a registration the catalog answered.
func (r *Registry) Registered(existing bool) {
	if r == nil {
		return
	}
	if existing {
		r.registrations.WithLabelValues("existing").Inc()
	} else {
		r.registrations.WithLabelValues("new").Inc()
	}
}

// Transitioned counts a transition the catalog applied.
func (r *Registry) Transitioned(from, to string) {
	if r == nil {
		return
	}
	r.transitions.WithLabelValues(to).Inc()
	if from == "Validating" && to == "Rejected" {
		r.validationFailures.Inc()
	}
}

// ApprovalWaited observes how long a version waited for a decision.
func (r *Registry) ApprovalWaited(outcome string, d time.Duration) {
	if r == nil || d < 0 {
		return
	}
	r.approvalWait.WithLabelValues(outcome).Observe(d.Seconds())
}

// Delivered counts a deployment event that reached a final status.
func (r *Registry) Delivered(status string) {
	if r == nil {
		return
	}
	r.deliveries.WithLabelValues(status).Inc()
}

// ManifestWritten counts the bytes a new manifest references.
func (r *Registry) ManifestWritten(bytes int64) {
	if r != nil {
		r.bytesRegistered.Add(float64(bytes))
	}
}

// BlobPut counts a blob this process put: written, or found already stored.
func (r *Registry) BlobPut(size int64, deduplicated bool) {
	if r == nil {
		return
	}
	if deduplicated {
		r.bytesDeduplicated.Add(float64(size))
	} else {
		r.bytesStored.Add(float64(size))
	}
}

// HTTPRequest observes one API request.
func (r *Registry) HTTPRequest(route, method string, status int, d time.Duration) {
	if r == nil {
		return
	}
	r.httpRequests.WithLabelValues(route, method, itoa(status)).Inc()
	r.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

func itoa(n int) string {
	if n >= 100 && n < 600 {
		return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
	}
	return "other"
}
