package tests

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
)

// TestDeadReceiverBlocksNothing drives the deployment event's two paths end to end. A receiver that
// refuses the event (410) does not hold up the switch: the version is in Production at once, the
// delivery ends "refused", starter check reports it, and redeliver sends it again once the receiver
// is back. A receiver that is down (connection refused) does not stall the next promotion either: the
// pending delivery is superseded by the newer switch.
func TestDeadReceiverBlocksNothing(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var mu sync.Mutex
	status := http.StatusGone
	var got []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.Header.Get("Idempotency-Key"))
		w.WriteHeader(status)
	}))
	defer recv.Close()
	h.mustStarter("policy", "set", "--model", "dead", "--webhook", recv.URL+"/deploy")

	v1 := h.registerSmall("dead", "a", "trainer", "0.9")
	if _, err := h.decide("approve", "dead", v1, "alice", h.digestOf("dead", v1)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("dead", v1, "Production")
	// Production and what a deployer reads agree at once, whatever the receiver does.
	if p, err := h.catalog.Production(ctx, "dead"); err != nil || p.Version != v1 {
		t.Fatalf("catalog production: v%d %v", p.Version, err)
	}
	d := waitDelivery(t, h, "dead", v1, catalog.DeliveryRefused)
	if !strings.Contains(d.Error, "410") {
		t.Fatalf("refused delivery: %+v", d)
	}
	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("a refusing receiver was asked %d times, want once", len(got))
	}
	mu.Unlock()
	out, _, err := h.starter("check", "--model", "dead")
	if err == nil || !strings.Contains(out, "was not delivered: refused") {
		t.Fatalf("starter check after a refused delivery: %v\n%s", err, out)
	}
	if out := h.mustStarter("production", "--model", "dead"); !strings.Contains(out, "refused") {
		t.Fatalf("starter production does not show the refused delivery:\n%s", out)
	}
	if out := h.mustStarter("status", "--model", "dead", "--version", "1"); !strings.Contains(out, "deployment event: ") || !strings.Contains(out, "refused") {
		t.Fatalf("starter status does not show the refused delivery:\n%s", out)
	}
	if out := h.mustStarter("list", "--model", "dead"); !strings.Contains(out, "DEPLOYMENT EVENT") || !strings.Contains(out, "refused") {
		t.Fatalf("starter list does not show the refused delivery:\n%s", out)
	}

	mu.Lock()
	status = http.StatusNoContent
	mu.Unlock()
	h.mustStarter("redeliver", "--model", "dead")
	waitDelivery(t, h, "dead", v1, catalog.DeliveryDelivered)
	h.mustStarter("check", "--model", "dead")

	// Now the receiver is gone altogether; the next promotion still switches at once.
	recv.Close()
	v2 := h.registerSmall("dead", "b", "trainer", "0.9")
	if _, err := h.decide("approve", "dead", v2, "alice", h.digestOf("dead", v2)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("dead", v2, "Production")
	h.waitStage("dead", v1, "Archived")
	waitDelivery(t, h, "dead", v2, catalog.DeliveryPending)
	v3 := h.registerSmall("dead", "c", "trainer", "0.9")
	if _, err := h.decide("approve", "dead", v3, "alice", h.digestOf("dead", v3)); err != nil {
		t.Fatal(err)
	}
	h.waitStage("dead", v3, "Production")
	waitDelivery(t, h, "dead", v2, catalog.DeliverySuperseded)
	if p, err := h.catalog.Production(ctx, "dead"); err != nil || p.Version != v3 {
		t.Fatalf("catalog production: v%d %v", p.Version, err)
	}
	h.recordHistory("model/dead", "model-delivery-refused-redelivered-superseded")
}

func waitDelivery(t *testing.T, h *harness, model string, version int, want string) catalog.Delivery {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ds, err := h.catalog.Deliveries(context.Background(), model, version)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(ds); n > 0 && ds[n-1].Status == want {
			return ds[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s v%d deliveries %+v, want the last %s", model, version, ds, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
