package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/modelreg/modelreg/internal/names"
)

// S3Config configures the S3 backend. Endpoint and PathStyle are for S3-compatible servers (MinIO,
// versitygw, Ceph); leave them empty for AWS. When AccessKeyID is empty the SDK's default credential
// chain applies (environment, shared config, instance role).
type S3Config struct {
	Bucket   string
	Prefix   string // key prefix under which blobs/ and manifests/ live; may be empty
	Endpoint string // e.g. http://127.0.0.1:9000
	// PublicEndpoint is the endpoint presigned URLs name, for clients that reach the store at another
	// address than the registry does; empty: Endpoint.
	PublicEndpoint  string
	Region          string // default us-east-1
	AccessKeyID     string
	SecretAccessKey string
	PathStyle       bool
	PartSize        int64 // multipart part size in bytes; 0 = DefaultPartSize; 5 MiB to 5 GiB
	// MultipartThreshold is the size above which a file goes up in parts; 0 = DefaultMultipartThreshold,
	// negative: every file larger than one part.
	// A file sent in one PUT carries its SHA-256 as S3's full-object checksum, which lets validation
	// believe the store instead of reading the file back; S3 has no such checksum for a multipart object.
	MultipartThreshold int64
	Concurrency        int // parts uploaded in parallel; 0 = DefaultConcurrency
	// MaxAttempts and MaxBackoff configure the SDK's retryer for transient errors (connection refused,
	// 5xx, throttling): attempts per request, and the cap on the jittered exponential wait between them.
	// 0 keeps the SDK's defaults (3 attempts, 20 s). A command with no Temporal retries behind it (the
	// starter) raises them to ride out an outage the way the worker's activities do.
	MaxAttempts int
	MaxBackoff  time.Duration
}

// String describes c for logs with the secret access key redacted.
func (c S3Config) String() string {
	secret := ""
	if c.SecretAccessKey != "" {
		secret = "REDACTED"
	}
	return fmt.Sprintf("{Bucket:%s Prefix:%s Endpoint:%s PublicEndpoint:%s Region:%s AccessKeyID:%s SecretAccessKey:%s PathStyle:%t PartSize:%d Concurrency:%d MaxAttempts:%d MaxBackoff:%s}",
		c.Bucket, c.Prefix, c.Endpoint, c.PublicEndpoint, c.Region, c.AccessKeyID, secret, c.PathStyle, c.PartSize, c.Concurrency, c.MaxAttempts, c.MaxBackoff)
}

// GoString keeps %#v from printing the secret access key either.
func (c S3Config) GoString() string { return "artifact.S3Config" + c.String() }

// MarshalJSON keeps JSON (and slog's JSON handler) from printing the secret access key either.
func (c S3Config) MarshalJSON() ([]byte, error) {
	type plain S3Config // without methods
	if c.SecretAccessKey != "" {
		c.SecretAccessKey = "REDACTED"
	}
	return json.Marshal(plain(c))
}

// DefaultS3Region is used when no region is configured; S3-compatible servers generally accept it.
const DefaultS3Region = "us-east-1"

// FromEnv returns c with every field whose environment variable is set (non-empty) taken from it:
// MODELREG_S3_BUCKET, MODELREG_S3_PREFIX, MODELREG_S3_ENDPOINT, MODELREG_S3_PUBLIC_ENDPOINT, MODELREG_S3_REGION,
// MODELREG_S3_ACCESS_KEY_ID, MODELREG_S3_SECRET_ACCESS_KEY, MODELREG_S3_PATH_STYLE (true/false).
// A region that neither c nor the environment sets becomes us-east-1. Typical use:
// artifact.S3Config{}.FromEnv().
func (c S3Config) FromEnv() (S3Config, error) { return c.FromEnvPrefix("MODELREG_S3_") }

// FromEnvPrefix is FromEnv with another variable prefix (MODELREG_SOURCE_S3_ for registration sources).
func (c S3Config) FromEnvPrefix(prefix string) (S3Config, error) {
	return c.FromLookup(prefix, os.Getenv)
}

