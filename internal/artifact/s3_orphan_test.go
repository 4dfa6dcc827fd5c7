package artifact

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
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
