package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/workflows"
)

// localBlob is a file of the directory being registered, hashed.
type localBlob struct {
	artifact.FileEntry
	abs string
}

// hashFiles computes every file's SHA-256, a few files at a time.
func (a *app) hashFiles(ctx context.Context, files []artifact.LocalFile) ([]localBlob, error) {
	var total int64
	for _, f := range files {
		total += f.Size
	}
	p := newProgress(a.errOut, total)
	p.verb = "hashing"
	defer p.finish()
	out := make([]localBlob, len(files))
	var mu sync.Mutex
	var done int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadConcurrency)
	for i, f := range files {
		g.Go(func() error {
			sum, n, err := hashFile(gctx, f.Abs)
			if err != nil {
				return err
			}
			if n != f.Size {
				return fmt.Errorf("%s changed while the directory was read (%d bytes, then %d)", f.Path, f.Size, n)
			}
			out[i] = localBlob{FileEntry: artifact.FileEntry{Path: f.Path, Size: n, SHA256: sum}, abs: f.Abs}
			mu.Lock()
			done += n
			p.update(f.Path, done)
			mu.Unlock()
			return nil
		})
	}
	return out, g.Wait()
}

func hashFile(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// plan asks the registry which of blobs its store lacks and where they go, a plan's worth at a time.
func (c *apiClient) plan(ctx context.Context, model string, blobs []localBlob) ([]api.BlobPlan, error) {
	var out []api.BlobPlan
	for i := 0; i < len(blobs); i += api.MaxPlanFiles {
		req := api.UploadPlanRequest{}
		for _, b := range blobs[i:min(i+api.MaxPlanFiles, len(blobs))] {
			req.Files = append(req.Files, b.FileEntry)
		}
		var p api.UploadPlan
		if err := c.call(ctx, http.MethodPost, pathOf("v1", "models", model, "uploads"), req, &p); err != nil {
			return nil, fmt.Errorf("plan the upload: %w", err)
		}
		out = append(out, p.Blobs...)
	}
	return out, nil
}

// uploadThroughServer sends the blobs the registry's store lacks, each to where the plan says, and
// returns how many it sent and how many the store already had.
func (a *app) uploadThroughServer(ctx context.Context, model string, files []localBlob) (sent, had int, err error) {
	// A plan deduplicates within itself; files of one content in two plans would go up twice.
	local := map[string]localBlob{}
	var blobs []localBlob
	for _, b := range files {
		if _, seen := local[b.SHA256]; !seen {
			local[b.SHA256] = b
			blobs = append(blobs, b)
		}
	}
	plans, err := a.api.plan(ctx, model, blobs)
	if err != nil {
		return 0, 0, err
	}
	var todo []api.BlobPlan
	var total int64
	for _, p := range plans {
		if _, ok := local[p.SHA256]; !ok {
			return 0, 0, fmt.Errorf("the registry planned blob %s, which is none of the files", p.SHA256)
		}
		if p.Present {
			had++
			continue
		}
		if p.Upload == nil {
			return 0, 0, fmt.Errorf("the registry gave no upload for blob %s", p.SHA256)
		}
		todo = append(todo, p)
		total += p.Size
	}
	prog := newProgress(a.errOut, total)
	defer prog.finish()
	var mu sync.Mutex
	var done int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadConcurrency)
	for _, p := range todo {
		g.Go(func() error {
			b := local[p.SHA256]
			// A plan's presigned URLs expire; one made long ago (a big version) is made again.
			if p.Upload.Expires != nil && time.Until(*p.Upload.Expires) < time.Minute {
				fresh, err := a.api.plan(gctx, model, []localBlob{b})
				if err != nil {
					return err
				}
				if fresh[0].Present {
					return nil
				}
				p = fresh[0]
			}
			var sentHere int64
			err := a.api.send(gctx, *p.Upload, b, func(n int64) {
				mu.Lock()
				defer mu.Unlock()
				done += n - sentHere
				sentHere = n
				prog.update(b.Path, done)
			})
			if err != nil {
				return fmt.Errorf("upload %s: %w", b.Path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	return len(todo), had, nil
}

// send PUTs one file where the plan says: the API's upload route with the bearer token, or a
// presigned URL of the store, which gets no token (its signature is the credential).
func (c *apiClient) send(ctx context.Context, t api.UploadTarget, b localBlob, progress func(int64)) error {
	f, err := os.Open(b.abs)
	if err != nil {
		return err
	}
	defer f.Close()
	target := t.URL
	if t.Bearer {
		if !strings.HasPrefix(t.URL, "/") {
			return fmt.Errorf("the registry's upload URL %q is not one of its own routes", t.URL)
		}
		target = c.base.String() + t.URL
	}
	var body io.Reader = http.NoBody
	if b.Size > 0 {
		// Exactly the hashed size: a file that grew since is cut to it (and refused for its digest).
		body = &countingReader{r: io.NewSectionReader(f, 0, b.Size), report: progress}
	}
	req, err := http.NewRequestWithContext(ctx, t.Method, target, body)
	if err != nil {
		return err
	}
	for k, v := range t.Headers {
		if !strings.EqualFold(k, "Content-Length") {
			req.Header.Set(k, v)
		}
	}
	req.ContentLength = b.Size
	if t.Bearer && c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	var refused error
	if t.Bearer {
		if refused = c.errorOf(resp); !codeIs(refused, "digest_mismatch") {
			return refused
		}
	} else if msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)); !strings.Contains(string(msg), "BadDigest") {
		return fmt.Errorf("the store refused the upload: HTTP %d: %s", resp.StatusCode, safe(string(msg)))
	}
	return fmt.Errorf("%s changed while it was being uploaded: its bytes no longer hash to the digest computed before, and were refused (register again)", b.Path)
}

type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 && c.report != nil {
		c.report(c.n)
	}
	return n, err
}

// registerThroughServer is `starter register` with --server: the files are hashed here, sent where the
// registry says (only those its store lacks), and the version is registered as the token's principal.
func (a *app) registerThroughServer(ctx context.Context, req workflows.RegisterRequest, dir, key string, wait bool) error {
	var entries []artifact.FileEntry
	if dir != "" {
		files, err := artifact.ScanDir(dir)
		if err != nil {
			return err
		}
		if err := preflight(req, key, files); err != nil {
			return err
		}
		blobs, err := a.hashFiles(ctx, files)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			entries = append(entries, b.FileEntry)
		}
		sent, had, err := a.uploadThroughServer(ctx, req.Model, blobs)
		if err != nil {
			return err
		}
		if len(entries) > workflows.MaxInlineFiles {
			tmp, err := os.MkdirTemp("", "modelreg-listing-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			path, err := artifact.WriteListingFile(tmp, entries)
			if err != nil {
				return err
			}
			sum, n, err := hashFile(ctx, path)
			if err != nil {
				return err
			}
			// In a plan of its own: a plan names one version's paths, and the version may hold a
			// listing.json (or a Listing.JSON) of its own.
			s, h, err := a.uploadThroughServer(ctx, req.Model, []localBlob{{FileEntry: artifact.FileEntry{Path: "listing.json", Size: n, SHA256: sum}, abs: path}})
			if err != nil {
				return err
			}
			sent, had = sent+s, had+h
			req.Source.Listing = &artifact.ListingRef{SHA256: sum, Count: len(entries)}
		} else {
			req.Source.Files = entries
		}
		if !a.json {
			fmt.Fprintf(a.errOut, "%d files: %d blobs sent, %d already stored\n", len(entries), sent, had)
		}
	}
	if key == "" {
		key = contentKeyFiles(req, entries)
	}
	req.IdempotencyKey = key
	if err := req.Validate(); err != nil {
		return err
	}
	var res workflows.RegisterResult
	body := api.RegisterBody{IdempotencyKey: key, Source: req.Source, Metrics: req.Metrics, Params: req.Params, Tags: req.Tags, SourceRun: req.SourceRun}
	if err := a.api.call(ctx, http.MethodPost, pathOf("v1", "models", req.Model, "versions"), body, &res); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if err := a.printRegistered(res, key, wait); err != nil || !wait {
		return err
	}
	return a.followThroughServer(ctx, res.Model, res.Version)
}

// printRegistered reports a registration's result the same way whichever door it went through.
func (a *app) printRegistered(res workflows.RegisterResult, key string, wait bool) error {
	if res.Existing && (res.Stage == workflows.StageRejected || res.Stage == workflows.StageFailed) {
		return fmt.Errorf("%s v%d was already registered under idempotency key %q and ended %s; that key always names v%d. "+
			"To register the same content again as a new version, pass a new --idempotency-key", res.Model, res.Version, key, res.Stage, res.Version)
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
	return nil
}

func (c *apiClient) version(ctx context.Context, model string, version int) (api.VersionDetail, error) {
	var d api.VersionDetail
	err := c.get(ctx, pathOf("v1", "models", model, "versions", strconv.Itoa(version)), nil, &d)
	return d, err
}

// liveStage is the version's workflow's stage when it answered, else the catalog's (a moment behind).
func liveStage(d api.VersionDetail) string {
	if d.Live != nil {
		return d.Live.Stage
	}
	return d.Stage
}

// followThroughServer is follow with --server.
func (a *app) followThroughServer(ctx context.Context, model string, version int) error {
	return a.followStages(ctx, model, version, func() (string, any, func(), error) {
		d, err := a.api.version(ctx, model, version)
		return liveStage(d), d, func() {
			if n := len(d.Transitions); n > 0 {
				fmt.Fprintf(a.out, "reason: %s\n", safe(d.Transitions[n-1].Reason))
			}
		}, err
	})
}

func (a *app) statusThroughServer(ctx context.Context, model string, version int) error {
	d, err := a.api.version(ctx, model, version)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(d)
	}
	if d.Live != nil {
		printDescription(a.out, workflows.VersionDescription{Model: d.Model, Version: d.Version.Version, State: *d.Live})
		if d.Live.Step != "" && d.Live.StepSince != nil {
			fmt.Fprintf(a.out, "waiting: %s since %s\n", d.Live.Step, d.Live.StepSince.Format(time.RFC3339))
		}
	} else {
		fmt.Fprintf(a.out, "%s v%d: %s (from the catalog; %s)\n", d.Model, d.Version.Version, d.Stage, safe(d.LiveError))
		if d.ManifestURI != "" {
			fmt.Fprintf(a.out, "manifest: %s (%s), %d files\n", d.ManifestURI, d.ManifestDigest, len(d.Files))
		}
		fmt.Fprintln(a.out, "history:")
		for _, t := range d.Transitions {
			fmt.Fprintf(a.out, "  %s  %s -> %s  by %s: %s\n", t.At.Format(time.RFC3339), orDash(t.From), t.To, safe(orDash(t.Actor)), safe(t.Reason))
		}
	}
	if n := len(d.Deliveries); n > 0 {
		last := d.Deliveries[n-1]
		fmt.Fprintf(a.out, "deployment event: %s %s", last.EventID, last.Status)
		if last.Error != "" {
			fmt.Fprintf(a.out, " (%s)", safe(last.Error))
		}
		fmt.Fprintln(a.out)
	}
	return nil
}

func (a *app) listThroughServer(ctx context.Context, model, stage string) error {
	if model == "" {
		var all []catalog.ModelSummary
		for cursor := ""; ; {
			q := url.Values{"limit": {"500"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page api.ModelList
			if err := a.api.get(ctx, "/v1/models", q, &page); err != nil {
				return err
			}
			all = append(all, page.Models...)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		if a.json {
			return a.printJSON(all)
		}
		tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MODEL\tPRODUCTION\tLATEST\tWAITING\tUPDATED")
		for _, m := range all {
			p := "-"
			if m.ProductionVersion != nil {
				p = "v" + strconv.Itoa(*m.ProductionVersion)
			}
			fmt.Fprintf(tw, "%s\t%s\tv%d\t%d\t%s\n", m.Name, p, m.LatestVersion, m.Waiting, m.UpdatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	var all []catalog.Version
	for cursor := ""; ; {
		q := url.Values{"limit": {"500"}}
		if stage != "" {
			q.Set("stage", stage)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page api.VersionList
		if err := a.api.get(ctx, pathOf("v1", "models", model, "versions"), q, &page); err != nil {
			return err
		}
		all = append(all, page.Versions...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if a.json {
		return a.printJSON(all)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTAGE\tREGISTERED BY\tSOURCE RUN\tUPDATED")
	for _, v := range all {
		fmt.Fprintf(tw, "v%d\t%s\t%s\t%s\t%s\n", v.Version, v.Stage, safe(orDash(v.RegisteredBy)), safe(orDash(v.SourceRun)), v.UpdatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func (a *app) printProduction(p api.Production, watching bool) error {
	if a.json && watching {
		// One object per line: a watcher's output is read a change at a time.
		return json.NewEncoder(a.out).Encode(p)
	}
	if a.json {
		return a.printJSON(p)
	}
	_, err := fmt.Fprintf(a.out, "%s v%d (stage %s)\nmanifest: %s\ndigest:   %s\n", p.Model, p.Version, p.Stage, p.ManifestURI, p.ManifestDigest)
	return err
}

// productionThroughServer prints what is in production; with wait, it keeps long-polling and prints
// every change until interrupted.
func (a *app) productionThroughServer(ctx context.Context, model string, wait bool) error {
	path := pathOf("v1", "models", model, "production")
	etag := ""
	for failures := 0; ; {
		q := url.Values{}
		hdr := http.Header{}
		if etag != "" {
			q.Set("wait", api.MaxWait.String())
			hdr.Set("If-None-Match", etag)
		}
		resp, err := a.api.request(ctx, http.MethodGet, path, q, nil, hdr)
		switch {
		case ctx.Err() != nil && wait:
			return nil // interrupted: the watch is over
		case err == nil && resp.StatusCode == http.StatusNotModified:
			resp.Body.Close()
			failures = 0
			continue
		case err == nil:
			var p api.Production
			derr := jsonDecode(resp, &p)
			if derr != nil {
				return derr
			}
			if err := a.printProduction(p, wait); err != nil || !wait {
				return err
			}
			etag, failures = resp.Header.Get("ETag"), 0
			continue
		case codeIs(err, "no_production_version"):
			if !wait {
				return fmt.Errorf("model %q has no version in production", model)
			}
			if etag == "" && !a.json {
				fmt.Fprintf(a.errOut, "%s has no version in production; waiting for one\n", model)
			}
			etag, failures = resp.Header.Get("ETag"), 0
			continue
		}
		var ae *apiError
		if !wait || errors.As(err, &ae) && ae.Status < 500 {
			return err
		}
		// A watch rides out a registry restart.
		failures++
		fmt.Fprintf(a.errOut, "watching %s: %v (retrying)\n", model, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(failures)*time.Second, 15*time.Second)):
		}
	}
}

func jsonDecode(resp *http.Response, into any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(into)
}

func (a *app) decideThroughServer(ctx context.Context, kind, model string, version int, comment, digest string) error {
	if digest == "" {
		d, err := a.api.version(ctx, model, version)
		if err != nil {
			return err
		}
		if d.ManifestDigest == "" {
			return fmt.Errorf("%s refused: %s v%d has no manifest yet (stage %s)", kind, model, version, liveStage(d))
		}
		digest = d.ManifestDigest
		if !a.json {
			fmt.Fprintf(a.errOut, "deciding on manifest digest %s\n", digest)
		}
	}
	var res workflows.DecisionResult
	err := a.api.call(ctx, http.MethodPost, pathOf("v1", "models", model, "versions", strconv.Itoa(version), kind),
		api.DecisionBody{Digest: digest, Comment: comment}, &res)
	if err != nil {
		return fmt.Errorf("%s refused: %w", kind, err)
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
}

func (a *app) rollbackThroughServer(ctx context.Context, model string, to int, reason string) error {
	var res workflows.ProductionResult
	if err := a.api.call(ctx, http.MethodPost, pathOf("v1", "models", model, "rollback"), api.RollbackBody{To: to, Reason: reason}, &res); err != nil {
		return fmt.Errorf("rollback refused: %w", err)
	}
	if a.json {
		return a.printJSON(res)
	}
	fmt.Fprintf(a.out, "%s: v%d is in production again (v%d archived)\n", model, res.Version, res.Previous)
	return nil
}