// S3EnvSuffixes are the suffixes of every variable FromLookup reads under its prefix, so that a list of
// the registry's variables can be built from them instead of being kept by hand.
var S3EnvSuffixes = []string{"BUCKET", "PREFIX", "ENDPOINT", "PUBLIC_ENDPOINT", "REGION", "ACCESS_KEY_ID",
	"SECRET_ACCESS_KEY", "PART_SIZE_MIB", "MULTIPART_THRESHOLD_MIB", "CONCURRENCY", "MAX_ATTEMPTS", "PATH_STYLE"}

// FromLookup is FromEnvPrefix reading the variables through getenv instead of the process environment.
func (c S3Config) FromLookup(prefix string, getenv func(string) string) (S3Config, error) {
	set := func(dst *string, name string) {
		if v := getenv(prefix + name); v != "" {
			*dst = v
		}
	}
	set(&c.Bucket, "BUCKET")
	set(&c.Prefix, "PREFIX")
	set(&c.Endpoint, "ENDPOINT")
	set(&c.PublicEndpoint, "PUBLIC_ENDPOINT")
	set(&c.Region, "REGION")
	set(&c.AccessKeyID, "ACCESS_KEY_ID")
	set(&c.SecretAccessKey, "SECRET_ACCESS_KEY")
	if v := getenv(prefix + "PART_SIZE_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < MinPartSize>>20 || n > MaxPartSize>>20 {
			return c, fmt.Errorf("%sPART_SIZE_MIB=%q: want a whole number of MiB from %d to %d", prefix, v, MinPartSize>>20, MaxPartSize>>20)
		}
		c.PartSize = n << 20
	}
	if v := getenv(prefix + "MULTIPART_THRESHOLD_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > MaxSinglePut>>20 {
			return c, fmt.Errorf("%sMULTIPART_THRESHOLD_MIB=%q: want a whole number of MiB from 0 to %d (S3's largest single PUT)", prefix, v, int64(MaxSinglePut>>20))
		}
		c.MultipartThreshold = n << 20
		if n == 0 {
			c.MultipartThreshold = -1 // every file larger than one part goes up in parts
		}
	}
	if v := getenv(prefix + "CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxConcurrency {
			return c, fmt.Errorf("%sCONCURRENCY=%q: want a number of parts from 1 to %d", prefix, v, MaxConcurrency)
		}
		c.Concurrency = n
	}
	if v := getenv(prefix + "MAX_ATTEMPTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%sMAX_ATTEMPTS=%q: want a number of attempts of at least 1", prefix, v)
		}
		c.MaxAttempts = n
	}
	if v := getenv(prefix + "PATH_STYLE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("%sPATH_STYLE=%q: want true or false", prefix, v)
		}
		c.PathStyle = b
	}
	if c.Region == "" {
		c.Region = DefaultS3Region
	}
	return c, nil
}

// S3 is the S3 (or S3-compatible) backend. Key layout below the prefix is the same as Dir's:
// blobs/sha256/<first2>/<hex>, manifests/<model>/v<N>/manifest.json and …/archived.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string // without leading or trailing slash
	cfg    S3Config
}

var _ Store = (*S3)(nil)

// maxManifestBytes bounds what GetManifest reads into memory; a manifest of 100k files is ~15 MB.
const maxManifestBytes = 64 << 20

// NewS3 builds the S3 backend. It does not contact the server; call EnsureBucket to create the bucket.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("S3 artifact store: bucket is not set (MODELREG_S3_BUCKET)")
	}
	if cfg.Region == "" {
		cfg.Region = DefaultS3Region
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, fmt.Errorf("S3 artifact store: set both the access key ID and the secret access key, or neither to use the default credential chain")
	}
	if cfg.PartSize != 0 && (cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize) {
		return nil, fmt.Errorf("S3 artifact store: part size %d bytes is outside S3's limits of %d (5 MiB) to %d (5 GiB)", cfg.PartSize, MinPartSize, MaxPartSize)
	}
	if cfg.Concurrency < 0 || cfg.Concurrency > MaxConcurrency {
		return nil, fmt.Errorf("S3 artifact store: upload concurrency %d is outside 1-%d", cfg.Concurrency, MaxConcurrency)
	}
	if cfg.MaxAttempts < 0 || cfg.MaxBackoff < 0 {
		return nil, fmt.Errorf("S3 artifact store: retry attempts %d and backoff %s must not be negative", cfg.MaxAttempts, cfg.MaxBackoff)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if _, err := names.CleanArtifactPath(prefix); err != nil {
			return nil, fmt.Errorf("S3 artifact store: prefix: %w", err)
		}
	}
	client, err := NewS3Client(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("S3 artifact store: %w", err)
	}
	s := &S3{bucket: cfg.Bucket, prefix: prefix, cfg: cfg}
	s.setClient(client)
	return s, nil
}

