package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestRejectNeedsTheReviewedDigest: a reject, like an approve, names the manifest digest the approver
// reviewed. One naming another digest, or none, is refused back to the sender — by the update of the
// temporal CLI, by `starter reject --digest`, and (recorded as refused) by a signal — and the version
// keeps waiting, until a reject with the right digest ends it.
func TestRejectNeedsTheReviewedDigest(t *testing.T) {
	h := newHarness(t)
	v := h.registerSmall("fraud", "run-1", "trainer", "0.9")
	d := h.digestOf("fraud", v)
	wrong := "sha256:" + strings.Repeat("0", 64)

	for _, c := range []struct{ input, want string }{
		{fmt.Sprintf(`{"approver": "bob", "digest": %q}`, wrong),
			fmt.Sprintf("the decision names digest %s but fraud v1 has manifest digest %s", wrong, d)},
		{`{"approver": "bob"}`, "the decision must name the manifest digest it was made on: fraud v1 has " + d},
		{`{"approver": "bob", "digest": ""}`, "the decision must name the manifest digest it was made on"},
	} {
		out, err := h.cli("workflow", "update", "execute", "--workflow-id", "model/fraud/v1", "--name", "reject", "--input", c.input)
		if err == nil || !strings.Contains(out, c.want) {
			t.Fatalf("reject %s: want the refusal %q, got %v\n%s", c.input, c.want, err, out)
		}
		if got := h.queryStage("fraud", v); got != "PendingApproval" {
			t.Fatalf("after the refused reject %s the stage is %s", c.input, got)
		}
	}

	out, errOut, err := h.starter("reject", "--model", "fraud", "--version", "1", "--approver", "bob", "--digest", wrong)
	if code := checkExitCode(err); code != 1 || !strings.Contains(out+errOut, "the decision names digest "+wrong) {
		t.Fatalf("starter reject --digest %s: exit %d (%v), want 1 and the refusal:\n%s%s", wrong, code, err, out, errOut)
	}

	h.mustCLI("workflow", "signal", "--workflow-id", "model/fraud/v1", "--name", "reject",
		"--input", fmt.Sprintf(`{"approver": "carol", "digest": %q}`, wrong))
	waitFor(t, func() (string, bool) {
		out := h.mustStarter("status", "--model", "fraud", "--version", "1")
		return out, strings.Contains(out, "refused messages:") && strings.Contains(out, "the decision names digest "+wrong)
	})
	if got := h.queryStage("fraud", v); got != "PendingApproval" {
		t.Fatalf("after the refused reject signal the stage is %s", got)
	}

	out = h.mustStarter("reject", "--model", "fraud", "--version", "1", "--approver", "bob", "--digest", d, "--comment", "bias")
	if !strings.Contains(out, "Rejected") {
		t.Fatalf("reject with the right digest:\n%s", out)
	}
	h.waitStage("fraud", v, "Rejected")
	ds, err := h.catalog.Decisions(context.Background(), "fraud", v)
	if err != nil {
		t.Fatal(err)
	}
	refused, accepted := 0, 0
	for _, dd := range ds {
		if dd.Kind != "reject" {
			t.Errorf("decision %+v is not a reject", dd)
		}
		if dd.Accepted {
			accepted++
			if dd.Digest != d || dd.Approver != "bob" {
				t.Errorf("accepted decision %+v", dd)
			}
		} else {
			refused++
		}
	}
	if accepted != 1 || refused < 1 {
		t.Fatalf("decisions audit: %d accepted, %d refused, want 1 and the refused ones: %+v", accepted, refused, ds)
	}
}
