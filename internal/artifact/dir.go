package artifact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Dir is the local-directory backend, the embedded default. Layout under its root:
//
//	blobs/sha256/<first two hex digits>/<hex>      immutable blob, mode 0444
//	manifests/<model>/v<N>/manifest.json           written once
//	manifests/<model>/v<N>/archived                marker file
//	tmp/                                           staging, same filesystem so renames are atomic
//
// A crash leaves at worst a stray file in tmp/, never a partial file at a blob or manifest address.
type Dir struct {
	root string
}

var _ Store = (*Dir)(nil)

// NewDir opens (creating if needed) a directory store rooted at root.
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, fmt.Errorf("artifact directory: root path is empty")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("artifact directory %s: %w", root, err)
	}
	for _, sub := range []string{"blobs/sha256", "manifests", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, filepath.FromSlash(sub)), 0o755); err != nil {
			return nil, fmt.Errorf("artifact directory %s: %w", abs, err)
		}
	}
	removeStaleTemp(filepath.Join(abs, "tmp"))
	return &Dir{root: abs}, nil
}

// staleTempAge is how old a staging file must be before NewDir deletes it as a crash leftover; no
// single write takes anywhere near this long, so a live writer's file is never removed.
const staleTempAge = 24 * time.Hour

func removeStaleTemp(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Root is the absolute root directory of the store.
func (d *Dir) Root() string { return d.root }

func (d *Dir) blobPath(sum string) string {
	return filepath.Join(d.root, "blobs", "sha256", sum[:2], sum)
}

func (d *Dir) versionDir(model string, version int) string {
	return filepath.Join(d.root, "manifests", model, "v"+strconv.Itoa(version))
}

func (d *Dir) manifestPath(model string, version int) string {
	return filepath.Join(d.versionDir(model, version), "manifest.json")
}

func (d *Dir) archivedPath(model string, version int) string {
	return filepath.Join(d.versionDir(model, version), "archived")
}

func fileURI(p string) string { return "file://" + filepath.ToSlash(p) }

// BlobURI implements Store.
func (d *Dir) BlobURI(sum string) string {
	if validateSHA(sum) != nil {
		return fileURI(filepath.Join(d.root, "blobs", "sha256", "invalid"))
	}
	return fileURI(d.blobPath(sum))
}

// ManifestURI implements Store.
func (d *Dir) ManifestURI(model string, version int) string {
	return fileURI(d.manifestPath(model, version))
}

// PutFile implements Store. Progress counts the hashing pass and, when the blob is stored, the copy pass
// on top of it, so it ends at the file size for a deduplicated file and at twice the size otherwise.
func (d *Dir) PutFile(ctx context.Context, localPath string, progress Progress) (FileEntry, error) {
	f, _, err := openRegular(localPath)
	if err != nil {
		return FileEntry{}, err
	}
	defer f.Close()
	sum, size, err := hashLocalFile(ctx, f, progress)
	if err != nil {
		return FileEntry{}, err
	}
	entry := FileEntry{Size: size, SHA256: sum}
	dst := d.blobPath(sum)
	// A blob of the right size is not trusted blindly: a directory has no checksum of its own to prove
	// the bytes, so they are hashed again, and a corrupt blob is replaced (by rename, never removed).
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		err := d.VerifyBlob(ctx, entry, nil)
		if err == nil {
			return entry, nil
		}
		if !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, ErrNotFound) {
			return FileEntry{}, fmt.Errorf("check stored blob of %s: %w", localPath, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return FileEntry{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return FileEntry{}, fmt.Errorf("seek %s: %w", localPath, err)
	}
	tmp, err := os.CreateTemp(filepath.Join(d.root, "tmp"), "blob-*")
	if err != nil {
		return FileEntry{}, fmt.Errorf("store %s: %w", localPath, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Hashing the copy again is what proves the bytes at the address are the bytes that were hashed,
	// even if the source file was rewritten in between.
	sum2, n, err := copyHashing(tmp, ctxReader{ctx, f}, size, progress)
	if err != nil {
		return FileEntry{}, fmt.Errorf("copy %s into the store: %w", localPath, err)
	}
	if sum2 != sum || n != size {
		return FileEntry{}, fmt.Errorf("%s changed while it was being stored (hashed %d bytes as %s, then copied %d bytes as %s)", localPath, size, sum, n, sum2)
	}
	committed, err = commitBlob(tmp, dst)
	if err != nil {
		return FileEntry{}, fmt.Errorf("store %s: %w", localPath, err)
	}
	return entry, nil
}

// commitBlob moves a staged blob whose bytes were verified into place at dst: read-only, on disk, then
// renamed, so the address only ever holds a whole, verified blob. committed says whether the staging
// file is gone (renamed); the caller removes it otherwise.
func commitBlob(tmp *os.File, dst string) (committed bool, err error) {
	if err := tmp.Chmod(0o444); err != nil {
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return false, fmt.Errorf("rename to %s: %w", dst, err)
	}
	return true, syncDir(filepath.Dir(dst))
}

// StatBlob implements Store.
func (d *Dir) StatBlob(ctx context.Context, sum string) (int64, error) {
	if err := validateSHA(sum); err != nil {
		return 0, err
	}
	fi, err := os.Stat(d.blobPath(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", sum, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", sum, err)
	}
	return fi.Size(), nil
}

// OpenBlob implements Store.
func (d *Dir) OpenBlob(ctx context.Context, sum string) (io.ReadCloser, error) {
	if err := validateSHA(sum); err != nil {
		return nil, err
	}
	f, err := os.Open(d.blobPath(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", sum, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", sum, err)
	}
	return f, nil
}

// VerifyBlob implements Store.
func (d *Dir) VerifyBlob(ctx context.Context, e FileEntry, progress Progress) error {
	rc, err := d.OpenBlob(ctx, e.SHA256)
	if err != nil {
		return err
	}
	defer rc.Close()
	fi, err := rc.(*os.File).Stat()
	if err != nil {
		return fmt.Errorf("blob %s: %w", e.SHA256, err)
	}
	return verifyStream(ctxReader{ctx, rc}, fi.Size(), e, d.BlobURI(e.SHA256), progress)
}

// PutManifest implements Store. The manifest is staged in tmp/ and hard-linked into place: link(2) fails
// when the name exists, which makes the write both exclusive and all-or-nothing.
func (d *Dir) PutManifest(ctx context.Context, m Manifest) (string, string, error) {
	b, err := EncodeManifest(m)
	if err != nil {
		return "", "", err
	}
	uri := d.ManifestURI(m.Model, m.Version)
	final := d.manifestPath(m.Model, m.Version)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", "", fmt.Errorf("manifest %s: %w", uri, err)
	}
	tmp, err := os.CreateTemp(filepath.Join(d.root, "tmp"), "manifest-*")
	if err != nil {
		return "", "", fmt.Errorf("manifest %s: %w", uri, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o444)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("manifest %s: %w", uri, err)
	}
	err = os.Link(tmp.Name(), final)
	switch {
	case err == nil:
		if err := syncDir(filepath.Dir(final)); err != nil {
			return "", "", err
		}
		return uri, ManifestDigest(b), nil
	case errors.Is(err, fs.ErrExist):
		existing, rerr := os.ReadFile(final)
		if rerr != nil {
			return "", "", fmt.Errorf("manifest %s: %w", uri, rerr)
		}
		if !bytes.Equal(existing, b) {
			return "", "", fmt.Errorf("manifest %s (stored %s, new %s): %w", uri, ManifestDigest(existing), ManifestDigest(b), ErrManifestConflict)
		}
		return uri, ManifestDigest(b), nil
	default:
		return "", "", fmt.Errorf("manifest %s: %w", uri, err)
	}
}

// GetManifest implements Store.
func (d *Dir) GetManifest(ctx context.Context, model string, version int) (Manifest, string, error) {
	if err := validateVersion(model, version); err != nil {
		return Manifest{}, "", err
	}
	uri := d.ManifestURI(model, version)
	b, err := os.ReadFile(d.manifestPath(model, version))
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, "", fmt.Errorf("manifest of %s v%d (%s): %w", model, version, uri, ErrNotFound)
	}
	if err != nil {
		return Manifest{}, "", fmt.Errorf("manifest %s: %w", uri, err)
	}
	return decodeStoredManifest(b, model, version, uri)
}

// SetArchived implements Store.
func (d *Dir) SetArchived(ctx context.Context, model string, version int, archived bool) error {
	if err := d.requireManifest(model, version); err != nil {
		return err
	}
	p := d.archivedPath(model, version)
	if archived {
		if err := os.WriteFile(p, []byte("archived\n"), 0o644); err != nil {
			return fmt.Errorf("archive %s v%d: %w", model, version, err)
		}
	} else if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unarchive %s v%d: %w", model, version, err)
	}
	return syncDir(filepath.Dir(p))
}

// IsArchived implements Store.
func (d *Dir) IsArchived(ctx context.Context, model string, version int) (bool, error) {
	if err := d.requireManifest(model, version); err != nil {
		return false, err
	}
	_, err := os.Stat(d.archivedPath(model, version))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("archived mark of %s v%d: %w", model, version, err)
	}
	return true, nil
}

