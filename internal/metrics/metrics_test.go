package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRegistryCountsAndServes(t *testing.T) {
	r := New()
	r.Registered(false)
	r.Registered(true)
	r.Transitioned("Validating", "Rejected")
	r.ApprovalWaited("approved", 90*time.Second)
	r.Delivered("delivered")
	r.BlobPut(100, true)
	r.BlobPut(50, false)
	r.ManifestWritten(150)
	r.HTTPRequest("/v1/models/{model}/production", "GET", 499, time.Millisecond)
	r.HTTPRequest("/v1/models", "GET", 42, time.Millisecond)
	n := 3
	r.Watchers(func() int { return n })
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`modelreg_registrations_total{result="existing"} 1`,
		`modelreg_registrations_total{result="new"} 1`,
		`modelreg_transitions_total{to="Rejected"} 1`,
		`modelreg_validation_failures_total 1`,
		`modelreg_approval_wait_seconds_count{outcome="approved"} 1`,
		`modelreg_deliveries_total{status="delivered"} 1`,
		`modelreg_artifact_bytes_deduplicated_total 100`,
		`modelreg_artifact_bytes_stored_total 50`,
		`modelreg_artifact_bytes_registered_total 150`,
		`modelreg_http_requests_total{method="GET",route="/v1/models/{model}/production",status="499"} 1`,
		`modelreg_http_requests_total{method="GET",route="/v1/models",status="other"} 1`,
		`modelreg_production_watchers 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A nil registry counts nothing and never panics: code paths without metrics need no checks.
func TestNilRegistry(t *testing.T) {
	var r *Registry
	r.Registered(true)
	r.Transitioned("a", "b")
	r.ApprovalWaited("approved", time.Second)
	r.Delivered("failed")
	r.BlobPut(1, true)
	r.ManifestWritten(1)
	r.HTTPRequest("/", "GET", 200, time.Second)
	r.Watchers(func() int { return 0 })
	r.Close()
	if r.SDKHandler() != nil {
		t.Error("a nil registry has an SDK handler")
	}
}
