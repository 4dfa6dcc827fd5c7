package artifact

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/testenv"
)

// BenchmarkS3PartSize is the measurement behind DefaultPartSize and DefaultConcurrency: PutFile of a
// 256 MiB file to versitygw for a sweep of part sizes and concurrencies, each reported as MiB/s and as
// a speed ratio (x-sdk) against PutFile with the SDK upload manager's defaults (5 MiB parts, 5 at a
// time), measured first in the same run.
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
	// The baseline goes through PutFile too, so the ratio measures the parameters alone and not a second
	// upload path (the SDK's upload manager, measured here until it was deprecated, has these defaults).
	b.Run("sdk-defaults", func(b *testing.B) {
		s := newS3HarnessCfg(b, srv, S3Config{PartSize: 5 << 20, MultipartThreshold: -1, Concurrency: 5})
		measure(b, s.S3, true, func() (string, error) {
			e, err := s.PutFile(ctx, path, nil)
			return e.SHA256, err
		})
	})
	for _, ps := range []int64{5 << 20, 16 << 20, 64 << 20, 128 << 20} {
		for _, c := range []int{2, 4, 8} {
			b.Run(fmt.Sprintf("part-%dMiB/concurrency-%d", ps>>20, c), func(b *testing.B) {
				s := newS3HarnessCfg(b, srv, S3Config{PartSize: ps, MultipartThreshold: -1, Concurrency: c})
				measure(b, s.S3, false, func() (string, error) {
					e, err := s.PutFile(ctx, path, nil)
					return e.SHA256, err
				})
			})
		}
	}
}
