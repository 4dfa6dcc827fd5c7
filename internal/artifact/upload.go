package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// Multipart limits of S3 (and of the S3-compatible servers the registry is tested with).
const (
	MinPartSize  = 5 << 20
	MaxPartSize  = 5 << 30
	maxPartCount = 10_000
	// MaxConcurrency bounds parts in flight per file; beyond a few dozen only sockets and server load grow.
	MaxConcurrency = 64
)

// DefaultPartSize and DefaultConcurrency were among the fastest settings of BenchmarkS3PartSize on the
// tests' S3 server in every run (CONTRIBUTING.md has the command); larger parts were not reliably faster
// and cost more to send again after a failed request. With the SDK's 5 MiB a 5 GiB file takes 1,024
// parts, and versitygw answered their completion with InternalError (TestRegisterFiveGiBFile).
const (
	DefaultPartSize    = 64 << 20
	DefaultConcurrency = 4
)

// abortTimeout bounds the clean-up of an interrupted multipart upload. It runs after the caller's context
// is cancelled (Ctrl-C), so it cannot use that context, and it must not keep an interrupted command
// alive for long when the server is unreachable; the next PutFile of the same content aborts what is left.
const abortTimeout = 10 * time.Second

// metaPartSize records the part size an object was uploaded with, so a later PutFile can recompute the
// composite checksum with the same part boundaries. It is only a hint: a wrong value makes the checksum
// comparison fail, and the blob is uploaded again.
const metaPartSize = "part-size"

// DefaultMultipartThreshold sends every file S3 takes in one PUT that way: on the tests' S3 server one
// PUT of 512 MiB was about 10 % faster than 64 MiB parts × 4, and only a single PUT gives the object a
// full-object SHA-256 checksum the registry can believe (README, "Integrity"). Over a long link to S3,
// where parallel parts beat one stream, set MODELREG_S3_MULTIPART_THRESHOLD_MIB lower.
const DefaultMultipartThreshold = MaxSinglePut

