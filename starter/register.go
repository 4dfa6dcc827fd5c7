package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/names"
	"github.com/modelreg/modelreg/workflows"
)

func (a *app) registerCmd() *cobra.Command {
	var (
		model, dir, source, metricsFile, sourceRun, key, by string
		params                                              []string
		wait                                                bool
	)
	cmd := &cobra.Command{
		Use:   "register --model NAME (--dir DIR | --source s3://bucket/prefix) [flags]",
		Short: "Register a new model version from a directory or an s3:// prefix",
		Long: `Register uploads the files of DIR to the registry's artifact store (content-addressed: a file already
stored is not sent again), then asks the model's workflow for a new version. With --source, the worker
copies the objects under an s3:// prefix instead. Retrying with the same --idempotency-key (by default
derived from the files, metrics, params and source run) returns the same version.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			req := workflows.RegisterRequest{SchemaVersion: workflows.SchemaVersion, Model: model, SourceRun: sourceRun, RegisteredBy: by}
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			if (dir == "") == (source == "") {
				return errors.New("give exactly one of --dir DIR or --source s3://bucket/prefix")
			}
			var err error
			if metricsFile != "" {
				if req.Metrics, err = readMetrics(metricsFile); err != nil {
					return err
				}
			}
			if req.Params, err = parseParams(params); err != nil {
				return err
			}
			if req.RegisteredBy == "" {
				req.RegisteredBy = currentUser()
			}
			if source != "" {
				if _, _, err := artifact.ParseS3URI(source); err != nil {
					return err
				}
				req.Source.URI = source
			} else {
				// Everything that can be refused is checked before a byte is uploaded.
				files, err := artifact.ScanDir(dir)
				if err != nil {
					return err
				}
				if req.Source.Files, err = a.upload(ctx, files); err != nil {
					return err
				}
			}
			req.IdempotencyKey = key
			if req.IdempotencyKey == "" {
				req.IdempotencyKey = contentKey(req)
			}
			if err := req.Validate(); err != nil {
				return err
			}
			res, err := a.register(ctx, req)
			if err != nil {
				return err
			}
			if res.Existing && (res.Stage == workflows.StageRejected || res.Stage == workflows.StageFailed) {
				return fmt.Errorf("%s v%d was already registered under idempotency key %q and ended %s; that key always names v%d. "+
					"To register the same content again as a new version, pass a new --idempotency-key", res.Model, res.Version, req.IdempotencyKey, res.Stage, res.Version)
			}
			if a.json && !wait {
				return a.printJSON(res)
			}
			if !a.json {
				verb := "registered"
				if res.Existing {
					verb = "already registered (same idempotency key)"
				}
				fmt.Fprintf(a.out, "%s %s v%d\nworkflow: %s\n", verb, res.Model, res.Version, res.WorkflowID)
			}
			if wait {
				return a.follow(ctx, res.Model, res.Version)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model name (required)")
	f.StringVar(&dir, "dir", "", "directory holding the version's artifact files")
	f.StringVar(&source, "source", "", "s3://bucket/prefix whose objects are the version's files")
	f.StringVar(&metricsFile, "metrics", "", "JSON file of metrics, e.g. {\"accuracy\": 0.93}")
	f.StringArrayVar(&params, "param", nil, "training parameter key=value (repeatable)")
	f.StringVar(&sourceRun, "source-run", "", "the training run that produced the version (URL or ID)")
	f.StringVar(&key, "idempotency-key", "", "retry key: the same key always returns the same version")
	f.StringVar(&by, "registered-by", "", "who registers (default: the current user)")
	f.BoolVar(&wait, "wait", false, "follow the version until it waits for approval or ends")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// readMetrics reads a JSON object of finite numbers.
func readMetrics(path string) (map[string]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metrics file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("metrics file %s is not a JSON object of numbers: %v", path, err)
	}
	if raw == nil { // the literal null decodes into a nil map without an error
		return nil, fmt.Errorf("metrics file %s is null, not a JSON object of numbers", path)
	}
	// dec.More is false for a stray ']' or '}', so look at the bytes themselves.
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return nil, fmt.Errorf("metrics file %s has data after its JSON object", path)
	}
	out := map[string]float64{}
	for k, v := range raw {
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("metrics file %s: metric %q is %s, not a number", path, k, jsonKind(v))
		}
		f, err := n.Float64()
		if err != nil {
			return nil, fmt.Errorf("metrics file %s: metric %q: %v", path, k, err)
		}
		out[k] = f
	}
	if err := workflows.ValidateMetrics(out); err != nil {
		return nil, fmt.Errorf("metrics file %s: %w", path, err)
	}
	return out, nil
}

// jsonKind describes a decoded JSON value that is not a number, for error messages.
func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

func parseParams(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--param %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// contentKey derives an idempotency key from what is registered, so re-running the same training job's
// registration returns its version instead of minting a duplicate.
func contentKey(r workflows.RegisterRequest) string {
	h := sha256.New()
	files := append([]artifact.FileEntry(nil), r.Source.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	b, _ := json.Marshal(struct {
		M  string
		U  string
		F  []artifact.FileEntry
		Me map[string]float64
		P  map[string]string
		S  string
	}{r.Model, r.Source.URI, files, r.Metrics, r.Params, r.SourceRun})
	h.Write(b)
	return "content-" + hex.EncodeToString(h.Sum(nil))[:40]
}

func (a *app) upload(ctx context.Context, files []artifact.LocalFile) ([]artifact.FileEntry, error) {
	store, err := a.cfg.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	p := newProgress(a.errOut, total)
	out := make([]artifact.FileEntry, 0, len(files))
	var done int64
	for _, f := range files {
		base := done
		e, err := store.PutFile(ctx, f.Abs, func(n int64) { p.update(f.Path, base+n) })
		if err != nil {
			p.finish()
			return nil, fmt.Errorf("upload %s: %w", f.Path, err)
		}
		e.Path = f.Path
		out = append(out, e)
		done += f.Size
		p.update(f.Path, done)
	}
	p.finish()
	return out, nil
}

func (a *app) register(ctx context.Context, req workflows.RegisterRequest) (workflows.RegisterResult, error) {
	c, err := a.cfg.Dial(a.logger)
	if err != nil {
		return workflows.RegisterResult{}, err
	}
	defer c.Close()
	start := c.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       workflows.ModelWorkflowID(req.Model),
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporalSA(req.Model),
	}, workflows.ModelWorkflowType, workflows.ModelInput{SchemaVersion: workflows.SchemaVersion, Model: req.Model})
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			// No fixed update ID: the handler itself is idempotent on the key and reports existing=true,
			// which a server-side deduplicated update would not.
			UpdateName:   workflows.UpdateRegister,
			Args:         []any{req},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return workflows.RegisterResult{}, fmt.Errorf("register: %w", err)
	}
	var res workflows.RegisterResult
	if err := h.Get(ctx, &res); err != nil {
		return res, fmt.Errorf("register: %w", err)
	}
	return res, nil
}

// follow prints each stage the version enters until it waits for a human or ends.
func (a *app) follow(ctx context.Context, model string, version int) error {
	c, err := a.cfg.Dial(a.logger)
	if err != nil {
		return err
	}
	defer c.Close()
	last := ""
	for {
		d, err := describeVersion(ctx, c, model, version)
		if err != nil {
			return err
		}
		if s := d.State.Stage; s != last {
			last = s
			if !a.json {
				fmt.Fprintf(a.out, "%s  %s\n", time.Now().UTC().Format(time.RFC3339), s)
			}
		}
		switch last {
		case workflows.StagePendingApproval, workflows.StageProduction, workflows.StageArchived:
			if a.json {
				return a.printJSON(d)
			}
			return nil
		case workflows.StageRejected, workflows.StageFailed:
			if a.json {
				_ = a.printJSON(d)
			} else {
				printReasons(a.out, d)
			}
			return fmt.Errorf("%s v%d ended %s", model, version, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
