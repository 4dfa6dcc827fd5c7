package artifact

// Fuzz tests for the artifact package's decoders of outside input: stored manifest bytes (a store may
// hold anything) and the s3:// URIs training jobs name as sources. Seeds live in
// testdata/fuzz/<FuzzName>/; fuzz one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzDecodeManifest$' -fuzztime 60s ./internal/artifact/

import (
	"bytes"
	"strings"
	"testing"
	"unicode"

	"github.com/modelreg/modelreg/internal/names"
)

// FuzzDecodeManifest checks that a manifest DecodeManifest accepts is one this package could have
// written: it re-encodes, the encoding is canonical (a second decode and encode gives the same bytes),
// and its entries are clean, valid, sorted and distinct.
func FuzzDecodeManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			return
		}
		if m.SchemaVersion != ManifestSchemaVersion {
			t.Fatalf("accepted schemaVersion %d", m.SchemaVersion)
		}
		if err := names.ValidateModel(m.Model); err != nil || m.Version < 1 || len(m.Files) == 0 {
			t.Fatalf("accepted model %q version %d with %d files (%v)", m.Model, m.Version, len(m.Files), err)
		}
		for i, fe := range m.Files {
			if c, err := names.CleanArtifactPath(fe.Path); err != nil || c != fe.Path {
				t.Fatalf("accepted path %q: clean %q, %v", fe.Path, c, err)
			}
			if validateSHA(fe.SHA256) != nil || fe.Size < 0 {
				t.Fatalf("accepted entry %+v", fe)
			}
			if i > 0 && m.Files[i-1].Path >= fe.Path {
				t.Fatalf("accepted unsorted or duplicate paths %q, %q", m.Files[i-1].Path, fe.Path)
			}
		}
		b, err := EncodeManifest(m)
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v\n%q", err, data)
		}
		m2, err := DecodeManifest(b)
		if err != nil {
			t.Fatalf("re-encoded manifest refused: %v\n%s", err, b)
		}
		b2, err := EncodeManifest(m2)
		if err != nil {
			t.Fatalf("second encode failed: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not canonical:\n%s\n%s", b, b2)
		}
		if !m2.CreatedAt.Equal(m.CreatedAt) || m2.Model != m.Model || m2.Version != m.Version || len(m2.Files) != len(m.Files) {
			t.Fatalf("manifest changed on re-encoding: %+v -> %+v", m, m2)
		}
		for i := range m.Files {
			if m.Files[i] != m2.Files[i] {
				t.Fatalf("entry %d changed on re-encoding: %+v -> %+v", i, m.Files[i], m2.Files[i])
			}
		}
	})
}

// FuzzParseS3URI checks that an accepted URI names a usable bucket and a prefix without trailing
// slashes, and that printing them back gives a URI that parses to the same bucket and prefix.
func FuzzParseS3URI(f *testing.F) {
	f.Fuzz(func(t *testing.T, uri string) {
		bucket, prefix, err := ParseS3URI(uri)
		if err != nil {
			if bucket != "" || prefix != "" {
				t.Fatalf("ParseS3URI(%q) failed but returned %q, %q", uri, bucket, prefix)
			}
			return
		}
		if !strings.HasPrefix(uri, "s3://"+bucket) {
			t.Fatalf("ParseS3URI(%q) = bucket %q, not what follows s3://", uri, bucket)
		}
		if bucket == "" || strings.ContainsRune(bucket, '/') {
			t.Fatalf("ParseS3URI(%q) = bucket %q", uri, bucket)
		}
		if strings.IndexFunc(bucket, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == '?' || r == '#'
		}) >= 0 {
			t.Fatalf("ParseS3URI(%q) accepted bucket %q", uri, bucket)
		}
		if strings.HasSuffix(prefix, "/") {
			t.Fatalf("ParseS3URI(%q) = prefix %q with a trailing slash", uri, prefix)
		}
		rest := strings.TrimPrefix(uri, "s3://"+bucket)
		if rest != "" && (rest[0] != '/' || strings.TrimRight(rest[1:], "/") != prefix) {
			t.Fatalf("ParseS3URI(%q) = %q, %q: the prefix is not the rest of the URI", uri, bucket, prefix)
		}
		for _, again := range []string{"s3://" + bucket + "/" + prefix, "s3://" + bucket + "/" + prefix + "/"} {
			b2, p2, err := ParseS3URI(again)
			if err != nil || b2 != bucket || p2 != prefix {
				t.Fatalf("ParseS3URI(%q) = %q, %q but ParseS3URI(%q) = %q, %q, %v", uri, bucket, prefix, again, b2, p2, err)
			}
		}
	})
}
