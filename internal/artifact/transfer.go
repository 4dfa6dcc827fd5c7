package artifact

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Transfer moves blob bytes between a store and clients that hold no credentials for it: the HTTP API
// tells a training job where to send a file and a deployer where to fetch one. Whatever path the bytes
// take, a blob at its address always hashes to it: a store that presigns a request makes the server
// itself check the bytes, and WriteBlob checks them before they reach the address.
type Transfer interface {
	// HasBlob reports whether the store holds e's bytes, as far as it can tell without reading them:
	// the size must match, and where the store keeps a checksum of its own (S3) that checksum must too.
	// Validation re-reads every blob of a version anyway.
	HasBlob(ctx context.Context, e FileEntry) (bool, error)
	// WriteBlob stores what r yields as the blob e, if it is exactly e.Size bytes hashing to e.SHA256.
	// Otherwise it returns an error wrapping ErrDigestMismatch and nothing is left at the address (a
	// blob already there stays as it was).
	WriteBlob(ctx context.Context, e FileEntry, r io.Reader) error
	// BlobUpload presigns a request that stores e's bytes and that the store refuses unless they are
	// exactly e's; nil when the store cannot check bytes itself, and they must go through WriteBlob.
	// An error wrapping ErrTooLarge says e cannot be stored in one request.
	BlobUpload(ctx context.Context, e FileEntry, ttl time.Duration) (*PresignedRequest, error)
	// BlobDownload tells how to read a blob: a presigned URL, or its bytes opened for reading (with
	// Seek, for range requests), which the caller closes. ErrNotFound when there is no such blob.
	BlobDownload(ctx context.Context, sum string, ttl time.Duration) (Download, error)
}

// PresignedRequest is a request a client without credentials may send to the store until Expires.
// Every header must be sent exactly as given: they are signed.
type PresignedRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Header  map[string]string `json:"headers"`
	Expires time.Time         `json:"expires"`
}

// Download is where a blob's bytes are: URL (presigned, until Expires), or Content.
type Download struct {
	URL     string
	Expires time.Time
	Content io.ReadSeekCloser
	Size    int64
	ModTime time.Time
}

// ErrTooLarge is returned (wrapped) for a blob that cannot be sent in one request.
var ErrTooLarge = errors.New("too large for one request")

// MaxSinglePut is the most bytes S3 takes in one PUT; larger objects must go up in parts, which a
// presigned request cannot do on its own.
const MaxSinglePut = MaxPartSize

var (
	_ Transfer = (*Dir)(nil)
	_ Transfer = (*S3)(nil)
)

func checkEntryShape(e FileEntry) error {
	if err := validateSHA(e.SHA256); err != nil {
		return err
	}
	if e.Size < 0 {
		return fmt.Errorf("blob %s: negative size %d", e.SHA256, e.Size)
	}
	return nil
}

// Attester is a store that can vouch for a blob without reading it back: a checksum the server computed
// from the bytes it received matches the blob's address. Validation accepts such a blob unless the
// policy asks for every byte to be hashed again (catalog.Policy.RehashArtifacts).
type Attester interface {
	AttestBlob(ctx context.Context, e FileEntry) (bool, error)
}

// AttestBlob implements Attester with HasBlob's proof.
func (s *S3) AttestBlob(ctx context.Context, e FileEntry) (bool, error) { return s.HasBlob(ctx, e) }

// HasBlob implements Transfer. A directory has no checksum of its own, and a file at a blob's address
// may have been replaced on disk since it got there: the file is hashed, as PutFile does before it
// skips one, so that a replaced blob is uploaded again rather than reported present.
func (d *Dir) HasBlob(ctx context.Context, e FileEntry) (bool, error) {
	if err := checkEntryShape(e); err != nil {
		return false, err
	}
	fi, err := os.Stat(d.blobPath(e.SHA256))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", e.SHA256, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != e.Size {
		return false, nil
	}
	switch err := d.VerifyBlob(ctx, e, nil); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// WriteBlob implements Transfer: the bytes are staged in tmp/ while they are hashed and renamed into
