package catalog_test

// FuzzValidatePolicy: policies are written as JSON by people and non-Go tools, and SetPolicy stores
// only what ValidatePolicy accepts. Seeds live in testdata/fuzz/FuzzValidatePolicy/; fuzz with
//
//	go test -run '^$' -fuzz '^FuzzValidatePolicy$' -fuzztime 60s ./internal/catalog/

import (
	"bytes"
	"encoding/json"
	"math"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
)

var fuzzValidatorName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// maxSeconds is the largest number of seconds a time.Duration holds; the workflows turn every
// *Seconds field into one.
const maxSeconds = math.MaxInt64 / int64(time.Second)

func FuzzValidatePolicy(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var p catalog.Policy
		if err := json.Unmarshal(data, &p); err != nil {
			return
		}
		if err := catalog.ValidatePolicy(p); err != nil {
			return
		}
		for _, th := range p.Thresholds {
			if math.IsNaN(th.Value) || math.IsInf(th.Value, 0) {
				t.Fatalf("accepted threshold %+v", th)
			}
		}
		if math.IsNaN(p.ChampionTolerance) || math.IsInf(p.ChampionTolerance, 0) {
			t.Fatalf("accepted championTolerance %v", p.ChampionTolerance)
		}
		if p.RequiredApprovals < 0 || p.RequiredApprovals > catalog.MaxRequiredApprovals {
			t.Fatalf("accepted requiredApprovals %d", p.RequiredApprovals)
		}
		seen := map[string]bool{}
		for _, a := range p.AllowedApprovers {
			if a == "" || strings.TrimSpace(a) != a || seen[a] {
				t.Fatalf("accepted allowedApprovers %q", p.AllowedApprovers)
			}
			seen[a] = true
		}
		// The version workflow turns these into deadlines and timers (time.Duration(s) * time.Second): a
		// value that overflows would expire at once or fire in a loop.
		if p.ApprovalTimeoutSeconds > maxSeconds {
			t.Fatalf("accepted approvalTimeoutSeconds %d, which overflows a time.Duration", p.ApprovalTimeoutSeconds)
		}
		if p.ReminderIntervalSeconds < 0 || p.ReminderIntervalSeconds > maxSeconds {
			t.Fatalf("accepted reminderIntervalSeconds %d", p.ReminderIntervalSeconds)
		}
		vnames := map[string]bool{}
		for _, v := range p.Validators {
			if !fuzzValidatorName.MatchString(v.Name) || vnames[v.Name] {
				t.Fatalf("accepted validator name %q", v.Name)
			}
			vnames[v.Name] = true
			u, err := url.Parse(v.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("accepted validator URL %q (%v)", v.URL, err)
			}
			if v.TimeoutSeconds <= 0 || v.TimeoutSeconds > maxSeconds {
				t.Fatalf("accepted validator timeoutSeconds %d", v.TimeoutSeconds)
			}
		}

		// The catalog stores the policy as JSON and hands it back: it must come back valid and the same.
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal an accepted policy: %v", err)
		}
		var p2 catalog.Policy
		if err := json.Unmarshal(b, &p2); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if err := catalog.ValidatePolicy(p2); err != nil {
			t.Fatalf("policy no longer valid after a JSON round trip (%s): %v", b, err)
		}
		if b2, err := json.Marshal(p2); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("JSON round trip changed the policy:\n%s\n%s (%v)", b, b2, err)
		}
	})
}
