package main

import (
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/names"
)

// auditEntry is one line of `starter history`: a stage transition or a decision message.
type auditEntry struct {
	At      time.Time `json:"at"`
	Version int       `json:"version"`
	Kind    string    `json:"kind"` // transition, approve, reject or verdict
	Who     string    `json:"who,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Outcome string    `json:"outcome,omitempty"` // for decisions: accepted or refused
	Why     string    `json:"why,omitempty"`
}

func (a *app) historyCmd() *cobra.Command {
	var model string
	var version int
	cmd := &cobra.Command{
		Use:   "history --model NAME [--version N]",
		Short: "The audit trail: every transition and decision (who, when, from -> to, why), from the catalog",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.noServer("history"); err != nil {
				return err
			}
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			ctx := cmd.Context()
			return a.withCatalog(ctx, func(cat *catalog.Catalog) error {
				if _, err := cat.GetModel(ctx, model); err != nil {
					return err
				}
				trs, err := cat.Transitions(ctx, model, version)
				if err != nil {
					return err
				}
				ds, err := cat.Decisions(ctx, model, version)
				if err != nil {
					return err
				}
				var out []auditEntry
				for _, t := range trs {
					out = append(out, auditEntry{At: t.At, Version: t.Version, Kind: "transition", Who: t.Actor, From: t.From, To: t.To, Why: t.Reason})
				}
				for _, d := range ds {
					e := auditEntry{At: d.At, Version: d.Version, Kind: d.Kind, Who: d.Approver, Outcome: "refused", Why: d.Reason}
					if d.Accepted {
						e.Outcome, e.Why = "accepted", d.Comment
					}
					out = append(out, e)
				}
				// Decisions come before the transition they cause when both carry the same instant.
				sort.SliceStable(out, func(i, j int) bool {
					if !out[i].At.Equal(out[j].At) {
						return out[i].At.Before(out[j].At)
					}
					return out[i].Kind != "transition" && out[j].Kind == "transition"
				})
				if a.json {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tVERSION\tEVENT\tWHO\tWHY")
				for _, e := range out {
					ev := fmt.Sprintf("%s -> %s", orDash(e.From), e.To)
					if e.Kind != "transition" {
						ev = e.Kind + " " + e.Outcome
					}
					fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Version, safe(ev), safe(orDash(e.Who)), safe(e.Why))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "model name (required)")
	cmd.Flags().IntVar(&version, "version", 0, "only this version")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}
