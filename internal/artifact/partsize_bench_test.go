package artifact

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/testenv"
)

// BenchmarkS3PartSize is the measurement behind DefaultPartSize and DefaultConcurrency: PutFile of a
// 256 MiB file to versitygw for a sweep of part sizes and concurrencies, each reported as MiB/s and as
// a speed ratio (x-sdk) against what the SDK's upload manager does with its defaults (5 MiB parts, 5 at
// a time; hashing first, as PutFile does), measured first in the same run.
func BenchmarkS3PartSize(b *testing.B) {
	const size = 256 << 20
	srv := testenv.S3(b)
	path := filepath.Join(b.TempDir(), "model.bin")
	if err := os.WriteFile(path, randomBytes(size, 21), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var round int
	// restamp changes the content so that no round is deduplicated.
	restamp := func(b *testing.B) {
		round++
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte(fmt.Sprintf("%020d%020d", round, time.Now().UnixNano())), 0); err != nil {
			b.Fatal(err)
		}
	}
	var baseline float64 // ns per op of the SDK's defaults
	measure := func(b *testing.B, s *S3, isBaseline bool, put func() (string, error)) {
		b.SetBytes(size)
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			restamp(b)
			b.StartTimer()
			t0 := time.Now()
			sum, err := put()
			if err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
			b.StopTimer()
			key := s.blobKey(sum)
			if _, err := s.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket()), Key: &key}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		perOp := float64(total.Nanoseconds()) / float64(b.N)
		b.ReportMetric(float64(size)/(1<<20)/(perOp/1e9), "MiB/s")
		if isBaseline {
			baseline = perOp
		}
		b.ReportMetric(baseline/perOp, "x-sdk")
	}
	b.Run("sdk-defaults", func(b *testing.B) {
		s := newS3HarnessCfg(b, srv, S3Config{})
		up := manager.NewUploader(s.Client())
		measure(b, s.S3, true, func() (string, error) {
			f, err := os.Open(path)
			if err != nil {
				return "", err
			}
			defer f.Close()
			sum, _, err := hashLocalFile(ctx, f, nil)
			if err != nil {
				return "", err
			}
			key := s.blobKey(sum)
			_, err = up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket()), Key: &key, Body: io.NewSectionReader(f, 0, size)})
			return sum, err
		})
	})
	for _, ps := range []int64{5 << 20, 16 << 20, 64 << 20, 128 << 20} {
		for _, c := range []int{2, 4, 8} {
			b.Run(fmt.Sprintf("part-%dMiB/concurrency-%d", ps>>20, c), func(b *testing.B) {
				s := newS3HarnessCfg(b, srv, S3Config{PartSize: ps, Concurrency: c})
				measure(b, s.S3, false, func() (string, error) {
					e, err := s.PutFile(ctx, path, nil)
					return e.SHA256, err
				})
			})
		}
	}
}
