package main

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/names"
)

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Set or show a model's validation and deployment policy"}
	var (
		model, champion            string
		thresholds, files, hooks   []string
		tolerance                  float64
		lowerBetter                bool
		approvalTimeout            time.Duration
		approvers, validators      []string
		quorum                     int
		selfApproval, rehash       bool
		reminder, validatorTimeout time.Duration
	)
	set := &cobra.Command{
		Use:   "set --model NAME [flags]",
		Short: "Replace the model's policy (applies to versions validated from now on)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			p := catalog.Policy{RequiredFiles: files, ChampionMetric: champion, ChampionTolerance: tolerance,
				ChampionLowerIsBetter: lowerBetter, ApprovalTimeoutSeconds: int64(approvalTimeout / time.Second),
				RequiredApprovals: quorum, AllowedApprovers: approvers, AllowSelfApproval: selfApproval,
				ReminderIntervalSeconds: int64(reminder / time.Second), RehashArtifacts: rehash}
			if approvalTimeout > 0 && approvalTimeout < time.Second || reminder > 0 && reminder < time.Second {
				return fmt.Errorf("--approval-timeout and --reminder-interval must be at least 1s")
			}
			for _, v := range validators {
				name, u, ok := strings.Cut(v, "=")
				if !ok {
					return fmt.Errorf("--validator %q is not NAME=URL", v)
				}
				if validatorTimeout < time.Second {
					return fmt.Errorf("--validator-timeout must be at least 1s")
				}
				p.Validators = append(p.Validators, catalog.ExternalValidator{Name: name, URL: u, TimeoutSeconds: int64(validatorTimeout / time.Second)})
			}
			for _, t := range thresholds {
				th, err := parseThreshold(t)
				if err != nil {
					return err
				}
				p.Thresholds = append(p.Thresholds, th)
			}
			for _, f := range files {
				if _, err := names.CleanArtifactPath(f); err != nil {
					return fmt.Errorf("--require-file: %w", err)
				}
			}
			for _, h := range hooks {
				u, err := url.Parse(h)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("--webhook %q is not an http(s) URL", h)
				}
				p.Webhooks = append(p.Webhooks, h)
			}
			if tolerance < 0 || approvalTimeout < 0 {
				return fmt.Errorf("--champion-tolerance and --approval-timeout cannot be negative")
			}
			ctx := cmd.Context()
			if a.api != nil {
				var stored catalog.Policy
				if err := a.api.call(ctx, http.MethodPut, pathOf("v1", "models", model, "policy"), p, &stored); err != nil {
					return fmt.Errorf("policy refused: %w", err)
				}
				if a.json {
					return a.printJSON(stored)
				}
				fmt.Fprintf(a.out, "policy of %s set\n", model)
				return nil
			}
			return a.withCatalog(ctx, func(cat *catalog.Catalog) error {
				if err := cat.SetPolicy(ctx, model, p); err != nil {
					return err
				}
				if a.json {
					return a.printJSON(p)
				}
				fmt.Fprintf(a.out, "policy of %s set\n", model)
				return nil
			})
		},
	}
	f := set.Flags()
	f.StringVar(&model, "model", "", "model name (required)")
	f.StringArrayVar(&thresholds, "threshold", nil, "metric gate like 'accuracy>=0.9' (ops >=, >, <=, <; repeatable)")
	f.StringArrayVar(&files, "require-file", nil, "file every version must contain (repeatable)")
	f.StringVar(&champion, "champion-metric", "", "metric compared with the production version")
	f.Float64Var(&tolerance, "champion-tolerance", 0, "how much worse than production the challenger may be")
	f.BoolVar(&lowerBetter, "champion-lower-is-better", false, "smaller champion-metric values are better (e.g. a loss)")
	f.StringArrayVar(&hooks, "webhook", nil, "URL that receives deployment events (repeatable)")
	f.DurationVar(&approvalTimeout, "approval-timeout", 0, "reject versions not decided within this time (e.g. 72h; 0 = never)")
	f.IntVar(&quorum, "required-approvals", 1, "how many distinct approvers a version needs")
	f.StringArrayVar(&approvers, "allowed-approver", nil, "who may decide (repeatable; none = anyone)")
	f.BoolVar(&selfApproval, "allow-self-approval", false, "let the registrant approve their own version")
	f.DurationVar(&reminder, "reminder-interval", 0, "send a reminder event to the webhooks this often while a version waits (0 = never)")
	f.StringArrayVar(&validators, "validator", nil, "external validator NAME=URL that receives validation requests (repeatable)")
	f.DurationVar(&validatorTimeout, "validator-timeout", time.Hour, "how long to wait for each external validator's verdict")
	f.BoolVar(&rehash, "rehash-artifacts", false, "validation reads every byte back from the store and hashes it, instead of accepting the store's own SHA-256 checksum (README, Integrity)")
	_ = set.MarkFlagRequired("model")

	var showModel string
	show := &cobra.Command{
		Use:   "show --model NAME",
		Short: "Print the model's policy as JSON",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := names.ValidateModel(showModel); err != nil {
				return err
			}
			ctx := cmd.Context()
			if a.api != nil {
				var p catalog.Policy
				if err := a.api.get(ctx, pathOf("v1", "models", showModel, "policy"), nil, &p); err != nil {
					return err
				}
				return a.printJSON(p)
			}
			return a.withCatalog(ctx, func(cat *catalog.Catalog) error {
				p, err := cat.GetPolicy(ctx, showModel)
				if err != nil {
					return err
				}
				return a.printJSON(p)
			})
		},
	}
	show.Flags().StringVar(&showModel, "model", "", "model name (required)")
	_ = show.MarkFlagRequired("model")
	cmd.AddCommand(set, show)
	return cmd
}

var thresholdRe = regexp.MustCompile(`^\s*([A-Za-z0-9_.:/-]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$`)

func parseThreshold(s string) (catalog.Threshold, error) {
	m := thresholdRe.FindStringSubmatch(s)
	if m == nil {
		return catalog.Threshold{}, fmt.Errorf("--threshold %q is not like 'accuracy>=0.9'", s)
	}
	v, err := strconv.ParseFloat(m[3], 64)
	if err != nil {
		return catalog.Threshold{}, fmt.Errorf("--threshold %q: %v", s, err)
	}
	return catalog.Threshold{Metric: m[1], Op: m[2], Value: v}, nil
}
