package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/modelreg/modelreg/internal/names"
)

// MaxListingFiles bounds the files of one version: the manifest built from them must stay readable
// (GetManifest reads at most maxManifestBytes), and 200,000 entries with long paths fit.
const MaxListingFiles = 200_000

// maxListingBytes bounds what ReadListing reads into memory.
const maxListingBytes = maxManifestBytes

// ListingRef names a version's file list stored in the artifact store as a blob (a JSON array of
// FileEntry, see EncodeListing), so that a registration of many files sends a reference instead of
// the list: Temporal refuses payloads above 2 MB, and a list of 20,000 files is larger than that.
type ListingRef struct {
	// SHA256 is the lowercase hex SHA-256 of the listing's bytes, which is also its blob address.
	SHA256 string `json:"sha256"`
	// Count is the number of files the listing holds.
	Count int `json:"count"`
}

// Validate checks the reference's shape (not that the listing exists).
func (r ListingRef) Validate() error {
	if err := validateSHA(r.SHA256); err != nil {
		return fmt.Errorf("source.listing: %w", err)
	}
	if r.Count < 1 || r.Count > MaxListingFiles {
		return fmt.Errorf("source.listing: count %d must be 1-%d", r.Count, MaxListingFiles)
	}
	return nil
}

// EncodeListing returns the canonical bytes of a file list: entries sorted by path, as a compact JSON
// array with one entry per line. Any client may write a listing in another layout (any JSON array of
// {"path","size","sha256"} objects); only the digest of its bytes has to be given with it.
func EncodeListing(files []FileEntry) ([]byte, error) {
	files = append([]FileEntry(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	if err := validateFiles(files); err != nil {
		return nil, fmt.Errorf("listing: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, f := range files {
		line, err := json.Marshal(f)
		if err != nil {
			return nil, err
		}
		b.Write(line)
		if i < len(files)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return b.Bytes(), nil
}

// WriteListingFile writes EncodeListing's bytes to a new file in dir (for PutFile) and returns its path.
func WriteListingFile(dir string, files []FileEntry) (string, error) {
	b, err := EncodeListing(files)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "listing-*.json")
	if err != nil {
		return "", fmt.Errorf("listing: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("listing: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("listing: %w", err)
	}
	return f.Name(), nil
}

// ErrBadListing is returned (wrapped) when a listing is missing, does not hash to its reference, or does
// not hold a valid list of ref.Count files.
var ErrBadListing = errors.New("bad file listing")

// ReadListing reads the listing ref names from the store, checks that its bytes hash to ref.SHA256 and
// that it holds ref.Count valid, distinct files, and returns them sorted by path.
func ReadListing(ctx context.Context, s Store, ref ListingRef) ([]FileEntry, error) {
	if err := ref.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadListing, err)
	}
	uri := s.BlobURI(ref.SHA256)
	rc, err := s.OpenBlob(ctx, ref.SHA256)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: listing %s was never uploaded to the artifact store: %w", ErrBadListing, uri, err)
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", uri, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	sum, n, err := copyHashing(&buf, io.LimitReader(ctxReader{ctx, rc}, maxListingBytes+1), 0, nil)
	if err != nil {
		return nil, fmt.Errorf("read listing %s: %w", uri, err)
	}
	if n > maxListingBytes {
		return nil, fmt.Errorf("%w: listing %s is larger than %d bytes", ErrBadListing, uri, maxListingBytes)
	}
	if sum != ref.SHA256 {
		return nil, fmt.Errorf("%w: listing %s hashes to %s: %w", ErrBadListing, uri, sum, ErrDigestMismatch)
	}
	var files []FileEntry
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&files); err != nil {
		return nil, fmt.Errorf("%w: listing %s is not a JSON array of {path, size, sha256}: %v", ErrBadListing, uri, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: listing %s has data after its JSON array", ErrBadListing, uri)
	}
	if len(files) != ref.Count {
		return nil, fmt.Errorf("%w: listing %s holds %d files, the reference says %d", ErrBadListing, uri, len(files), ref.Count)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	if err := validateFiles(files); err != nil {
		return nil, fmt.Errorf("%w: listing %s: %w", ErrBadListing, uri, err)
	}
	return files, nil
}

// validateFiles checks a list sorted by path the way a manifest's files are checked when it is written
// (case collisions included), so that a list that passes becomes a manifest without surprises.
func validateFiles(files []FileEntry) error {
	paths := make(map[string]bool, len(files))
	for i, f := range files {
		if err := validateEntry(f); err != nil {
			return err
		}
		if i > 0 && files[i-1].Path == f.Path {
			return fmt.Errorf("path %q listed twice", f.Path)
		}
		paths[f.Path] = true
	}
	for _, f := range files {
		for dir := f.Path; ; {
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				break
			}
			dir = dir[:i]
			if paths[dir] {
				return fmt.Errorf("%q is listed both as a file and as a directory (%q)", dir, f.Path)
			}
		}
	}
	return names.CaseCollision(entryPaths(files))
}
