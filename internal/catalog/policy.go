package catalog

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/modelreg/modelreg/internal/names"
)

// MaxRequiredApprovals bounds Policy.RequiredApprovals.
const MaxRequiredApprovals = 20

// MaxSeconds bounds the *Seconds fields of a Policy: the workflows turn them into a time.Duration
// (nanoseconds in an int64), and a larger value would overflow into a deadline in the past.
const MaxSeconds = math.MaxInt64 / int64(time.Second)

// validatorName is what an ExternalValidator's name must look like: it appears in decision rows, events
// and URLs.
var validatorName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidatePolicy reports the first thing wrong with p, naming the field by its JSON name (policies are
// written as JSON by people and non-Go tools). SetPolicy refuses a policy it rejects.
func ValidatePolicy(p Policy) error {
	for i, th := range p.Thresholds {
		if math.IsNaN(th.Value) || math.IsInf(th.Value, 0) {
			return fmt.Errorf("thresholds: threshold on %q is %v: thresholds must be finite numbers", th.Metric, th.Value)
		}
		if th.Metric == "" || len(th.Metric) > 200 {
			return fmt.Errorf("thresholds[%d].metric %q: want 1 to 200 bytes", i, th.Metric)
		}
		switch th.Op {
		case ">=", ">", "<=", "<":
		default:
			return fmt.Errorf("thresholds[%d].op %q: want >=, >, <= or <", i, th.Op)
		}
	}
	for i, f := range p.RequiredFiles {
		if _, err := names.CleanArtifactPath(f); err != nil {
			return fmt.Errorf("requiredFiles[%d]: %w", i, err)
		}
	}
	for i, w := range p.Webhooks {
		if err := validatorURL(w); err != nil {
			return fmt.Errorf("webhooks[%d] %q: %w", i, w, err)
		}
	}
	if math.IsNaN(p.ChampionTolerance) || math.IsInf(p.ChampionTolerance, 0) {
		return fmt.Errorf("championTolerance: champion tolerance is %v: it must be a finite number", p.ChampionTolerance)
	}
	if p.RequiredApprovals < 0 || p.RequiredApprovals > MaxRequiredApprovals {
		return fmt.Errorf("requiredApprovals is %d: it must be between 0 and %d", p.RequiredApprovals, MaxRequiredApprovals)
	}
	seen := make(map[string]bool, len(p.AllowedApprovers))
	for i, a := range p.AllowedApprovers {
		switch {
		case strings.TrimSpace(a) == "":
			return fmt.Errorf("allowedApprovers[%d] is empty", i)
		case strings.TrimSpace(a) != a:
			return fmt.Errorf("allowedApprovers[%d] %q has leading or trailing spaces", i, a)
		case seen[a]:
			return fmt.Errorf("allowedApprovers[%d]: %q is listed twice", i, a)
		}
		seen[a] = true
	}
	if p.ApprovalTimeoutSeconds > MaxSeconds {
		return fmt.Errorf("approvalTimeoutSeconds is %d: it must be at most %d", p.ApprovalTimeoutSeconds, MaxSeconds)
	}
	if p.ReminderIntervalSeconds < 0 || p.ReminderIntervalSeconds > MaxSeconds {
		return fmt.Errorf("reminderIntervalSeconds is %d: it must be between 0 and %d", p.ReminderIntervalSeconds, MaxSeconds)
	}
	validatorNames := make(map[string]bool, len(p.Validators))
	for i, v := range p.Validators {
		if !validatorName.MatchString(v.Name) {
			return fmt.Errorf("validators[%d].name %q: want 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", i, v.Name)
		}
		if validatorNames[v.Name] {
			return fmt.Errorf("validators[%d].name: %q is used by another validator", i, v.Name)
		}
		validatorNames[v.Name] = true
		if err := validatorURL(v.URL); err != nil {
			return fmt.Errorf("validators[%d] (%s).url %q: %w", i, v.Name, v.URL, err)
		}
		if v.TimeoutSeconds <= 0 || v.TimeoutSeconds > MaxSeconds {
			return fmt.Errorf("validators[%d] (%s).timeoutSeconds is %d: it must be between 1 and %d", i, v.Name, v.TimeoutSeconds, MaxSeconds)
		}
	}
	return nil
}

func validatorURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	// url.Parse lowercases the scheme.
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("want an http:// or https:// URL")
	}
	if u.Host == "" {
		return fmt.Errorf("names no host")
	}
	return nil
}