// place only when they match.
func (d *Dir) WriteBlob(ctx context.Context, e FileEntry, r io.Reader) error {
	if err := checkEntryShape(e); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(d.root, "tmp"), "upload-*")
	if err != nil {
		return fmt.Errorf("blob %s: %w", e.SHA256, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// One byte more than declared is enough to know the body is too long, and bounds what a client
	// can make the store write.
	sum, n, err := copyHashing(tmp, ctxReader{ctx, io.LimitReader(r, e.Size+1)}, 0, nil)
	if err != nil {
		return fmt.Errorf("receive blob %s: %w", e.SHA256, err)
	}
	if n != e.Size || sum != e.SHA256 {
		return mismatch(e, n, sum)
	}
	if committed, err = commitBlob(tmp, d.blobPath(e.SHA256)); err != nil {
		return fmt.Errorf("store blob %s: %w", e.SHA256, err)
	}
	return nil
}

func mismatch(e FileEntry, n int64, sum string) error {
	if n > e.Size {
		return fmt.Errorf("received more than the declared %d bytes for blob %s: %w", e.Size, e.SHA256, ErrDigestMismatch)
	}
	return fmt.Errorf("received %d bytes hashing to %s, declared %d bytes hashing to %s: %w", n, sum, e.Size, e.SHA256, ErrDigestMismatch)
}

// BlobUpload implements Transfer: nothing can write to a directory but the registry, so the bytes go
// through WriteBlob.
func (d *Dir) BlobUpload(ctx context.Context, e FileEntry, ttl time.Duration) (*PresignedRequest, error) {
	return nil, checkEntryShape(e)
}

// BlobDownload implements Transfer.
func (d *Dir) BlobDownload(ctx context.Context, sum string, ttl time.Duration) (Download, error) {
	rc, err := d.OpenBlob(ctx, sum)
	if err != nil {
		return Download{}, err
	}
	f := rc.(*os.File)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return Download{}, fmt.Errorf("blob %s: %w", sum, err)
	}
	return Download{Content: f, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func sha256Base64(hexSum string) string {
	b, _ := hex.DecodeString(hexSum)
	return base64.StdEncoding.EncodeToString(b)
}

// HasBlob implements Transfer. An object counts only when S3's full-object SHA-256 checksum, which the
// server computed from the bytes it stored, is the address. A multipart object's composite checksum does
// not count: it proves the parts are what their uploader hashed, not that they hash to the address (an
// adversarial review replaced a blob by a multipart upload of other bytes with the address copied into
// its metadata). Such an object, or one without a checksum, is re-hashed by validation and uploaded again
// through the API.
func (s *S3) HasBlob(ctx context.Context, e FileEntry) (bool, error) {
	if err := checkEntryShape(e); err != nil {
		return false, err
	}
	key := s.blobKey(e.SHA256)
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check blob %s: %w", s.uri(key), err)
	}
	if aws.ToInt64(head.ContentLength) != e.Size {
		return false, nil
	}
	return aws.ToString(head.ChecksumSHA256) == sha256Base64(e.SHA256), nil
}

// WriteBlob implements Transfer. The SHA-256 goes with the request, so the server refuses bytes that
// differ and never stores them.
func (s *S3) WriteBlob(ctx context.Context, e FileEntry, r io.Reader) error {
	if err := checkEntryShape(e); err != nil {
		return err
	}
	if e.Size > MaxSinglePut {
		return fmt.Errorf("blob %s of %d bytes: S3 takes at most %d in one request: %w", e.SHA256, e.Size, int64(MaxSinglePut), ErrTooLarge)
	}
	key := s.blobKey(e.SHA256)
	body := &exactReader{r: r, left: e.Size}
	if e.Size == 0 {
		// No body is sent for an empty object, so a source with bytes must be caught here.
		if n, _ := io.ReadFull(r, make([]byte, 1)); n > 0 {
			return mismatch(e, 1, "")
		}
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:            &s.bucket,
		Key:               &key,
		Body:              body,
		ContentLength:     aws.Int64(e.Size),
		ContentType:       aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(sha256Base64(e.SHA256)),
		Metadata:          map[string]string{"sha256": e.SHA256},
	}, unsignedPayload)
	switch {
	case body.bad != nil:
		return body.bad
	case err == nil:
		return nil
	case isDigestRefusal(err):
		return fmt.Errorf("blob %s: the store refused bytes that do not hash to it: %w", e.SHA256, ErrDigestMismatch)
	}
	return fmt.Errorf("upload blob %s: %w", s.uri(key), err)
}

func isDigestRefusal(err error) bool {
	switch apiCode(err) {
	case "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "IncompleteBody":
		return true
	}
	return false
}

