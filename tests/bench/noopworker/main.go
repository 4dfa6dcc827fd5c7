// Command noopworker runs the orchestration benchmark's baseline (package noop) as a process of its own,
// as the registry's worker runs: with the registry's data converter and the same worker.Options, on
// a task queue of its own. tests/bench builds and starts it; it is no part of a deployment.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/internal/config"
	"github.com/modelreg/modelreg/tests/bench/noop"
	"github.com/modelreg/modelreg/workflows"
)

func main() {
	address := flag.String("address", "127.0.0.1:7233", "Temporal frontend (host:port)")
	namespace := flag.String("namespace", "default", "Temporal namespace")
	taskQueue := flag.String("task-queue", "bench-noop", "task queue to poll")
	flag.Parse()
	// The registry's worker logs JSON at info level to stderr; so does this, so that neither pays more
	// for its logging.
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(logger, *address, *namespace, *taskQueue); err != nil {
		logger.Error("worker stopped", "error", err.Error())
		os.Exit(1)
	}
}

func run(logger *slog.Logger, address, namespace, taskQueue string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Compressed as the registry's worker is: the baseline must not be tuned differently.
	compression, err := config.ParseGrpcCompression(os.Getenv("MODELREG_TEMPORAL_GRPC_COMPRESSION"))
	if err != nil {
		return err
	}
	c, err := client.Dial(client.Options{HostPort: address, Namespace: namespace,
		DataConverter: workflows.NewDataConverter(), Logger: log.NewStructuredLogger(logger),
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: compression}})
	if err != nil {
		return err
	}
	defer c.Close()
	// worker.Options{} as worker/main.go has it: the baseline must not be tuned differently.
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(noop.ModelWorkflow, workflow.RegisterOptions{Name: noop.ModelWorkflowType})
	w.RegisterWorkflowWithOptions(noop.VersionWorkflow, workflow.RegisterOptions{Name: noop.VersionWorkflowType})
	w.RegisterActivity(&noop.Activities{Client: c})
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	logger.Info("worker started", "taskQueue", taskQueue, "temporal", address)
	<-ctx.Done()
	logger.Info("shutting down")
	return nil
}
