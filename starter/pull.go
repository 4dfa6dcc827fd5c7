package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/names"
)

// pullConcurrency is how many files are downloaded at once.
const pullConcurrency = 4

// pullSource is a version's files and how to read each one's bytes.
type pullSource struct {
	model          string
	version        int
	manifestDigest string
	files          []artifact.FileEntry
	open           func(ctx context.Context, f artifact.FileEntry) (io.ReadCloser, error)
	close          func()
}

// PullResult is what `starter pull --json` prints.
type PullResult struct {
	Model          string `json:"model"`
	Version        int    `json:"version"`
	ManifestDigest string `json:"manifestDigest"`
	Dir            string `json:"dir"`
	Files          int    `json:"files"`
	Bytes          int64  `json:"bytes"`
	Downloaded     int    `json:"downloaded"`
	Kept           int    `json:"kept"` // files already in the directory with the right digest
}

func (a *app) pullCmd() *cobra.Command {
	var model, version, out string
	cmd := &cobra.Command{
		Use:   "pull --model NAME [--version N | --version production] --out DIR",
		Short: "Download a version's files (default: the production version), verifying every size and SHA-256",
		Long: `Pull writes the version's files under DIR at their paths, from the artifact store or, with --server, through
the registry's HTTP API. Each file is written under a temporary name next to its own and renamed only once its
size and SHA-256 match the version's manifest, so an interrupted or refused pull never leaves a partial or
unverified file under a file's name. A file already in DIR with the right digest is kept; any other is replaced.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := names.ValidateModel(model); err != nil {
				return err
			}
			n := 0
			if version != "" && version != "production" {
				var err error
				if n, err = strconv.Atoi(version); err != nil || n < 1 {
					return fmt.Errorf("--version %q: give a version number or production", version)
				}
			}
			ctx := cmd.Context()
			var src pullSource
			var err error
			if a.api != nil {
				src, err = a.pullThroughServer(ctx, model, n)
			} else {
				src, err = a.pullFromStore(ctx, model, n)
			}
			if err != nil {
				return err
			}
			defer src.close()
			res, err := a.pull(ctx, src, out)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.out, "pulled %s v%d (manifest %s) into %s: %d files, %s, every size and SHA-256 verified (%d downloaded, %d already there)\n",
				res.Model, res.Version, res.ManifestDigest, res.Dir, res.Files, human(res.Bytes), res.Downloaded, res.Kept)
			return nil
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "model name (required)")
	cmd.Flags().StringVar(&version, "version", "production", "version number, or production")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the files into (created if missing; required)")
	_ = cmd.MarkFlagRequired("model")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// pullFromStore reads the version from the catalog, its manifest and bytes from the store.
func (a *app) pullFromStore(ctx context.Context, model string, version int) (pullSource, error) {
	cat, err := a.cfg.OpenCatalog(ctx)
	if err != nil {
		return pullSource{}, err
	}
	fail := func(err error) (pullSource, error) { cat.Close(); return pullSource{}, err }
	var v catalog.Version
	if version == 0 {
		v, err = cat.Production(ctx, model)
		if errors.Is(err, catalog.ErrNotFound) {
			if _, merr := cat.GetModel(ctx, model); merr != nil {
				return fail(merr)
			}
			return fail(fmt.Errorf("model %q has no version in production", model))
		}
	} else {
		v, err = cat.GetVersion(ctx, model, version)
	}
	if err != nil {
		return fail(err)
	}
	if v.ManifestDigest == "" {
		return fail(fmt.Errorf("%s v%d has no stored files (stage %s)", model, v.Version, v.Stage))
	}
	store, err := a.cfg.OpenStore(ctx)
	if err != nil {
		return fail(err)
	}
	m, digest, err := store.GetManifest(ctx, model, v.Version)
	if err != nil {
		return fail(err)
	}
	if digest != v.ManifestDigest {
		return fail(fmt.Errorf("the store's manifest of %s v%d has digest %s, the catalog records %s: refusing to pull (starter check reports it)", model, v.Version, digest, v.ManifestDigest))
	}
	return pullSource{model: model, version: v.Version, manifestDigest: digest, files: m.Files, close: func() { cat.Close() },
		open: func(ctx context.Context, f artifact.FileEntry) (io.ReadCloser, error) {
			return store.OpenBlob(ctx, f.SHA256)
		}}, nil
}

// pullThroughServer reads the version and its file list from the API, and each file's bytes from its
// download route (or the presigned URL it redirects to).
func (a *app) pullThroughServer(ctx context.Context, model string, version int) (pullSource, error) {
	src := pullSource{model: model, close: func() {}}
	if version == 0 {
		var p api.Production
		if err := a.api.get(ctx, pathOf("v1", "models", model, "production"), nil, &p); err != nil {
			return src, err
		}
		src.version, src.manifestDigest = p.Version, p.ManifestDigest
		for _, f := range p.Artifacts {
			src.files = append(src.files, f.FileEntry)
		}
	} else {
		d, err := a.api.version(ctx, model, version)
		if err != nil {
			return src, err
		}
		if d.ManifestDigest == "" || len(d.Files) == 0 {
			return src, fmt.Errorf("%s v%d has no stored files (stage %s)", model, version, liveStage(d))
		}
		src.version, src.manifestDigest, src.files = d.Version.Version, d.ManifestDigest, d.Files
	}
	src.open = func(ctx context.Context, f artifact.FileEntry) (io.ReadCloser, error) {
		return a.api.download(ctx, model, src.version, f.Path)
	}
	return src, nil
}

// download opens one file of a version, following a redirect to the store without the bearer token.
func (c *apiClient) download(ctx context.Context, model string, version int, path string) (io.ReadCloser, error) {
	resp, err := c.request(ctx, http.MethodGet, pathOf("v1", "models", model, "versions", strconv.Itoa(version), "files", path), nil, nil,
		http.Header{"Accept": {"application/octet-stream, application/json"}})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusTemporaryRedirect {
		resp.Body.Close()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, resp.Header.Get("Location"), nil)
		if err != nil {
			return nil, fmt.Errorf("the registry redirected %s elsewhere than a URL: %w", path, err)
		}
		if resp, err = c.http.Do(req); err != nil {
			return nil, fmt.Errorf("the store did not answer: %w", err)
		}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("download %s: HTTP %d: %s", path, resp.StatusCode, safe(string(msg)))
	}
	return resp.Body, nil
}

// pull writes src's files under out, each verified before it gets its name.
func (a *app) pull(ctx context.Context, src pullSource, out string) (PullResult, error) {
	res := PullResult{Model: src.model, Version: src.version, ManifestDigest: src.manifestDigest, Files: len(src.files)}
	if out == "" {
		return res, errors.New("--out DIR is required")
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return res, err
	}
	res.Dir = abs
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return res, err
	}
	// Every write goes through the root: a symlink in DIR cannot send a file elsewhere.
	root, err := os.OpenRoot(abs)
	if err != nil {
		return res, err
	}
	defer root.Close()
	for _, f := range src.files {
		if _, err := names.CleanArtifactPath(f.Path); err != nil {
			return res, fmt.Errorf("the version lists an unusable path: %w", err)
		}
		res.Bytes += f.Size
	}
	p := newProgress(a.errOut, res.Bytes)
	p.verb = "downloading"
	defer p.finish()
	var mu sync.Mutex
	var done int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pullConcurrency)
	for _, f := range src.files {
		g.Go(func() error {
			kept, err := pullFile(gctx, root, f, src.open, func(n int64) {
				mu.Lock()
				defer mu.Unlock()
				done += n
				p.update(f.Path, done)
			})
			if err != nil {
				return fmt.Errorf("pull %s: %w", f.Path, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if kept {
				res.Kept++
			} else {
				res.Downloaded++
			}
			return nil
		})
	}
	return res, g.Wait()
}

// pullFile writes one file under a temporary name, hashing it on the way, and gives it its name only
// when it is the manifest's. kept reports a file that was already there with the right digest.
func pullFile(ctx context.Context, root *os.Root, f artifact.FileEntry, open func(context.Context, artifact.FileEntry) (io.ReadCloser, error), progress func(int64)) (kept bool, err error) {
	name := filepath.FromSlash(f.Path)
	if fi, err := root.Lstat(name); err == nil {
		switch {
		case fi.IsDir():
			return false, fmt.Errorf("%s is a directory in the output directory", f.Path)
		case fi.Mode().IsRegular() && fi.Size() == f.Size:
			if sum, _ := hashInRoot(ctx, root, name); sum == f.SHA256 {
				progress(f.Size)
				return true, nil
			}
		}
	}
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return false, err
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".pull-"+hex.EncodeToString(rnd[:]))
	w, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false, err
	}
	renamed := false
	defer func() {
		if !renamed {
			w.Close()
			_ = root.Remove(tmp)
		}
	}()
	rc, err := open(ctx, f)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h := sha256.New()
	// One byte more than the manifest says is enough to know the bytes are not the file.
	n, err := io.CopyBuffer(io.MultiWriter(w, h, progressWriter(progress)), ctxReader{ctx, io.LimitReader(rc, f.Size+1)}, make([]byte, 1<<20))
	if err != nil {
		return false, fmt.Errorf("download: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != f.Size || sum != f.SHA256 {
		return false, fmt.Errorf("received %d bytes hashing to %s, the manifest says %d bytes hashing to %s: refused, nothing written under its name", n, sum, f.Size, f.SHA256)
	}
	if err := w.Sync(); err != nil {
		return false, err
	}
	if err := w.Close(); err != nil {
		return false, err
	}
	if err := root.Rename(tmp, name); err != nil {
		return false, err
	}
	renamed = true
	return false, nil
}

func hashInRoot(ctx context.Context, root *os.Root, name string) (string, error) {
	f, err := root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// progressWriter reports how many bytes went through it since the last call.
type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) {
	p(int64(len(b)))
	return len(b), nil
}
