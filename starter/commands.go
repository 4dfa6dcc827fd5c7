package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/control"
	"github.com/modelreg/modelreg/internal/names"
	"github.com/modelreg/modelreg/workflows"
)

func describeVersion(ctx context.Context, c client.Client, model string, version int) (workflows.VersionDescription, error) {
	return control.DescribeVersion(ctx, c, model, version)
}

func modelVersionFlags(cmd *cobra.Command, model *string, version *int) {
	cmd.Flags().StringVar(model, "model", "", "model name (required)")
	cmd.Flags().IntVar(version, "version", 0, "version number (required)")
	_ = cmd.MarkFlagRequired("model")
	_ = cmd.MarkFlagRequired("version")
}

func checkModelVersion(model string, version int) error {
	if err := names.ValidateModel(model); err != nil {
		return err
	}
	if version < 1 {
		return fmt.Errorf("--version must be 1 or more, got %d", version)
	}
	return nil
}

func (a *app) statusCmd() *cobra.Command {
	var model string
	var version int
	cmd := &cobra.Command{
		Use:   "status --model NAME --version N",
		Short: "Show a version's stage, history, validation report and refused messages (from its workflow)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkModelVersion(model, version); err != nil {
				return err
			}
			if a.api != nil {
				return a.statusThroughServer(cmd.Context(), model, version)
			}
			c, err := a.cfg.Dial(a.logger)
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := describeVersion(cmd.Context(), c, model, version)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(d)
			}
			printDescription(a.out, d)
			printProgress(cmd.Context(), a.out, c, d)
			// The deployment event of a version in production is in the catalog, where there is one.
			if cat, err := a.cfg.OpenCatalog(cmd.Context()); err == nil {
				defer cat.Close()
				if ds, err := cat.Deliveries(cmd.Context(), model, version); err == nil && len(ds) > 0 {
					last := ds[len(ds)-1]
					fmt.Fprintf(a.out, "deployment event: %s %s", last.EventID, last.Status)
					if last.Error != "" {
						fmt.Fprintf(a.out, " (%s)", safe(last.Error))
					}
					fmt.Fprintln(a.out)
				}
			}
			return nil
		},
	}
	modelVersionFlags(cmd, &model, &version)
	return cmd
}

// printProgress shows what the version's workflow is waiting on and how its retries go: an outage of the
// store or the catalog shows here as attempts and the last failure, long before the version would fail.
func printProgress(ctx context.Context, w io.Writer, c client.Client, d workflows.VersionDescription) {
	if d.State.Step != "" && d.State.StepSince != nil {
		fmt.Fprintf(w, "waiting: %s since %s\n", d.State.Step, d.State.StepSince.Format(time.RFC3339))
	}
	desc, err := c.DescribeWorkflowExecution(ctx, workflows.VersionWorkflowID(d.Model, d.Version), "")
	if err != nil {
		return
	}
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetAttempt() <= 1 && pa.GetLastFailure() == nil {
			continue
		}
		fmt.Fprintf(w, "retrying: %s, attempt %d", pa.GetActivityType().GetName(), pa.GetAttempt())
		if f := pa.GetLastFailure(); f != nil {
			fmt.Fprintf(w, ", last failure: %s", f.GetMessage())
		}
		fmt.Fprintln(w)
	}
}