// NewS3Client builds an S3 client from cfg's endpoint, region, path style and credentials (the bucket
// and prefix are not used); the worker reads s3:// registration sources with it.
func NewS3Client(ctx context.Context, cfg S3Config) (*s3.Client, error) {
	if cfg.Region == "" {
		cfg.Region = DefaultS3Region
	}
	// The SDK keeps at most 10 idle connections per host, fewer than the worker's activities use the
	// store at once: every request above that dialled anew and the store accepted anew (2.5 % of a busy
	// worker's CPU, in docs/benchmarks.md's profile). Parts of one upload go at most MaxConcurrency at
	// a time, and activities run side by side, so keep as many as that.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = 4 * MaxConcurrency
		t.MaxIdleConns = max(t.MaxIdleConns, 4*MaxConcurrency)
	})
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.Region), config.WithHTTPClient(httpClient)}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		if cfg.MaxAttempts > 0 || cfg.MaxBackoff > 0 {
			o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
				if cfg.MaxAttempts > 0 {
					so.MaxAttempts = cfg.MaxAttempts
				}
				if cfg.MaxBackoff > 0 {
					so.MaxBackoff = cfg.MaxBackoff
				}
				// The client-side retry budget (a token bucket) would end a long outage's retries early,
				// which is what raising the attempts is for.
				so.RateLimiter = ratelimit.None
			})
		}
		// Objects uploaded in parts carry a composite checksum the SDK cannot check on download and
		// says so on every read; blobs are verified against their SHA-256 address instead.
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}

// setClient installs c (tests swap in an instrumented client).
func (s *S3) setClient(c *s3.Client) { s.client = c }

// Client is the underlying S3 client (for importing from other buckets with the same credentials).
func (s *S3) Client() *s3.Client { return s.client }

// Bucket is the configured bucket.
func (s *S3) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket if it does not exist.
func (s *S3) EnsureBucket(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("check bucket %s: %w", s.bucket, err)
	}
	in := &s3.CreateBucketInput{Bucket: &s.bucket}
	if s.cfg.Region != DefaultS3Region {
		// us-east-1 is the one region that rejects an explicit location constraint.
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(s.cfg.Region),
		}
	}
	_, err = s.client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", s.bucket, err)
	}
	return nil
}

func (s *S3) key(rel string) string {
	if s.prefix == "" {
		return rel
	}
	return s.prefix + "/" + rel
}

func (s *S3) blobKey(sum string) string {
	return s.key("blobs/sha256/" + sum[:2] + "/" + sum)
}

func (s *S3) versionKey(model string, version int, name string) string {
	return s.key("manifests/" + model + "/v" + strconv.Itoa(version) + "/" + name)
}

func (s *S3) uri(key string) string { return "s3://" + s.bucket + "/" + key }

// BlobURI implements Store.
func (s *S3) BlobURI(sum string) string {
	if validateSHA(sum) != nil {
		return s.uri(s.key("blobs/sha256/invalid"))
	}
	return s.uri(s.blobKey(sum))
}

// ManifestURI implements Store.
func (s *S3) ManifestURI(model string, version int) string {
	return s.uri(s.versionKey(model, version, "manifest.json"))
}

