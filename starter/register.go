package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/control"
	"github.com/modelreg/modelreg/internal/names"
	"github.com/modelreg/modelreg/workflows"
)

func (a *app) registerCmd() *cobra.Command {
	var (
		model, dir, source, metricsFile, sourceRun, key, by string
		params, tags                                        []string
		wait                                                bool
		partSizeMiB                                         int64
		concurrency                                         int
	)
	cmd := &cobra.Command{
		Use:   "register --model NAME (--dir DIR | --source s3://bucket/prefix) [flags]",
		Short: "Register a new model version from a directory or an s3:// prefix",
		Long: `Register uploads the files of DIR to the registry's artifact store (content-addressed: a file already
stored is not sent again), then asks the model's workflow for a new version. With --source, the worker
copies the objects under an s3:// prefix instead. Retrying with the same --idempotency-key (by default
derived from the files, metrics, params and source run) returns the same version.

With --server, nothing but the registry's URL and a token is needed: the files are hashed here, the registry
says which of them its store lacks and where each goes (a presigned URL of the store, or its own upload
route), and the version is registered as the token's principal.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if a.api != nil {
				switch {
				case by != "":
					return notWithServer("--registered-by", "the registrant is the token's principal")
				case cmd.Flags().Changed("part-size-mib"), cmd.Flags().Changed("upload-concurrency"):
					return notWithServer("--part-size-mib and --upload-concurrency", "they tune uploads straight to the store")
				}
			}
			if err := a.cfg.SetUpload(partSizeMiB, concurrency); err != nil {
				return err
			}
			req := workflows.RegisterRequest{SchemaVersion: workflows.SchemaVersion, Model: model, SourceRun: sourceRun, RegisteredBy: by}
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			if (dir == "") == (source == "") {
				return errors.New("give exactly one of --dir DIR or --source s3://bucket/prefix")
			}
			var (
				err     error
				entries []artifact.FileEntry // the uploaded files, however they travel
			)
			if metricsFile != "" {
				if req.Metrics, err = readMetrics(metricsFile); err != nil {
					return err
				}
			}
			if req.Params, err = parseParams(params); err != nil {
				return err
			}
			if req.Tags, err = parseTags(tags); err != nil {
				return err
			}
			if source != "" {
				if _, _, err := artifact.ParseS3URI(source); err != nil {
					return err
				}
				req.Source.URI = source
			}
			if a.api != nil {
				return a.registerThroughServer(ctx, req, dir, key, wait)
			}
			if req.RegisteredBy == "" {
				req.RegisteredBy = currentUser()
			}
			if source == "" {
				// Everything that can be refused is checked before a byte is uploaded: the directory, and
				// the request's shape and size with the digests still to be computed.
				files, err := artifact.ScanDir(dir)
				if err != nil {
					return err
				}
				if err := preflight(req, key, files); err != nil {
					return err
				}
				store, err := a.cfg.OpenStore(ctx)
				if err != nil {
					return err
				}
				if entries, err = a.upload(ctx, store, files); err != nil {
					return err
				}
				if len(entries) > workflows.MaxInlineFiles {
					if req.Source.Listing, err = a.uploadListing(ctx, store, entries); err != nil {
						return err
					}
				} else {
					req.Source.Files = entries
				}
			}
			req.IdempotencyKey = key
			if req.IdempotencyKey == "" {
				req.IdempotencyKey = contentKeyFiles(req, entries)
			}
			if err := req.Validate(); err != nil {
				return err
			}
			res, err := a.register(ctx, req)
			if err != nil {
				return err
			}
			if err := a.printRegistered(res, req.IdempotencyKey, wait); err != nil || !wait {
				return err
			}
			return a.follow(ctx, res.Model, res.Version)
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model name (required)")
	f.StringVar(&dir, "dir", "", "directory holding the version's artifact files")
	f.StringVar(&source, "source", "", "s3://bucket/prefix whose objects are the version's files")
	f.StringVar(&metricsFile, "metrics", "", "JSON file of metrics, e.g. {\"accuracy\": 0.93}")
	f.StringArrayVar(&params, "param", nil, "training parameter key=value (repeatable)")
	f.StringArrayVar(&tags, "tag", nil, "tag key=value to find the version by, e.g. team=risk (repeatable)")
	f.StringVar(&sourceRun, "source-run", "", "the training run that produced the version (URL or ID)")
	f.StringVar(&key, "idempotency-key", "", "retry key: the same key always returns the same version")
	f.StringVar(&by, "registered-by", "", "who registers (default: the current user)")
	f.BoolVar(&wait, "wait", false, "follow the version until it waits for approval or ends")
	f.Int64Var(&partSizeMiB, "part-size-mib", 0, fmt.Sprintf("S3 multipart part size in MiB (default $MODELREG_S3_PART_SIZE_MIB or %d)", artifact.DefaultPartSize>>20))
	f.IntVar(&concurrency, "upload-concurrency", 0, fmt.Sprintf("parts of one file uploaded at once (default $MODELREG_S3_CONCURRENCY or %d)", artifact.DefaultConcurrency))
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
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() > maxMetricsFileBytes {
		return nil, fmt.Errorf("metrics file %s is %d bytes, more than a request may hold (%d bytes; at most %d metrics)",
			path, fi.Size(), maxMetricsFileBytes, workflows.MaxMetrics)
	}
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

// parseTags reads --tag key=value flags: the first '=' ends the key (a key cannot hold one), and the
// last value of a key wins, as with --param. They are checked as the register update checks them.
func parseTags(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tag %q is not key=value", kv)
		}
		out[k] = v
	}
	if err := workflows.ValidateTags(out); err != nil {
		return nil, fmt.Errorf("--tag: %w", err)
	}
	return out, nil
}

// maxMetricsFileBytes refuses a metrics file that could not fit in a request before reading all of it.
const maxMetricsFileBytes = workflows.MaxRequestBytes

// preflight validates the request that uploading files will produce, with placeholder digests of the
// same length, so that a request Temporal would refuse (too many inline files, too large) is refused
// before anything is uploaded.
func preflight(req workflows.RegisterRequest, key string, files []artifact.LocalFile) error {
	placeholder := strings.Repeat("0", 64)
	if len(files) > workflows.MaxInlineFiles {
		req.Source.Listing = &artifact.ListingRef{SHA256: placeholder, Count: len(files)}
	} else {
		for _, f := range files {
			req.Source.Files = append(req.Source.Files, artifact.FileEntry{Path: f.Path, Size: f.Size, SHA256: placeholder})
		}
	}
	req.IdempotencyKey = key
	if key == "" {
		req.IdempotencyKey = contentKey(workflows.RegisterRequest{})
	}
	return req.Validate()
}

// contentKey derives an idempotency key from what is registered, so re-running the same training job's
// registration returns its version instead of minting a duplicate.
func contentKey(r workflows.RegisterRequest) string { return contentKeyFiles(r, r.Source.Files) }

// contentKeyFiles is contentKey over the given files, which a request with a listing does not carry.
func contentKeyFiles(r workflows.RegisterRequest, listed []artifact.FileEntry) string {
	return control.ContentKey(r, listed)
}

// uploadConcurrency is how many files are uploaded at once: a version of many small files is bound by
// round trips, not bandwidth (a large file's parts go up in parallel as well, see artifact.S3Config).
const uploadConcurrency = 8

func (a *app) upload(ctx context.Context, store artifact.Store, files []artifact.LocalFile) ([]artifact.FileEntry, error) {
	var total int64
	for _, f := range files {
		total += f.Size
	}
	p := newProgress(a.errOut, total)
	defer p.finish()
	out := make([]artifact.FileEntry, len(files))
	var (
		mu   sync.Mutex
		done int64 // bytes of the files finished
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadConcurrency)
	for i, f := range files {
		g.Go(func() error {
			e, err := store.PutFile(gctx, f.Abs, func(n int64) {
				mu.Lock()
				defer mu.Unlock()
				// PutFile counts hashing and storing, up to twice the size.
				p.update(f.Path, done+n/2)
			})
			if err != nil {
				return fmt.Errorf("upload %s: %w", f.Path, err)
			}
			e.Path = f.Path
			out[i] = e
			mu.Lock()
			done += f.Size
			p.update(f.Path, done)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// uploadListing stores the file list as a blob and returns the reference to register instead of it.
func (a *app) uploadListing(ctx context.Context, store artifact.Store, files []artifact.FileEntry) (*artifact.ListingRef, error) {
	path, err := artifact.WriteListingFile("", files)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	e, err := store.PutFile(ctx, path, nil)
	if err != nil {
		return nil, fmt.Errorf("upload the file listing: %w", err)
	}
	return &artifact.ListingRef{SHA256: e.SHA256, Count: len(files)}, nil
}

func (a *app) register(ctx context.Context, req workflows.RegisterRequest) (workflows.RegisterResult, error) {
	c, err := a.cfg.Dial(a.logger)
	if err != nil {
		return workflows.RegisterResult{}, err
	}
	defer c.Close()
	return control.Register(ctx, c, req)
}

// follow prints each stage the version enters until it waits for a human or ends.
func (a *app) follow(ctx context.Context, model string, version int) error {
	c, err := a.cfg.Dial(a.logger)
	if err != nil {
		return err
	}
	defer c.Close()
	return a.followStages(ctx, model, version, func() (string, any, func(), error) {
		d, err := describeVersion(ctx, c, model, version)
		return d.State.Stage, d, func() { printReasons(a.out, d) }, err
	})
}

// followStages polls next for the version's stage (with what --json prints and how to explain an end)
// and prints each stage it has not printed yet, until the version waits for a human or ends.
func (a *app) followStages(ctx context.Context, model string, version int, next func() (stage string, doc any, reasons func(), err error)) error {
	last := ""
	for {
		stage, doc, reasons, err := next()
		if err != nil {
			return err
		}
		if stage != last {
			last = stage
			if !a.json {
				fmt.Fprintf(a.out, "%s  %s\n", time.Now().UTC().Format(time.RFC3339), stage)
			}
		}
		switch last {
		case workflows.StagePendingApproval, workflows.StageProduction, workflows.StageArchived:
			if a.json {
				return a.printJSON(doc)
			}
			return nil
		case workflows.StageRejected, workflows.StageFailed:
			if a.json {
				_ = a.printJSON(doc)
			} else {
				reasons()
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
