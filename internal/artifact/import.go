package artifact

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/names"
)

// ParseS3URI splits s3://bucket/prefix. The prefix is returned without trailing slashes; it is empty
// for a whole bucket.
func ParseS3URI(uri string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(uri, "s3://")
	if !ok {
		if scheme, _, found := strings.Cut(uri, "://"); found {
			return "", "", fmt.Errorf("URI %q has scheme %q: want s3://bucket/prefix", uri, scheme)
		}
		return "", "", fmt.Errorf("%q is not an S3 URI: want s3://bucket/prefix", uri)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("URI %q names no bucket: want s3://bucket/prefix", uri)
	}
	if strings.IndexFunc(bucket, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '?' || r == '#' }) >= 0 {
		return "", "", fmt.Errorf("URI %q: bucket name %q is not valid", uri, bucket)
	}
	return bucket, strings.TrimRight(prefix, "/"), nil
}

// ImportS3Prefix copies every object under an s3://bucket/prefix URI into dst and returns one entry per
// object, Path being the key relative to the prefix (sorted). The prefix is treated as a directory:
// s3://b/run1 covers run1/… but not run10/…. Keys ending in "/" (console "folder" markers) are skipped.
//
// Each object is streamed into a temporary file in tmpDir while being hashed, stored with dst.PutFile,
// and removed; memory stays bounded and at most one object's bytes are on local disk at a time. Keys are
// all listed and validated before anything is downloaded, so a bad key fails fast. A bucket that does not
// exist, or a prefix with no objects, is an error wrapping ErrNotFound. Progress is told the bytes
// processed so far across all objects: downloaded, then what dst.PutFile reports for each.
func ImportS3Prefix(ctx context.Context, src *s3.Client, uri string, dst Store, tmpDir string, progress Progress) ([]FileEntry, error) {
	bucket, prefix, err := ParseS3URI(uri)
	if err != nil {
		return nil, err
	}
	listPrefix := prefix
	if listPrefix != "" {
		listPrefix += "/"
	}
	type object struct{ key, path string }
	var objects []object
	pages := s3.NewListObjectsV2Paginator(src, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &listPrefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			if isNotFound(err) {
				return nil, fmt.Errorf("import %s: bucket %s does not exist: %w", uri, bucket, ErrNotFound)
			}
			return nil, fmt.Errorf("import %s: list objects: %w", uri, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if strings.HasSuffix(key, "/") {
				continue
			}
			p, err := names.CleanArtifactPath(strings.TrimPrefix(key, listPrefix))
			if err != nil {
				return nil, fmt.Errorf("import %s: object key %q cannot be an artifact path: %w", uri, key, err)
			}
			objects = append(objects, object{key: key, path: p})
		}
	}
	if len(objects) == 0 {
		return nil, fmt.Errorf("import %s: no objects under this prefix: %w", uri, ErrNotFound)
	}
	// S3 keys are case-sensitive; a version's paths may not be (names.CaseCollisions). Listed in key
	// order, so the answer is the same on every attempt.
	paths := make([]string, len(objects))
	for i, o := range objects {
		paths[i] = o.path
	}
	if err := names.CaseCollision(paths); err != nil {
		return nil, fmt.Errorf("import %s: %w", uri, err)
	}

	var done int64
	entries := make([]FileEntry, 0, len(objects))
	for _, o := range objects {
		e, n, err := importObject(ctx, src, bucket, o.key, dst, tmpDir, done, progress)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", uri, err)
		}
		done += n
		e.Path = o.path
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	return entries, nil
}

// importObject downloads one object through a temporary file into dst. It returns the entry and the
// amount of progress it reported on top of base.
func importObject(ctx context.Context, src *s3.Client, bucket, key string, dst Store, tmpDir string, base int64, progress Progress) (FileEntry, int64, error) {
	objURI := "s3://" + bucket + "/" + key
	out, err := src.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		if isNotFound(err) {
			return FileEntry{}, 0, fmt.Errorf("object %s disappeared after listing: %w", objURI, ErrNotFound)
		}
		return FileEntry{}, 0, fmt.Errorf("download %s: %w", objURI, err)
	}
	defer out.Body.Close()
	tmp, err := os.CreateTemp(tmpDir, "import-*")
	if err != nil {
		return FileEntry{}, 0, fmt.Errorf("download %s: temporary file: %w", objURI, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	sum, n, err := copyHashing(tmp, ctxReader{ctx, out.Body}, base, progress)
	if err != nil {
		return FileEntry{}, 0, fmt.Errorf("download %s: %w", objURI, err)
	}
	if want := aws.ToInt64(out.ContentLength); out.ContentLength != nil && n != want {
		return FileEntry{}, 0, fmt.Errorf("download %s: got %d bytes, the server announced %d", objURI, n, want)
	}
	if err := tmp.Close(); err != nil {
		return FileEntry{}, 0, fmt.Errorf("download %s: %w", objURI, err)
	}
	var putDone int64
	e, err := dst.PutFile(ctx, tmp.Name(), func(d int64) {
		putDone = d
		if progress != nil {
			progress(base + n + d)
		}
	})
	if err != nil {
		return FileEntry{}, 0, fmt.Errorf("store %s: %w", objURI, err)
	}
	// The temporary file is ours alone, but a mismatch here would mean the bytes stored are not the bytes
	// downloaded, which must not pass silently.
	if e.SHA256 != sum || e.Size != n {
		return FileEntry{}, 0, fmt.Errorf("store %s: stored %d bytes as %s, downloaded %d bytes as %s", objURI, e.Size, e.SHA256, n, sum)
	}
	return e, n + putDone, nil
}