// partPlan is how a file of a given size is cut into parts: one part (a single PUT) up to the multipart
// threshold.
func (s *S3) partPlan(size int64) int64 {
	threshold := s.cfg.MultipartThreshold
	if threshold == 0 {
		threshold = DefaultMultipartThreshold
	}
	if size <= threshold {
		return max(size, MinPartSize)
	}
	ps := s.cfg.PartSize
	if ps == 0 {
		ps = DefaultPartSize
	}
	// A file too large for maxPartCount parts of the configured size gets larger parts, rounded up to
	// a MiB, as the SDK's upload manager does.
	if n := (size + ps - 1) / ps; n > maxPartCount {
		ps = ((size+maxPartCount-1)/maxPartCount + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

func (s *S3) concurrency() int {
	if s.cfg.Concurrency > 0 {
		return s.cfg.Concurrency
	}
	return DefaultConcurrency
}

// fileDigests is what the hashing pass learns about a file: its SHA-256 and the SHA-256 of each part
// of partSize bytes (one part, the whole file, when it fits in one).
type fileDigests struct {
	sum      [32]byte
	size     int64
	partSize int64
	parts    [][32]byte
}

func (d fileDigests) hex() string { return fmt.Sprintf("%x", d.sum) }

func (d fileDigests) multipart() bool { return d.size > d.partSize }

// s3Checksum is the ChecksumSHA256 S3 reports for an object uploaded as d plans: the base64 SHA-256 of
// the whole object for a single PUT, or for a multipart upload the SHA-256 of the concatenated part
// digests followed by "-<parts>". The server computes it from the bytes it received and refuses any part
// whose bytes do not hash to the digest sent with it, so a match proves the stored bytes are the file's.
func (d fileDigests) s3Checksum() string {
	if !d.multipart() {
		return base64.StdEncoding.EncodeToString(d.sum[:])
	}
	h := sha256.New()
	for _, p := range d.parts {
		h.Write(p[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(d.parts))
}

// hashFileParts hashes f from its start, whole and in parts of partSize, in one read. The whole-file
// digest and the part digests are computed side by side (SHA-256 of one stream cannot be split), so a
// multipart file costs the time of one hash on a machine with a core to spare; a file of one part is
// hashed once, its part digest being the whole digest.
func hashFileParts(ctx context.Context, f *os.File, partSize int64, progress Progress) (fileDigests, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fileDigests{}, fmt.Errorf("seek %s: %w", f.Name(), err)
	}
	d := fileDigests{partSize: partSize}
	whole := sha256.New()
	// Chunks go to the part hasher through a channel, with a few buffers in flight so that reading and
	// both hashers overlap; the buffers come from and return to copyBufPool.
	type chunk struct {
		buf *[]byte
		n   int
	}
	// A file of one part has one hasher and needs one buffer: the starter hashes 8 files at once, and
	// 4 MiB each for nothing put it over 64 MiB of memory for a version of many files.
	multipart := true
	if fi, err := f.Stat(); err == nil && fi.Size() <= partSize {
		multipart = false
	}
	inFlight := 1
	if multipart {
		inFlight = 4
	}
	var (
		parts   chan chunk
		free    = make(chan *[]byte, inFlight)
		partsOK = make(chan [][32]byte, 1)
	)
	for range inFlight {
		free <- copyBufPool.Get().(*[]byte)
	}
	defer func() {
		for range inFlight {
			copyBufPool.Put(<-free)
		}
	}()
	var inPart int64
	partHash := sha256.New()
	var digests [][32]byte
	hashPart := func(b []byte) {
		for len(b) > 0 {
			k := min(int64(len(b)), partSize-inPart)
			partHash.Write(b[:k])
			inPart += k
			b = b[k:]
			if inPart == partSize {
				digests = append(digests, [32]byte(partHash.Sum(nil)))
				partHash.Reset()
				inPart = 0
			}
		}
	}
	if multipart {
		parts = make(chan chunk, inFlight)
		go func() {
			for c := range parts {
				hashPart((*c.buf)[:c.n])
				free <- c.buf
			}
			partsOK <- digests
		}()
	}
	r := ctxReader{ctx, f}
	var readErr error
	for {
		bp := <-free
		n, err := io.ReadFull(r, *bp)
		if n > 0 {
			whole.Write((*bp)[:n])
			d.size += int64(n)
		}
		if parts != nil && n > 0 {
			parts <- chunk{bp, n}
		} else {
			free <- bp
		}
		if n > 0 && progress != nil {
			progress(d.size)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			readErr = fmt.Errorf("read %s: %w", f.Name(), err)
			break
		}
	}
	copy(d.sum[:], whole.Sum(nil))
	if parts != nil {
		close(parts)
		d.parts = <-partsOK
		if inPart > 0 || d.size == 0 {
			d.parts = append(d.parts, [32]byte(partHash.Sum(nil)))
		}
	} else {
		d.parts = [][32]byte{d.sum}
	}
	if readErr != nil {
		return fileDigests{}, readErr
	}
	if parts == nil && d.size > partSize {
		return fileDigests{}, fmt.Errorf("%s grew while it was being hashed; store it again", f.Name())
	}
	return d, nil
}

// proven reports whether the object head describes exactly the bytes of the local file f (digests d):
// same size and a server-computed checksum that matches. An object without a SHA-256 checksum (written
// by an older version of this program, or by hand) proves nothing and is replaced.
func (s *S3) proven(ctx context.Context, head *s3.HeadObjectOutput, f *os.File, d fileDigests) (bool, error) {
	got := aws.ToString(head.ChecksumSHA256)
	if aws.ToInt64(head.ContentLength) != d.size || got == "" {
		return false, nil
	}
	if got == d.s3Checksum() {
		return true, nil
	}
	// Uploaded in parts of another size (the part size is a flag): recompute with those boundaries.
	_, n, ok := strings.Cut(got, "-")
	if !ok {
		return false, nil
	}
	ps, err := strconv.ParseInt(head.Metadata[metaPartSize], 10, 64)
	if err != nil || ps < MinPartSize || ps > MaxPartSize || ps == d.partSize || strconv.FormatInt((d.size+ps-1)/ps, 10) != n {
		return false, nil
	}
	other, err := hashFileParts(ctx, f, ps, nil)
	if err != nil {
		return false, err
	}
	return other.sum == d.sum && other.s3Checksum() == got, nil
}

// unsignedPayload sends a part's bytes without a SigV4 payload hash (over plain HTTP the SDK would
// otherwise read and hash every part once more before sending it, and the server hash it again): the
// SHA-256 checksum header, which is signed, already makes the server check every byte.
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// upload stores the file at key, every byte checked by the server against the digests of the hashing
// pass: a file rewritten since then fails the upload instead of leaving other bytes at its address.
func (s *S3) upload(ctx context.Context, key string, body io.ReaderAt, d fileDigests) error {
	meta := map[string]string{"sha256": d.hex(), metaPartSize: strconv.FormatInt(d.partSize, 10)}
	if !d.multipart() {
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:            &s.bucket,
			Key:               &key,
			Body:              io.NewSectionReader(body, 0, d.size),
			ContentLength:     aws.Int64(d.size),
			ContentType:       aws.String("application/octet-stream"),
			ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
			ChecksumSHA256:    aws.String(d.s3Checksum()),
			Metadata:          meta,
		}, unsignedPayload)
		return err
	}
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               &key,
		ContentType:       aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		Metadata:          meta,
	})
	if err != nil {
		return err
	}
	abort := func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		s.abortUpload(actx, key, up.UploadId)
	}
	completed := make([]types.CompletedPart, len(d.parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency())
	for i := range d.parts {
		off := int64(i) * d.partSize
		n := min(d.partSize, d.size-off)
		sum := base64.StdEncoding.EncodeToString(d.parts[i][:])
		g.Go(func() error {
			out, err := s.client.UploadPart(gctx, &s3.UploadPartInput{
				Bucket:            &s.bucket,
				Key:               &key,
				UploadId:          up.UploadId,
				PartNumber:        aws.Int32(int32(i + 1)),
				Body:              io.NewSectionReader(body, off, n),
				ContentLength:     aws.Int64(n),
				ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
				ChecksumSHA256:    aws.String(sum),
			}, unsignedPayload)
			if err != nil {
				return fmt.Errorf("part %d of %d: %w", i+1, len(d.parts), err)
			}
			completed[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.ETag, ChecksumSHA256: aws.String(sum)}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		abort()
		return err
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &key,
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err != nil {
		abort()
		return err
	}
	return nil
}

// abortUpload aborts one multipart upload until the server no longer knows it. A part whose request was
// cancelled on this side may still be being written on the server's, and may survive an abort that
// arrives meanwhile (S3 documents this): so the abort is repeated until listing the upload's parts says
// there is no such upload, or ctx ends.
func (s *S3) abortUpload(ctx context.Context, key string, uploadID *string) {
	gone := func(err error) bool { return isNotFound(err) || apiCode(err) == "NoSuchUpload" }
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: uploadID})
		if err != nil && gone(err) {
			return
		}
		_, err = s.client.ListParts(ctx, &s3.ListPartsInput{Bucket: &s.bucket, Key: &key, UploadId: uploadID, MaxParts: aws.Int32(1)})
		if gone(err) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