// PutFile implements Store. The file is hashed in a first pass, whole and per part, then, unless the
// stored object provably holds these bytes (its server-computed SHA-256 checksum matches), uploaded
// straight from the file with every part's digest sent along: the server refuses a part whose bytes
// differ from what was hashed, so a file rewritten meanwhile fails the upload and nothing is ever
// deleted. Parts are read in place through an io.ReaderAt, which keeps memory flat. Progress counts the
// hashing pass and then the upload pass on top of it (ending at size for a deduplicated file, 2×size
// otherwise).
func (s *S3) PutFile(ctx context.Context, localPath string, progress Progress) (FileEntry, error) {
	f, before, err := openRegular(localPath)
	if err != nil {
		return FileEntry{}, err
	}
	defer f.Close()
	d, err := hashFileParts(ctx, f, s.partPlan(before.Size()), progress)
	if err != nil {
		return FileEntry{}, err
	}
	size := d.size
	entry := FileEntry{Size: size, SHA256: d.hex()}
	key := s.blobKey(entry.SHA256)
	// An earlier attempt cut off by an outage or a SIGKILL leaves its multipart upload behind, holding
	// parts' storage forever; this attempt cleans it up. Files that fit in the smallest part never went
	// up in parts.
	if size > MinPartSize {
		if err := s.abortUploads(ctx, key); err != nil {
			return FileEntry{}, err
		}
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	switch {
	case err == nil:
		ok, err := s.proven(ctx, head, f, d)
		if err != nil {
			return FileEntry{}, err
		}
		if ok {
			return entry, nil
		}
	case !isNotFound(err):
		return FileEntry{}, fmt.Errorf("check blob %s: %w", s.uri(key), err)
	}
	if err := s.upload(ctx, key, newCoverageReaderAt(f, size, size, progress), d); err != nil {
		if apiCode(err) == "BadDigest" || apiCode(err) == "XAmzContentSHA256Mismatch" || apiCode(err) == "SignatureDoesNotMatch" {
			return FileEntry{}, fmt.Errorf("%s changed while it was being uploaded to %s (the server refused bytes that differ from the hashed ones); store it again: %w", localPath, s.uri(key), err)
		}
		return FileEntry{}, fmt.Errorf("upload %s to %s: %w", localPath, s.uri(key), err)
	}
	// The stored bytes are the hashed ones (the server checked them), but the caller is about to register
	// a file whose content on disk is no longer what was stored.
	after, err := f.Stat()
	if err != nil || !sameFile(before, after) {
		return FileEntry{}, fmt.Errorf("%s changed while it was being uploaded to %s; store it again", localPath, s.uri(key))
	}
	return entry, nil
}

// abortUploads aborts every unfinished multipart upload of key. The key is content-addressed, so an
// upload in progress elsewhere carries the same bytes: if it is aborted, its writer fails, retries, and
// finds the blob stored by whoever finished.
func (s *S3) abortUploads(ctx context.Context, key string) error {
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &key}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return fmt.Errorf("list unfinished uploads of %s: %w", s.uri(key), err)
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != key {
				continue
			}
			_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: u.Key, UploadId: u.UploadId})
			if err != nil && !isNotFound(err) && apiCode(err) != "NoSuchUpload" {
				return fmt.Errorf("abort unfinished upload of %s: %w", s.uri(key), err)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// StatBlob implements Store.
func (s *S3) StatBlob(ctx context.Context, sum string) (int64, error) {
	if err := validateSHA(sum); err != nil {
		return 0, err
	}
	key := s.blobKey(sum)
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return 0, s.objErr("blob", key, err)
	}
	return aws.ToInt64(head.ContentLength), nil
}

// OpenBlob implements Store.
func (s *S3) OpenBlob(ctx context.Context, sum string) (io.ReadCloser, error) {
	if err := validateSHA(sum); err != nil {
		return nil, err
	}
	key := s.blobKey(sum)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, s.objErr("blob", key, err)
	}
	return out.Body, nil
}

// VerifyBlob implements Store.
func (s *S3) VerifyBlob(ctx context.Context, e FileEntry, progress Progress) error {
	if err := validateSHA(e.SHA256); err != nil {
		return err
	}
	key := s.blobKey(e.SHA256)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return s.objErr("blob", key, err)
	}
	defer out.Body.Close()
	return verifyStream(out.Body, aws.ToInt64(out.ContentLength), e, s.uri(key), progress)
}

