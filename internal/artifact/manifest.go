package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/modelreg/modelreg/internal/names"
)

// EncodeManifest returns the canonical bytes of m: Files sorted by Path, CreatedAt in UTC, indented JSON
// ending in a newline. The bytes are what the store writes and what the manifest digest covers, so the
// same Manifest always encodes to the same bytes and a retried write can be recognised as identical.
// A zero SchemaVersion is taken as ManifestSchemaVersion.
func EncodeManifest(m Manifest) ([]byte, error) {
	if m.SchemaVersion == 0 {
		m.SchemaVersion = ManifestSchemaVersion
	}
	m.Files = append([]FileEntry(nil), m.Files...)
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	m.CreatedAt = m.CreatedAt.UTC()
	if err := validateManifest(m); err != nil {
		return nil, err
	}
	// Checked when a manifest is written, not when one is read: manifests written before this check
	// stay readable (on a case-sensitive filesystem they pull as they always did).
	if err := names.CaseCollision(entryPaths(m.Files)); err != nil {
		return nil, fmt.Errorf("manifest of %s v%d: %w", m.Model, m.Version, err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest of %s v%d: %w", m.Model, m.Version, err)
	}
	return append(b, '\n'), nil
}

// DecodeManifest parses stored manifest bytes strictly: unknown fields, trailing data, another schema
// version, unsorted or duplicate paths and malformed entries are errors, because a manifest that does not
// round-trip through EncodeManifest was not written by this package.
func DecodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, fmt.Errorf("decode manifest: trailing data after the JSON object")
	}
	if m.SchemaVersion != ManifestSchemaVersion {
		return Manifest{}, fmt.Errorf("decode manifest: schemaVersion is %d, this program reads %d", m.SchemaVersion, ManifestSchemaVersion)
	}
	for i := 1; i < len(m.Files); i++ {
		if m.Files[i-1].Path > m.Files[i].Path {
			return Manifest{}, fmt.Errorf("decode manifest of %s v%d: files are not sorted by path (%q before %q)", m.Model, m.Version, m.Files[i-1].Path, m.Files[i].Path)
		}
	}
	if err := validateManifest(m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest: %w", err)
	}
	return m, nil
}

// ManifestDigest is the digest PutManifest and GetManifest report for stored manifest bytes.
func ManifestDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// validateManifest expects Files already sorted by Path.
func validateManifest(m Manifest) error {
	if m.SchemaVersion != ManifestSchemaVersion {
		return fmt.Errorf("manifest schemaVersion is %d, want %d", m.SchemaVersion, ManifestSchemaVersion)
	}
	if err := names.ValidateModel(m.Model); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if m.Version < 1 {
		return fmt.Errorf("manifest of %s: version %d is not a positive version number", m.Model, m.Version)
	}
	if len(m.Files) == 0 {
		return fmt.Errorf("manifest of %s v%d lists no files", m.Model, m.Version)
	}
	// EncodeManifest writes createdAt in UTC as RFC 3339, which has four-digit years only; DecodeManifest
	// must not accept a time (e.g. 0000-01-01T00:30:00+01:00) that cannot be written back.
	if y := m.CreatedAt.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("manifest of %s v%d: createdAt %s is outside the years 0-9999 in UTC", m.Model, m.Version, m.CreatedAt)
	}
	for i, f := range m.Files {
		if err := validateEntry(f); err != nil {
			return fmt.Errorf("manifest of %s v%d: %w", m.Model, m.Version, err)
		}
		if i == 0 {
			continue
		}
		if m.Files[i-1].Path == f.Path {
			return fmt.Errorf("manifest of %s v%d lists path %q twice", m.Model, m.Version, f.Path)
		}
	}
	// A file "a" and a file "a/b" cannot both be materialised on a filesystem; a deployer would fail late.
	paths := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		paths[f.Path] = true
	}
	for _, f := range m.Files {
		for dir := f.Path; ; {
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				break
			}
			dir = dir[:i]
			if paths[dir] {
				return fmt.Errorf("manifest of %s v%d lists %q both as a file and as a directory (%q)", m.Model, m.Version, dir, f.Path)
			}
		}
	}
	return nil
}

func entryPaths(files []FileEntry) []string {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	return paths
}

func validateEntry(f FileEntry) error {
	if _, err := names.CleanArtifactPath(f.Path); err != nil {
		return err
	}
	if f.Size < 0 {
		return fmt.Errorf("file %q has negative size %d", f.Path, f.Size)
	}
	if err := validateSHA(f.SHA256); err != nil {
		return fmt.Errorf("file %q: %w", f.Path, err)
	}
	return nil
}

var errBadSHA = errors.New("sha256 must be 64 lowercase hex characters")

func validateSHA(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("sha256 %q: %w", s, errBadSHA)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("sha256 %q: %w", s, errBadSHA)
		}
	}
	return nil
}

func validateVersion(model string, version int) error {
	if err := names.ValidateModel(model); err != nil {
		return err
	}
	if version < 1 {
		return fmt.Errorf("version %d of model %s is not a positive version number", version, model)
	}
	return nil
}