func printDescription(w io.Writer, d workflows.VersionDescription) {
	s := d.State
	fmt.Fprintf(w, "%s v%d: %s\n", d.Model, d.Version, s.Stage)
	if s.ManifestURI != "" {
		fmt.Fprintf(w, "manifest: %s (%s), %d files, %s\n", s.ManifestURI, s.ManifestDigest, s.Files, human(s.TotalBytes))
	}
	if s.Deadline != nil && s.Stage == workflows.StagePendingApproval {
		fmt.Fprintf(w, "approval deadline: %s\n", s.Deadline.Format(time.RFC3339))
	}
	fmt.Fprintln(w, "history:")
	for _, h := range s.History {
		from := h.From
		if from == "" {
			from = "-"
		}
		fmt.Fprintf(w, "  %s  %s -> %s  by %s: %s\n", h.At.Format(time.RFC3339), from, h.To, safe(orDash(h.Actor)), safe(h.Reason))
	}
	if s.Validation != nil {
		fmt.Fprintf(w, "validation: passed=%v\n", s.Validation.Passed)
		for _, c := range s.Validation.Checks {
			mark := "ok  "
			if !c.Passed {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s %s: %s\n", mark, c.Name, c.Detail)
		}
	}
	for _, dd := range s.Decisions {
		fmt.Fprintf(w, "decision: %s by %s via %s at %s %s\n", dd.Kind, safe(dd.Approver), dd.Via, dd.At.Format(time.RFC3339), safe(dd.Comment))
	}
	if len(s.Rejected) > 0 {
		fmt.Fprintln(w, "refused messages:")
		for _, r := range s.Rejected {
			fmt.Fprintf(w, "  %s %s (%s): %s\n", r.At.Format(time.RFC3339), safe(r.Name), r.Via, safe(r.Reason))
		}
	}
}

func printReasons(w io.Writer, d workflows.VersionDescription) {
	if n := len(d.State.History); n > 0 {
		fmt.Fprintf(w, "reason: %s\n", d.State.History[n-1].Reason)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) withCatalog(ctx context.Context, fn func(*catalog.Catalog) error) error {
	cat, err := a.cfg.OpenCatalog(ctx)
	if err != nil {
		return err
	}
	defer cat.Close()
	return fn(cat)
}

func (a *app) listCmd() *cobra.Command {
	var model, stage string
	cmd := &cobra.Command{
		Use:   "list [--model NAME] [--stage STAGE]",
		Short: "List models, or a model's versions (from the catalog; no worker needed)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if model != "" {
				if err := names.ValidateModel(model); err != nil {
					return err
				}
			}
			if a.api != nil {
				return a.listThroughServer(ctx, model, stage)
			}
			return a.withCatalog(ctx, func(cat *catalog.Catalog) error {
				if model == "" {
					ms, err := cat.ListModels(ctx)
					if err != nil {
						return err
					}
					if a.json {
						return a.printJSON(ms)
					}
					tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "MODEL\tPRODUCTION\tUPDATED")
					for _, m := range ms {
						p := "-"
						if m.ProductionVersion != nil {
							p = "v" + strconv.Itoa(*m.ProductionVersion)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, p, m.UpdatedAt.Format(time.RFC3339))
					}
					return tw.Flush()
				}
				if err := names.ValidateModel(model); err != nil {
					return err
				}
				if _, err := cat.GetModel(ctx, model); err != nil {
					return err
				}
				vs, err := cat.ListVersions(ctx, model, stage)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(vs)
				}
				ds, err := cat.Deliveries(ctx, model, 0)
				if err != nil {
					return err
				}
				deployed := map[int]string{} // the last deployment event's state, per version
				for _, d := range ds {
					deployed[d.Version] = d.Status
				}
				tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tSTAGE\tDEPLOYMENT EVENT\tREGISTERED BY\tSOURCE RUN\tUPDATED")
				for _, v := range vs {
					fmt.Fprintf(tw, "v%d\t%s\t%s\t%s\t%s\t%s\n", v.Version, v.Stage, orDash(deployed[v.Version]), safe(orDash(v.RegisteredBy)), safe(orDash(v.SourceRun)), v.UpdatedAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "model name")
	cmd.Flags().StringVar(&stage, "stage", "", "only versions in this stage")
	return cmd
}

func (a *app) productionCmd() *cobra.Command {
	var model string
	var at string
	var wait bool
	cmd := &cobra.Command{
		Use:   "production --model NAME [--at TIME | --wait]",
		Short: "Which version is (or was, --at) in production and where its artifacts are (from the catalog); --wait follows it",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			ctx := cmd.Context()
			switch {
			case at != "" && wait:
				return errors.New("give --at or --wait, not both")
			case wait && a.api == nil:
				return errors.New("--wait long-polls the registry's HTTP API: give --server URL (or set MODELREG_SERVER)")
			case at != "" && a.api != nil:
				return errors.New("--at has no HTTP API equivalent: run it without --server, with access to the catalog")
			case a.api != nil:
				return a.productionThroughServer(ctx, model, wait)
			}
			return a.withCatalog(ctx, func(cat *catalog.Catalog) error {
				if at != "" {
					return a.productionAt(ctx, cat, model, at)
				}
				v, err := cat.Production(ctx, model)
				if err != nil {
					if errors.Is(err, catalog.ErrNotFound) {
						if _, merr := cat.GetModel(ctx, model); merr != nil {
							return merr
						}
						return fmt.Errorf("model %q has no version in production", model)
					}
					return err
				}
				if a.json {
					return a.printJSON(v)
				}
				fmt.Fprintf(a.out, "%s v%d (stage %s)\nmanifest: %s\ndigest:   %s\n", v.Model, v.Version, v.Stage, v.ManifestURI, v.ManifestDigest)
				ds, err := cat.Deliveries(ctx, model, v.Version)
				if err != nil {
					return err
				}
				if n := len(ds); n > 0 {
					d := ds[n-1]
					fmt.Fprintf(a.out, "deployment event: %s %s", d.EventID, d.Status)
					if d.Error != "" {
						fmt.Fprintf(a.out, " (%s)", d.Error)
					}
					fmt.Fprintln(a.out)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "model name (required)")
	cmd.Flags().StringVar(&at, "at", "", "a past time (RFC 3339, e.g. 2026-11-01T12:00:00Z): which version was in production then")
	cmd.Flags().BoolVar(&wait, "wait", false, "with --server: keep watching, and print the production version again each time it changes (until interrupted)")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

func (a *app) productionAt(ctx context.Context, cat *catalog.Catalog, model, at string) error {
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return fmt.Errorf("--at %q is not an RFC 3339 time like 2026-11-01T12:00:00Z", at)
	}
	n, err := cat.ProductionAt(ctx, model, t)
	if err != nil {
		return err
	}
	if n == 0 {
		if a.json {
			return a.printJSON(map[string]any{"model": model, "at": t, "version": 0})
		}
		fmt.Fprintf(a.out, "%s had no version in production at %s\n", model, t.Format(time.RFC3339))
		return nil
	}
	v, err := cat.GetVersion(ctx, model, n)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(map[string]any{"model": model, "at": t, "version": n, "manifestUri": v.ManifestURI, "manifestDigest": v.ManifestDigest})
	}
	fmt.Fprintf(a.out, "%s v%d was in production at %s\nmanifest: %s\ndigest:   %s\n", model, n, t.Format(time.RFC3339), v.ManifestURI, v.ManifestDigest)
	return nil
}

func (a *app) decisionCmd(kind string) *cobra.Command {
	var model, approver, comment, digest string
	var version int
	cmd := &cobra.Command{
		Use:   kind + " --model NAME --version N [--approver WHO] [--comment TEXT] [--digest sha256:…]",
		Short: strings.ToUpper(kind[:1]) + kind[1:] + " a version waiting for approval (an update on its workflow)",
		Long: `The decision is bound to the version's manifest digest. Give the digest you reviewed with --digest;
without it the starter uses the digest the version's workflow reports, and prints it.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkModelVersion(model, version); err != nil {
				return err
			}
			if a.api != nil {
				if approver != "" {
					return notWithServer("--approver", "the decision is recorded as the token's principal")
				}
				return a.decideThroughServer(cmd.Context(), kind, model, version, comment, digest)
			}
			if approver == "" {
				approver = currentUser()
			}
			c, err := a.cfg.Dial(a.logger)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if digest == "" {
				d, err := describeVersion(ctx, c, model, version)
				if err != nil {
					return err
				}
				digest = d.State.ManifestDigest
				if !a.json {
					fmt.Fprintf(a.errOut, "deciding on manifest digest %s\n", digest)
				}
			}
			var res workflows.DecisionResult
			err = update(ctx, c, workflows.VersionWorkflowID(model, version), kind,
				workflows.Decision{Approver: approver, Comment: comment, Digest: digest}, &res)
			if err != nil {
				return a.refusal(ctx, c, kind, model, version, err)
			}
			if a.json {
				return a.printJSON(res)
			}
			if res.Stage == workflows.StagePendingApproval && res.Required > 1 {
				fmt.Fprintf(a.out, "%s v%d: %s (%d of %d approvals)\n", model, version, res.Stage, res.Approvals, res.Required)
			} else {
				fmt.Fprintf(a.out, "%s v%d: %s\n", model, version, res.Stage)
			}
			return nil
		},
	}
	modelVersionFlags(cmd, &model, &version)
	cmd.Flags().StringVar(&approver, "approver", "", "who decides (default: the current user)")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	cmd.Flags().StringVar(&digest, "digest", "", "the manifest digest the decision is made on (default: the version's)")
	return cmd
}

// update runs an update on a workflow and waits for its result.
func update(ctx context.Context, c client.Client, workflowID, name string, arg, result any) error {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflowID, UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return h.Get(ctx, result)
}

// refusal explains an update the version's workflow did not take.
func (a *app) refusal(ctx context.Context, c client.Client, what, model string, version int, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		// Also what the server answers for a lifecycle that has ended (Rejected, Failed): say which.
		d, derr := describeVersion(ctx, c, model, version)
		if derr != nil {
			return derr
		}
		noun := "decision"
		if what == workflows.UpdateVerdict {
			noun = "verdict"
		}
		return fmt.Errorf("%s refused: %s v%d is not waiting for a %s: its stage is %s", what, model, version, noun, d.State.Stage)
	}
	return fmt.Errorf("%s refused: %w", what, err)
}

func (a *app) verdictCmd() *cobra.Command {
	var model, validator, token, reportURL, detail string
	var version int
	var pass, fail bool
	cmd := &cobra.Command{
		Use:   "verdict --model NAME --version N --validator NAME --token TOKEN (--pass | --fail) [--report-url URL] [--detail TEXT]",
		Short: "Report an external validator's verdict (what a CI job calls when it has finished)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.noServer("verdict"); err != nil {
				return err
			}
			if err := checkModelVersion(model, version); err != nil {
				return err
			}
			if pass == fail {
				return errors.New("give exactly one of --pass or --fail")
			}
			c, err := a.cfg.Dial(a.logger)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			var res workflows.DecisionResult
			err = update(ctx, c, workflows.VersionWorkflowID(model, version), workflows.UpdateVerdict,
				workflows.Verdict{Validator: validator, Token: token, Passed: pass, ReportURL: reportURL, Detail: detail}, &res)
			if err != nil {
				return a.refusal(ctx, c, "verdict", model, version, err)
			}
			if a.json {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.out, "verdict of %s recorded for %s v%d\n", validator, model, version)
			return nil
		},
	}
	modelVersionFlags(cmd, &model, &version)
	cmd.Flags().StringVar(&validator, "validator", "", "the validator's name in the policy (required)")
	cmd.Flags().StringVar(&token, "token", "", "the token of the validation request (required)")
	cmd.Flags().BoolVar(&pass, "pass", false, "the version passed")
	cmd.Flags().BoolVar(&fail, "fail", false, "the version failed")
	cmd.Flags().StringVar(&reportURL, "report-url", "", "where the report is")
	cmd.Flags().StringVar(&detail, "detail", "", "a one-line summary")
	_ = cmd.MarkFlagRequired("validator")
	_ = cmd.MarkFlagRequired("token")
	return cmd
}

func (a *app) redeliverCmd() *cobra.Command {
	var model string
	cmd := &cobra.Command{
		Use:   "redeliver --model NAME",
		Short: "Send the model's last deployment event again (after its receiver refused it or was down too long)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.noServer("redeliver"); err != nil {
				return err
			}
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			c, err := a.cfg.Dial(a.logger)
			if err != nil {
				return err
			}
			defer c.Close()
			var res workflows.Delivery
			if err := update(cmd.Context(), c, workflows.ModelWorkflowID(model), workflows.UpdateRedeliver,
				workflows.RedeliverRequest{SchemaVersion: workflows.SchemaVersion}, &res); err != nil {
				return fmt.Errorf("redeliver refused: %w", err)
			}
			if a.json {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.out, "%s: deployment event %s is %s\n", model, res.Event.EventID, res.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "model name (required)")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

func (a *app) rollbackCmd() *cobra.Command {
	var model, actor, reason string
	var to int
	cmd := &cobra.Command{
		Use:   "rollback --model NAME [--to N] [--reason TEXT]",
		Short: "Put an archived version back into production (default: the most recently archived)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			if a.api != nil {
				if actor != "" {
					return notWithServer("--actor", "the rollback is recorded as the token's principal")
				}
				return a.rollbackThroughServer(cmd.Context(), model, to, reason)
			}
			if actor == "" {
				actor = currentUser()
			}
			c, err := a.cfg.Dial(a.logger)
			if err != nil {
				return err
			}
			defer c.Close()
			req := workflows.RollbackRequest{SchemaVersion: workflows.SchemaVersion, To: to, Actor: actor, Reason: reason}
			// An update-with-start: if an operator terminated the model's workflow, a fresh run rebuilds
			// itself from the catalog before it takes the rollback.
			res, err := control.Rollback(cmd.Context(), c, model, req)
			var refusedErr *control.RefusedError
			if errors.As(err, &refusedErr) {
				return err // it says "rollback refused: …" itself
			}
			if err != nil {
				return fmt.Errorf("rollback refused: %w", err)
			}
			if a.json {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.out, "%s: v%d is in production again (v%d archived)\n", model, res.Version, res.Previous)
			return nil
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "model name (required)")
	cmd.Flags().IntVar(&to, "to", 0, "archived version to restore")
	cmd.Flags().StringVar(&actor, "actor", "", "who rolls back (default: the current user)")
	cmd.Flags().StringVar(&reason, "reason", "", "why")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

// safe shows text that came from outside (an approver's name, a comment, a refusal's reason quoting
// what was sent) on one line and without control characters, so nobody can print fake rows or move
// the cursor on an operator's terminal.
func safe(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