func (d *Dir) requireManifest(model string, version int) error {
	if err := validateVersion(model, version); err != nil {
		return err
	}
	_, err := os.Stat(d.manifestPath(model, version))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("manifest of %s v%d (%s): %w", model, version, d.ManifestURI(model, version), ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("manifest of %s v%d: %w", model, version, err)
	}
	return nil
}

// openRegular opens a local file to be stored, refusing directories and devices with a clear message.
func openRegular(p string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("open artifact file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat artifact file: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("artifact file %s is not a regular file (%s)", p, st.Mode().Type())
	}
	return f, st, nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ctxReader makes long local copies stop when the context is cancelled.
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

// verifyStream hashes r and compares it (and the stored size) with e.
func verifyStream(r io.Reader, storedSize int64, e FileEntry, uri string, progress Progress) error {
	if storedSize != e.Size {
		return fmt.Errorf("blob %s has %d bytes, want %d: %w", uri, storedSize, e.Size, ErrDigestMismatch)
	}
	sum, n, err := copyHashing(nil, r, 0, progress)
	if err != nil {
		return fmt.Errorf("read blob %s: %w", uri, err)
	}
	if n != e.Size {
		return fmt.Errorf("blob %s yielded %d bytes, want %d: %w", uri, n, e.Size, ErrDigestMismatch)
	}
	if sum != e.SHA256 {
		return fmt.Errorf("blob %s hashes to %s: %w", uri, sum, ErrDigestMismatch)
	}
	return nil
}

func decodeStoredManifest(b []byte, model string, version int, uri string) (Manifest, string, error) {
	m, err := DecodeManifest(b)
	if err != nil {
		return Manifest{}, "", fmt.Errorf("manifest %s: %w", uri, err)
	}
	if m.Model != model || m.Version != version {
		return Manifest{}, "", fmt.Errorf("manifest %s describes %s v%d, not %s v%d", uri, m.Model, m.Version, model, version)
	}
	return m, ManifestDigest(b), nil
}
