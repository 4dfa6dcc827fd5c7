// Command worker runs the model registry: the Temporal worker that executes every model's and version's
// lifecycle. With --dev it also runs everything the registry needs in this one process tree, with no
// setup: a Temporal dev server (persisted to a file, with its Web UI), a SQLite catalog and a
// local-directory artifact store, all under --data-dir.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/config"
	"github.com/modelreg/modelreg/internal/devserver"
	"github.com/modelreg/modelreg/internal/metrics"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "probe" {
		runProbe(os.Args[2])
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(logger); err != nil {
		logger.Error("worker stopped", "error", err.Error())
		os.Exit(1)
	}
}

func run(logger *slog.Logger) error {
	dev := flag.Bool("dev", false, "run the embedded default: a Temporal dev server with Web UI, a SQLite catalog and a directory artifact store under --data-dir")
	dataDir := flag.String("data-dir", "", "directory of the embedded default's files (default $MODELREG_DATA_DIR or ./.modelreg)")
	devPort := flag.Int("dev-port", 7233, "with --dev: the Temporal frontend port")
	uiPort := flag.Int("ui-port", 8233, "with --dev: the Temporal Web UI port")
	headless := flag.Bool("headless", false, "with --dev: no Web UI")
	tempBase := flag.String("temp-dir", filepath.Join(os.TempDir(), "modelreg-import"),
		"where files imported from s3:// sources are staged; each worker has its own subdirectory, and the subdirectories of dead workers are removed at start")
	partSizeMiB := flag.Int64("part-size-mib", 0, fmt.Sprintf("S3 multipart part size in MiB for imports (default $MODELREG_S3_PART_SIZE_MIB or %d)", artifact.DefaultPartSize>>20))
	httpAddr := flag.String("http", "", "serve the HTTP API, web page and /metrics on this address (default $MODELREG_HTTP_ADDR; with --dev 127.0.0.1:8080; \"off\" disables)")
	tokensFile := flag.String("api-tokens", "", "JSON file mapping bearer tokens to principals and roles (default $MODELREG_API_TOKENS_FILE; with --dev a generated admin token in <data-dir>/api-token)")
	concurrency := flag.Int("upload-concurrency", 0, fmt.Sprintf("parts of one file uploaded at once (default $MODELREG_S3_CONCURRENCY or %d)", artifact.DefaultConcurrency))
	flag.Parse()

	if *dataDir != "" {
		os.Setenv("MODELREG_DATA_DIR", *dataDir)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	if err := cfg.SetUpload(*partSizeMiB, *concurrency); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *dev {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return err
		}
		bin, ok := devserver.FindBinary()
		if !ok {
			logger.Info("the temporal CLI is not installed; building it once with go install (takes a few minutes)", "module", devserver.CLIModule)
			var err error
			if bin, err = devserver.InstallBinary(ctx, os.Stderr); err != nil {
				return err
			}
		}
		srv, err := devserver.Start(ctx, devserver.Options{
			Binary: bin, DBFile: filepath.Join(cfg.DataDir, "temporal.db"), Port: *devPort, UIPort: *uiPort,
			Headless: *headless, Namespace: cfg.Namespace, Log: os.Stderr,
		})
		if err != nil {
			return err
		}
		defer srv.Stop()
		cfg.UseDevServer(srv.Address)
		logger.Info("embedded default running", "temporal", srv.Address, "webUI", srv.UIURL,
			"catalog", config.RedactURL(cfg.DatabaseURL), "artifacts", cfg.ArtifactRoot)
	}

	cat, err := cfg.OpenCatalog(ctx)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer cat.Close()
	store, err := cfg.OpenStore(ctx)
	if err != nil {
		return fmt.Errorf("artifact store: %w", err)
	}
	src, err := cfg.SourceClient(ctx)
	if err != nil {
		return fmt.Errorf("s3 source client: %w", err)
	}
	tmp, err := claimTempDir(*tempBase, logger)
	if err != nil {
		return err
	}
	defer tmp.Release()

	reg := metrics.New()
	cfg.MetricsHandler = reg.SDKHandler()
	defer reg.Close()
	// The API comes up before Temporal is reached: reads come from the catalog and must not wait for it.
	var apiSrv *api.Server
	addr := firstNonEmpty(*httpAddr, cfg.HTTPAddr)
	if addr == "" && *dev {
		addr = "127.0.0.1:8080"
	}
	if addr != "" && addr != "off" {
		var stopHTTP func()
		apiSrv, stopHTTP, err = serveHTTP(ctx, logger, httpOptions{
			Addr: addr, Dev: *dev, DataDir: cfg.DataDir, TokensFile: firstNonEmpty(*tokensFile, cfg.APITokensFile), Sources: cfg.APISources,
			Catalog: cat, Store: store, Metrics: reg,
		})
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
	c, err := dialRetry(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	if apiSrv != nil {
		apiSrv.SetTemporal(c)
	}

	acts := &activities.Activities{
		Catalog: cat, Store: store, SourceS3: src, Temporal: c, TempDir: tmp.Path,
		HTTP:          &http.Client{Timeout: 15 * time.Second},
		WebhookSecret: []byte(cfg.WebhookSecret),
		Metrics:       reg,
	}
	cfg.Worker.Apply()
	w := newWorker(c, acts, cfg.Worker.Options())
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	// Whether secrets are configured, never their values (a key's id is not secret).
	keyID := ""
	if len(cfg.PayloadKeys) > 0 {
		keyID = cfg.PayloadKeys[0].ID
	}
	logger.Info("worker started", "taskQueue", "model-registry", "temporal", cfg.TemporalAddress, "namespace", cfg.Namespace,
		"signedWebhooks", len(cfg.WebhookSecret) > 0, "payloadEncryptionKeyID", keyID)
	<-ctx.Done()
	logger.Info("shutting down")
	return nil
}

// dialRetry waits for Temporal: a worker started alongside its server (compose, systemd) must not die
// because the server is a few seconds slower.
func dialRetry(ctx context.Context, cfg config.Config, logger *slog.Logger) (client.Client, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := cfg.Dial(logger)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		logger.Warn("Temporal not reachable yet; retrying", "error", err.Error())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
