package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/check"
	"github.com/modelreg/modelreg/internal/names"
)

// errFindings is returned when the check found disagreements, so that the starter exits 1.
type errFindings int

func (e errFindings) Error() string {
	if e == 1 {
		return "consistency check: 1 finding"
	}
	return fmt.Sprintf("consistency check: %d findings", int(e))
}

func (a *app) checkCmd() *cobra.Command {
	var model string
	var verify bool
	cmd := &cobra.Command{
		Use:   "check [--model NAME] [--verify]",
		Short: "Compare catalog, artifact store and workflow state, and report every disagreement (exit 1 if any)",
		Long: `For one model (--model) or every model in the catalog, and each of its versions, check that the
catalog agrees with the version's workflow (stage, manifest URI and digest, and that Temporal still runs
it unless its stage is Rejected or Failed), with the artifact store (manifest digest, every blob present
with its size, the archived mark) and with the model workflow (running, production version, next version
number), that version numbers have no gaps, and that each version's audit trail is a chain ending in its
stage. A finding is checked again after 2 s before it is reported, since a version caught mid-transition
disagrees for an instant. --verify also re-hashes every blob. Exits 1 when there is any finding.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.noServer("check"); err != nil {
				return err
			}
			if model != "" {
				if err := names.ValidateModel(model); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			c, err := a.cfg.Dial(a.logger)
			if err != nil {
				return err
			}
			defer c.Close()
			store, err := a.cfg.OpenStore(ctx)
			if err != nil {
				return err
			}
			return a.withCatalog(ctx, func(cat *catalog.Catalog) error {
				rep, err := check.Run(ctx, check.Deps{Catalog: cat, Store: store, Temporal: c, Model: model, Verify: verify})
				if err != nil {
					return err
				}
				if a.json {
					if err := a.printJSON(rep); err != nil {
						return err
					}
				} else {
					printReport(a.out, rep)
				}
				if n := len(rep.Findings); n > 0 {
					return errFindings(n)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "check only this model (default: every model in the catalog)")
	cmd.Flags().BoolVar(&verify, "verify", false, "re-hash every blob instead of only checking that it exists with its size")
	return cmd
}

func printReport(w io.Writer, rep check.Report) {
	for _, f := range rep.Findings {
		fmt.Fprintln(w, f.String())
	}
	fmt.Fprintln(w, rep.Summary())
}
