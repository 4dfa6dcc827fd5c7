// Package artifact stores model files immutably: every file is a blob at a content address
// (its SHA-256), and every version has one manifest, written once, listing path, size and digest of each
// file. Two backends implement Store: S3 (or any S3-compatible server) and a local directory.
package artifact

import (
	"context"
	"errors"
	"io"
	"time"
)

// ManifestSchemaVersion is the version of the manifest JSON layout.
const ManifestSchemaVersion = 1

// FileEntry names one file of a version: its path inside the artifact directory, its size in bytes and
// the lowercase hex SHA-256 of its content, which is also its blob address.
type FileEntry struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest is the immutable record of a version's files. Files are sorted by Path.
type Manifest struct {
	SchemaVersion int         `json:"schemaVersion"`
	Model         string      `json:"model"`
	Version       int         `json:"version"`
	Files         []FileEntry `json:"files"`
	CreatedAt     time.Time   `json:"createdAt"`
}

var (
	// ErrNotFound is returned (wrapped) when a blob, manifest or source object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrManifestConflict is returned when a manifest for the version exists with other content.
	ErrManifestConflict = errors.New("a different manifest is already stored for this version")
	// ErrDigestMismatch is returned when stored bytes do not hash to their address or size.
	ErrDigestMismatch = errors.New("stored bytes do not match their digest")
)

// Progress is told how many bytes have been processed so far; it may be nil. Calls are serialised and
// the figure never decreases. For PutFile it counts the hashing pass and then, when the blob is new, the
// storing pass on top of it, so it ends at the file size for a deduplicated file and at twice the size
// otherwise.
type Progress func(done int64)

// Store is the content-addressed artifact store.
type Store interface {
	// PutFile stores the local file at localPath as a blob and returns its entry (Path left empty).
	// It hashes the file first and does not upload it again when the stored blob provably holds those
	// bytes; a stored blob that does not (wrong size, corrupt, unprovable) is replaced, never deleted.
	// Memory stays bounded whatever the file size.
	PutFile(ctx context.Context, localPath string, progress Progress) (FileEntry, error)
	// StatBlob returns the stored size of a blob, or an error wrapping ErrNotFound.
	StatBlob(ctx context.Context, sha256 string) (int64, error)
	// OpenBlob streams a blob's bytes.
	OpenBlob(ctx context.Context, sha256 string) (io.ReadCloser, error)
	// VerifyBlob re-reads a blob and checks its SHA-256 and size, returning an error wrapping
	// ErrDigestMismatch or ErrNotFound when they do not hold.
	VerifyBlob(ctx context.Context, e FileEntry, progress Progress) error
	// PutManifest writes the version's manifest once. Writing the same content again succeeds (retries);
	// different content fails with ErrManifestConflict. It returns the manifest's URI and its digest
	// ("sha256:<hex>" of the stored bytes).
	PutManifest(ctx context.Context, m Manifest) (uri, digest string, err error)
	// GetManifest reads a version's manifest and its digest.
	GetManifest(ctx context.Context, model string, version int) (Manifest, string, error)
	// SetArchived marks (or unmarks) a version's artifacts as archived; the blobs and manifest stay.
	SetArchived(ctx context.Context, model string, version int, archived bool) error
	// IsArchived reports the archived mark.
	IsArchived(ctx context.Context, model string, version int) (bool, error)
	// BlobURI and ManifestURI name where the bytes are, for deployers (s3://… or file://…).
	BlobURI(sha256 string) string
	ManifestURI(model string, version int) string
}