// PutManifest implements Store. Write-once rests on three checks because S3-compatible servers differ:
// an existing manifest is compared before writing; the write is conditional (If-None-Match: *) where the
// server supports it; and the stored bytes are read back, which catches a concurrent writer on servers
// that ignore the condition.
func (s *S3) PutManifest(ctx context.Context, m Manifest) (string, string, error) {
	b, err := EncodeManifest(m)
	if err != nil {
		return "", "", err
	}
	key := s.versionKey(m.Model, m.Version, "manifest.json")
	uri := s.uri(key)
	digest := ManifestDigest(b)
	compare := func() (string, string, error) {
		existing, err := s.getSmall(ctx, key)
		if err != nil {
			return "", "", s.objErr("manifest", key, err)
		}
		if !bytes.Equal(existing, b) {
			return "", "", fmt.Errorf("manifest %s (stored %s, new %s): %w", uri, ManifestDigest(existing), digest, ErrManifestConflict)
		}
		return uri, digest, nil
	}
	if _, err := s.getSmall(ctx, key); err == nil {
		return compare()
	} else if !isNotFound(err) {
		return "", "", s.objErr("manifest", key, err)
	}
	put := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))),
		ContentType:   aws.String("application/json"),
		IfNoneMatch:   aws.String("*"),
	}
	_, err = s.client.PutObject(ctx, put)
	if err != nil && apiCode(err) == "NotImplemented" {
		put.IfNoneMatch = nil
		put.Body = bytes.NewReader(b)
		_, err = s.client.PutObject(ctx, put)
	}
	if err != nil && !isPreconditionFailed(err) {
		return "", "", fmt.Errorf("write manifest %s: %w", uri, err)
	}
	return compare()
}

// GetManifest implements Store.
func (s *S3) GetManifest(ctx context.Context, model string, version int) (Manifest, string, error) {
	if err := validateVersion(model, version); err != nil {
		return Manifest{}, "", err
	}
	key := s.versionKey(model, version, "manifest.json")
	b, err := s.getSmall(ctx, key)
	if err != nil {
		return Manifest{}, "", s.objErr(fmt.Sprintf("manifest of %s v%d", model, version), key, err)
	}
	return decodeStoredManifest(b, model, version, s.uri(key))
}

// SetArchived implements Store.
func (s *S3) SetArchived(ctx context.Context, model string, version int, archived bool) error {
	if err := s.requireManifest(ctx, model, version); err != nil {
		return err
	}
	key := s.versionKey(model, version, "archived")
	var err error
	if archived {
		body := []byte("archived\n")
		_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("text/plain"),
		})
	} else {
		_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
		if isNotFound(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("set archived=%t on %s v%d (%s): %w", archived, model, version, s.uri(key), err)
	}
	return nil
}

// IsArchived implements Store.
func (s *S3) IsArchived(ctx context.Context, model string, version int) (bool, error) {
	if err := s.requireManifest(ctx, model, version); err != nil {
		return false, err
	}
	key := s.versionKey(model, version, "archived")
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("archived mark of %s v%d (%s): %w", model, version, s.uri(key), err)
	}
	return true, nil
}

func (s *S3) requireManifest(ctx context.Context, model string, version int) error {
	if err := validateVersion(model, version); err != nil {
		return err
	}
	key := s.versionKey(model, version, "manifest.json")
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return s.objErr(fmt.Sprintf("manifest of %s v%d", model, version), key, err)
	}
	return nil
}

// getSmall reads a whole object that is expected to be small (manifests).
func (s *S3) getSmall(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("object %s is larger than %d bytes", s.uri(key), maxManifestBytes)
	}
	return b, nil
}

// objErr names the object and maps "does not exist" (key or bucket) to ErrNotFound.
func (s *S3) objErr(what, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%s (%s): %w", what, s.uri(key), ErrNotFound)
	}
	return fmt.Errorf("%s (%s): %w", what, s.uri(key), err)
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNotFound is true for a missing key or bucket. HEAD responses have no body, so a missing bucket and a
// missing key both arrive as a bare 404 there.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	switch apiCode(err) {
	case "NotFound", "NoSuchKey", "NoSuchBucket":
		return true
	}
	return httpStatus(err) == http.StatusNotFound
}

func isPreconditionFailed(err error) bool {
	switch apiCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	st := httpStatus(err)
	return st == http.StatusPreconditionFailed || st == http.StatusConflict
}
