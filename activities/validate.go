package activities

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
)

// verifyConcurrency is how many blobs validation verifies at once.
const verifyConcurrency = 8

// ValidateInput names the version to validate in staging.
type ValidateInput struct {
	Model   string             `json:"model"`
	Version int                `json:"version"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// ValidationReport is the staging validation's verdict, kept on the version and shown to approvers.
type ValidationReport struct {
	Passed bool              `json:"passed"`
	Checks []ValidationCheck `json:"checks"`
	// Policy is the model's policy as it was when validation ran; approval rules come from this copy,
	// so a later policy change cannot bypass a decision in flight.
	Policy catalog.Policy `json:"policy"`
	// ChampionVersion is the production version compared against, 0 for none.
	ChampionVersion int `json:"championVersion,omitempty"`
	// ChampionValue is that version's value of the champion metric, when it has one (what the version's
	// workflow shows humans next to the challenger's).
	ChampionValue *float64 `json:"championValue,omitempty"`
}

// ValidationCheck is one check of the report.
type ValidationCheck struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// Failures lists the failed checks as "name: detail".
func (r ValidationReport) Failures() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.Passed {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return out
}

func (r *ValidationReport) add(name string, passed bool, format string, args ...any) {
	r.Checks = append(r.Checks, ValidationCheck{Name: name, Passed: passed, Detail: fmt.Sprintf(format, args...)})
}

// Validate runs staging validation: every blob re-hashed from the store against the manifest, the
// policy's required files, its metric thresholds, and the challenger against the production version.
// A failed check is a verdict, not an error: errors are only for what should be retried.
func (a *Activities) Validate(ctx context.Context, in ValidateInput) (ValidationReport, error) {
	var rep ValidationReport
	policy, err := a.Catalog.GetPolicy(ctx, in.Model)
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return rep, err
	}
	rep.Policy = policy
	m, _, err := a.Store.GetManifest(ctx, in.Model, in.Version)
	if err != nil {
		return rep, fmt.Errorf("read manifest of %s v%d: %w", in.Model, in.Version, err)
	}

	// Integrity: the bytes must still be what was registered. A store that attests a blob by its own
	// checksum (S3) is believed unless the policy asks for a re-hash: reading every byte back cost 18 %
	// of a 1 GiB registration, for what the server checked as it stored them (README, "Integrity").
	// Small files are verified several at a time: one at a time, a version of 100,000 files spends its
	// validation waiting on round trips, not hashing.
	attester, _ := a.Store.(artifact.Attester)
	if policy.RehashArtifacts {
		attester = nil
	}
	errs := make([]error, len(m.Files))
	progress := heartbeat(ctx)
	var done, attested atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, verifyConcurrency)
	for i, f := range m.Files {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if attester != nil {
				ok, err := attester.AttestBlob(ctx, f)
				if err != nil {
					errs[i] = err
					return
				}
				if ok {
					attested.Add(1)
					progress(done.Add(f.Size))
					return
				}
				// Not attested (missing, another size, no checksum): hashing says which.
			}
			errs[i] = a.Store.VerifyBlob(ctx, f, func(int64) { progress(done.Load()) })
			progress(done.Add(f.Size))
		}()
	}
	wg.Wait()
	var bad []string
	var total int64
	for i, f := range m.Files {
		switch err := errs[i]; {
		case err == nil:
		case errors.Is(err, artifact.ErrDigestMismatch) || errors.Is(err, artifact.ErrNotFound):
			bad = append(bad, fmt.Sprintf("%s (%v)", f.Path, err))
		default:
			return rep, err
		}
		total += f.Size
	}
	if len(bad) == 0 && attested.Load() > 0 {
		rep.add("integrity", true, "%d files, %d bytes: %d attested by the store's SHA-256 checksums, %d re-hashed", len(m.Files), total, attested.Load(), int64(len(m.Files))-attested.Load())
	} else if len(bad) == 0 {
		rep.add("integrity", true, "%d files, %d bytes, every SHA-256 verified", len(m.Files), total)
	} else {
		rep.add("integrity", false, "%d of %d files do not match the manifest: %s", len(bad), len(m.Files), strings.Join(bad, "; "))
	}

	if len(policy.RequiredFiles) > 0 {
		have := map[string]bool{}
		for _, f := range m.Files {
			have[f.Path] = true
		}
		var missing []string
		for _, p := range policy.RequiredFiles {
			if !have[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			rep.add("required-files", true, "all of %s present", strings.Join(policy.RequiredFiles, ", "))
		} else {
			rep.add("required-files", false, "missing %s", strings.Join(missing, ", "))
		}
	}

	for _, th := range policy.Thresholds {
		name := fmt.Sprintf("threshold %s %s %g", th.Metric, th.Op, th.Value)
		v, ok := in.Metrics[th.Metric]
		if !ok {
			rep.add(name, false, "metric %q was not reported", th.Metric)
			continue
		}
		pass, err := compare(v, th.Op, th.Value)
		if err != nil {
			rep.add(name, false, "%v", err)
			continue
		}
		rep.add(name, pass, "%s = %g", th.Metric, v)
	}

	if policy.ChampionMetric != "" {
		if err := a.compareChampion(ctx, &rep, in, policy); err != nil {
			return ValidationReport{}, err
		}
	}

	rep.Passed = true
	for _, c := range rep.Checks {
		rep.Passed = rep.Passed && c.Passed
	}
	sort.SliceStable(rep.Checks, func(i, j int) bool { return rep.Checks[i].Passed && !rep.Checks[j].Passed })
	return rep, nil
}

// compareChampion adds the champion check to rep. A production version it cannot read is an error, to
// retry, not a failed check: the catalog may be down for a moment, or the model's pointer caught
// between its two writes (ErrInconsistent), and neither says anything about the challenger.
func (a *Activities) compareChampion(ctx context.Context, rep *ValidationReport, in ValidateInput, p catalog.Policy) error {
	name := "champion " + p.ChampionMetric
	champ, err := a.Catalog.Production(ctx, in.Model)
	if errors.Is(err, catalog.ErrNotFound) {
		rep.add(name, true, "no production version to compare with")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the production version of %s to compare v%d with: %w", in.Model, in.Version, err)
	}
	rep.ChampionVersion = champ.Version
	mine, ok := in.Metrics[p.ChampionMetric]
	if !ok {
		rep.add(name, false, "metric %q was not reported", p.ChampionMetric)
		return nil
	}
	theirs, ok := champ.Metrics[p.ChampionMetric]
	if !ok {
		rep.add(name, true, "production v%d has no %q to compare with", champ.Version, p.ChampionMetric)
		return nil
	}
	rep.ChampionValue = &theirs
	worse := theirs - mine
	if p.ChampionLowerIsBetter {
		worse = mine - theirs
	}
	tol := math.Abs(p.ChampionTolerance)
	rep.add(name, worse <= tol+1e-12, "v%d %g vs production v%d %g (tolerance %g)", in.Version, mine, champ.Version, theirs, tol)
	return nil
}

func compare(v float64, op string, want float64) (bool, error) {
	switch op {
	case ">=":
		return v >= want, nil
	case ">":
		return v > want, nil
	case "<=":
		return v <= want, nil
	case "<":
		return v < want, nil
	}
	return false, fmt.Errorf("unknown operator %q (use >=, >, <=, <)", op)
}
