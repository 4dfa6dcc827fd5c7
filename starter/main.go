// Command starter is the registry's command-line tool for training jobs, approvers, deployers and
// operators: register versions, follow them, decide on them, and ask what is in production.
//
// cobra is used for the command tree because it is what the temporal CLI itself uses: subcommands,
// flag parsing and help output come for free and look familiar to operators.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelreg/modelreg/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// starterS3Attempts and starterS3MaxBackoff retry each S3 request for two to three minutes (jittered
// exponential backoff), about what the worker's store activity allows an attempt.
const (
	starterS3Attempts   = 20
	starterS3MaxBackoff = 20 * time.Second
)

type app struct {
	cfg    config.Config
	out    io.Writer
	errOut io.Writer
	json   bool
	logger *slog.Logger
	// serverURL and token are --server and --token; api is set when the registry is reached through
	// its HTTP API instead of Temporal, the catalog and the store.
	serverURL, token string
	api              *apiClient
}

func newRoot() *cobra.Command { return newRootWith(os.Stdout, os.Stderr) }

func newRootWith(out, errOut io.Writer) *cobra.Command {
	a := &app{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:           "starter",
		Short:         "Register model versions and drive their lifecycle in the modelreg registry",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// The SDK logs connection chatter at info; a CLI only wants warnings.
			a.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			var err error
			if a.cfg, err = config.FromEnv(); err != nil {
				return err
			}
			// The starter uses a registry; only `worker --dev` creates the embedded default's files.
			a.cfg.MustExist = true
			// The worker rides out a store outage on its activities' retries; the starter has only the
			// SDK's, whose defaults give up within a second.
			if a.cfg.S3.MaxAttempts == 0 {
				a.cfg.S3.MaxAttempts = starterS3Attempts
			}
			if a.cfg.S3.MaxBackoff == 0 {
				a.cfg.S3.MaxBackoff = starterS3MaxBackoff
			}
			return a.serverSettings(a.cfg.DataDir)
		},
	}
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print JSON instead of text")
	root.PersistentFlags().StringVar(&a.serverURL, "server", "", "the registry's HTTP API (default $MODELREG_SERVER): talk to it instead of Temporal, the catalog and the store")
	root.PersistentFlags().StringVar(&a.token, "token", "", "bearer token for --server (default $MODELREG_TOKEN, else the api-token file of $MODELREG_DATA_DIR or ./.modelreg)")
	root.AddCommand(a.registerCmd(), a.statusCmd(), a.listCmd(), a.productionCmd(),
		a.decisionCmd("approve"), a.decisionCmd("reject"), a.verdictCmd(), a.rollbackCmd(), a.redeliverCmd(), a.historyCmd(), a.policyCmd(), a.pullCmd())
	root.AddCommand(a.checkCmd())
	root.AddCommand(a.codecServerCmd())
	return root
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
