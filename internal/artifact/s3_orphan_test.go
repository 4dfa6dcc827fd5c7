package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/testenv"
)

// An upload cut off by an outage leaves a multipart upload behind: the next PutFile of the same content
// (a retry) aborts it, whether it then uploads the blob or finds it stored already.
func TestS3PutFileAbortsUnfinishedUploads(t *testing.T) {
	srv := testenv.S3(t)
	h := newS3Harness(t, srv, "")
	ctx := context.Background()
	data := make([]byte, 6<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	key := h.blobKey(hex.EncodeToString(sum[:]))
	path := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	orphan := func() {
		t.Helper()
		up, err := h.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(h.Bucket()), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Client().UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(h.Bucket()), Key: aws.String(key),
			UploadId: up.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(data[:5<<20])}); err != nil {
			t.Fatal(err)
		}
	}
	unfinished := func() int {
		t.Helper()
		out, err := h.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(h.Bucket())})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Uploads)
	}
	for _, stored := range []bool{false, true} {
		orphan()
		if n := unfinished(); n != 1 {
			t.Fatalf("setup: %d unfinished uploads", n)
		}
		if _, err := h.PutFile(ctx, path, nil); err != nil {
			t.Fatal(err)
		}
		if n := unfinished(); n != 0 {
			t.Fatalf("blob already stored=%v: %d unfinished uploads left", stored, n)
		}
	}
}

// Ctrl-C during an upload cancels its context; the multipart upload must be aborted all the same, or its
// parts hold storage until someone stores the same content again.
func TestS3PutFileCancelledAbortsUpload(t *testing.T) {
	srv := testenv.S3(t)
	h := newS3Harness(t, srv, "")
	data := make([]byte, 16<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	size := int64(len(data))
	_, err := h.PutFile(ctx, path, func(d int64) {
		if d > size+1<<20 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("PutFile with its context cancelled mid-upload succeeded")
	}
	if h.multipartUploads() != 1 {
		t.Fatalf("setup: %d multipart uploads started, want 1", h.multipartUploads())
	}
	out, err := h.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(h.Bucket())})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("a cancelled PutFile left %d unfinished multipart uploads behind", len(out.Uploads))
	}
}

// A file rewritten between two parts of its upload (here: after the first of three parts was read)
// used to go up whole with the new bytes, after which PutFile deleted the address, taking with it the
// blob another writer had stored there meanwhile. One part at a time makes the interleaving exact.
func TestS3ChangedSourceNeverDeletesStoredBlob(t *testing.T) {
	srv := testenv.S3(t)
	const part = 5 << 20
	h := newS3HarnessCfg(t, srv, S3Config{PartSize: part, MultipartThreshold: -1, Concurrency: 1})
	content := randomBytes(2*part+1<<20, 12)
	path := writeTemp(t, content)
	size := int64(len(content))
	var once sync.Once
	_, err := h.PutFile(context.Background(), path, func(d int64) {
		if d >= size+part {
			once.Do(func() {
				f, err := os.OpenFile(path, os.O_WRONLY, 0)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				if _, err := f.WriteAt(randomBytes(len(content)-part, 13), part); err != nil {
					t.Error(err)
				}
				h.overwriteBlob(t, sha(content), content)
			})
		}
	})
	if err == nil || !strings.Contains(err.Error(), "changed while") {
		t.Fatalf("PutFile of a file rewritten mid-upload = %v, want a 'changed while' error", err)
	}
	if err := h.VerifyBlob(context.Background(), FileEntry{SHA256: sha(content), Size: size}, nil); err != nil {
		t.Fatalf("the blob another writer stored is gone or damaged: %v", err)
	}
}

// A blob uploaded in parts of another size (the part size is a setting) is still recognised from its
// composite checksum, and not uploaded again; a blob of the right size whose bytes are wrong is replaced.
func TestS3DedupAcrossPartSizes(t *testing.T) {
	srv := testenv.S3(t)
	ctx := context.Background()
	a := newS3HarnessCfg(t, srv, S3Config{PartSize: 5 << 20, MultipartThreshold: -1, Concurrency: 2})
	cfg := a.cfg
	cfg.PartSize = 6 << 20
	b, err := NewS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	content := randomBytes(12<<20, 14)
	path := writeTemp(t, content)
	e, err := a.PutFile(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := a.blobKey(e.SHA256)
	etag := func() string {
		t.Helper()
		h, err := a.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(a.Bucket()), Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(h.ETag)
	}
	before := etag()
	if _, err := b.PutFile(ctx, path, nil); err != nil {
		t.Fatal(err)
	}
	if after := etag(); after != before {
		t.Fatalf("a blob stored in 5 MiB parts was uploaded again by a store with 6 MiB parts (ETag %s -> %s)", before, after)
	}
	corrupt := bytes.Clone(content)
	corrupt[7<<20] ^= 0x80
	a.overwriteBlob(t, e.SHA256, corrupt)
	if _, err := b.PutFile(ctx, path, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.VerifyBlob(ctx, e, nil); err != nil {
		t.Fatalf("a corrupt blob of the right size was kept: %v", err)
	}
}
