package catalog

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"
)

// MaxRequiredApprovals bounds Policy.RequiredApprovals.
const MaxRequiredApprovals = 20

// validatorName is what an ExternalValidator's name must look like: it appears in decision rows, events
// and URLs.
var validatorName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidatePolicy reports the first thing wrong with p, naming the field by its JSON name (policies are
// written as JSON by people and non-Go tools). SetPolicy refuses a policy it rejects.
func ValidatePolicy(p Policy) error {
	for _, th := range p.Thresholds {
		if math.IsNaN(th.Value) || math.IsInf(th.Value, 0) {
			return fmt.Errorf("thresholds: threshold on %q is %v: thresholds must be finite numbers", th.Metric, th.Value)
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
	if p.ReminderIntervalSeconds < 0 {
		return fmt.Errorf("reminderIntervalSeconds is %d: it must not be negative", p.ReminderIntervalSeconds)
	}
	names := make(map[string]bool, len(p.Validators))
	for i, v := range p.Validators {
		if !validatorName.MatchString(v.Name) {
			return fmt.Errorf("validators[%d].name %q: want 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", i, v.Name)
		}
		if names[v.Name] {
			return fmt.Errorf("validators[%d].name: %q is used by another validator", i, v.Name)
		}
		names[v.Name] = true
		if err := validatorURL(v.URL); err != nil {
			return fmt.Errorf("validators[%d] (%s).url %q: %w", i, v.Name, v.URL, err)
		}
		if v.TimeoutSeconds <= 0 {
			return fmt.Errorf("validators[%d] (%s).timeoutSeconds is %d: it must be positive", i, v.Name, v.TimeoutSeconds)
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