// exactReader yields exactly left bytes of r, or fails the read that would complete the body when r
// holds fewer or more: the last byte is held back until r shows it ends there. Failing before the
// body is complete is what keeps the server from ever taking it; an error after the last byte went
// out would come too late.
type exactReader struct {
	r    io.Reader
	left int64
	n    int64
	bad  error
}

func (x *exactReader) Read(p []byte) (int, error) {
	if x.bad != nil {
		return 0, x.bad
	}
	if x.left == 0 {
		return 0, io.EOF
	}
	if x.left > 1 {
		k := min(int64(len(p)), x.left-1)
		n, err := x.r.Read(p[:k])
		x.n += int64(n)
		x.left -= int64(n)
		if errors.Is(err, io.EOF) {
			x.bad = fmt.Errorf("the body ended after %d of %d bytes: %w", x.n, x.n+x.left, ErrDigestMismatch)
			return n, x.bad
		}
		return n, err
	}
	var last [2]byte
	n, err := io.ReadFull(x.r, last[:])
	switch {
	case n == 2:
		x.bad = fmt.Errorf("the body is longer than the declared %d bytes: %w", x.n+1, ErrDigestMismatch)
		return 0, x.bad
	case n == 0 && errors.Is(err, io.EOF):
		x.bad = fmt.Errorf("the body ended after %d of %d bytes: %w", x.n, x.n+1, ErrDigestMismatch)
		return 0, x.bad
	case !errors.Is(err, io.ErrUnexpectedEOF):
		return 0, err
	}
	p[0] = last[0]
	x.n++
	x.left = 0
	return 1, nil
}

// presigner signs for PublicEndpoint when one is set: clients may reach the store at another address
// than the registry does (a container network's host name is not the outside world's).
func (s *S3) presigner() *s3.PresignClient {
	c := s.client
	if s.cfg.PublicEndpoint != "" {
		c = s3.New(c.Options(), func(o *s3.Options) { o.BaseEndpoint = aws.String(s.cfg.PublicEndpoint) })
	}
	return s3.NewPresignClient(c)
}

// BlobUpload implements Transfer: a PUT whose size and SHA-256 are signed headers, so the server
// refuses a body of another length or content, and a PUT of other bytes cannot be made from it.
func (s *S3) BlobUpload(ctx context.Context, e FileEntry, ttl time.Duration) (*PresignedRequest, error) {
	if err := checkEntryShape(e); err != nil {
		return nil, err
	}
	if e.Size > MaxSinglePut {
		return nil, fmt.Errorf("blob %s of %d bytes: S3 takes at most %d in one request: %w", e.SHA256, e.Size, int64(MaxSinglePut), ErrTooLarge)
	}
	key := s.blobKey(e.SHA256)
	signed := time.Now()
	req, err := s.presigner().PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket:            &s.bucket,
		Key:               &key,
		ContentLength:     aws.Int64(e.Size),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(sha256Base64(e.SHA256)),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return nil, fmt.Errorf("presign the upload of %s: %w", s.uri(key), err)
	}
	return presigned(req.Method, req.URL, req.SignedHeader, signed.Add(ttl)), nil
}

// BlobDownload implements Transfer: a presigned GET, once the object is known to exist.
func (s *S3) BlobDownload(ctx context.Context, sum string, ttl time.Duration) (Download, error) {
	size, err := s.StatBlob(ctx, sum)
	if err != nil {
		return Download{}, err
	}
	key := s.blobKey(sum)
	signed := time.Now()
	req, err := s.presigner().PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}, s3.WithPresignExpires(ttl))
	if err != nil {
		return Download{}, fmt.Errorf("presign the download of %s: %w", s.uri(key), err)
	}
	return Download{URL: req.URL, Expires: signed.Add(ttl).UTC(), Size: size}, nil
}

func presigned(method, url string, h http.Header, expires time.Time) *PresignedRequest {
	p := &PresignedRequest{Method: method, URL: url, Header: map[string]string{}, Expires: expires.UTC()}
	for k, v := range h {
		// Host is the URL's; an HTTP client sets it and refuses to have it set.
		if http.CanonicalHeaderKey(k) == "Host" || len(v) == 0 {
			continue
		}
		p.Header[http.CanonicalHeaderKey(k)] = v[0]
	}
	return p
}
