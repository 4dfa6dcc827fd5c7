package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func init() { suites["ingest"] = ingest }

// uploader is one baseline configuration: an SDK upload manager with a part size and concurrency.
type uploader struct {
	name        string
	partSize    int64
	concurrency int
	put         func(ctx context.Context, key, path string) error
}

// ingest measures the time from `starter register --dir --wait` to PendingApproval, for one large file
// and for the same bytes as many files, against the fastest configuration of the AWS SDK's upload
// managers (swept in the same run) uploading the same bytes to the same server. The registry's time
// includes everything a registration does: the SHA-256 of every byte, the upload, the catalog and the
// lifecycle's validation.
func ingest(e *Env, r *Report) {
	ctx := context.Background()
	size, nfiles := e.Opts.IngestBytes, e.Opts.IngestFiles
	one := filepath.Join(e.Dir, "ingest-one")
	many := filepath.Join(e.Dir, "ingest-many")
	writeRandomFiles(e, one, []int64{size})
	parts := make([]int64, nfiles)
	for i := range parts {
		parts[i] = size / int64(nfiles)
	}
	parts[0] += size % int64(nfiles)
	writeRandomFiles(e, many, parts)
	worker := e.StartWorker()

	best := sweep(e, r, ctx, filepath.Join(one, "f0000.bin"), size)
	baseline := fmt.Sprintf("%s, %d MiB parts × %d (the fastest of the sweep)", best.name, best.partSize>>20, best.concurrency)
	fOne := &Figure{Suite: "ingest", Name: fmt.Sprintf("%s as 1 file to PendingApproval", sizeName(size)), Unit: "MiB/s",
		Baseline: baseline, Target: 0.9, Limits: map[string]float64{"starter_rss_mib": 64, "worker_rss_mib": 64}}
	fMany := &Figure{Suite: "ingest", Name: fmt.Sprintf("%s as %d files to PendingApproval", sizeName(size), nfiles), Unit: "MiB/s",
		Baseline: baseline + ", file by file", Target: 0.85, Limits: map[string]float64{"starter_rss_mib": 64, "worker_rss_mib": 64}}
	fAgain := &Figure{Suite: "ingest", Name: fmt.Sprintf("re-register the identical %s under a new key", sizeName(size)), Unit: "registrations/s",
		Limits: map[string]float64{"seconds": 1.5}}
	mib := float64(size) / (1 << 20)
	for round := 1; round <= e.Opts.Rounds; round++ {
		// New bytes each round: nothing is deduplicated against an earlier round.
		restamp(e, one, round)
		restamp(e, many, round)
		t := baselineUpload(e, ctx, best, one, fmt.Sprintf("baseline/r%d/one", round))
		fOne.Base = append(fOne.Base, mib/t.Seconds())
		el := register(e, ctx, worker, fOne, fmt.Sprintf("ingest-one-r%d", round), one)
		fOne.Registry = append(fOne.Registry, mib/el.Seconds())

		t = baselineUpload(e, ctx, best, many, fmt.Sprintf("baseline/r%d/many", round))
		fMany.Base = append(fMany.Base, mib/t.Seconds())
		el = register(e, ctx, worker, fMany, fmt.Sprintf("ingest-many-r%d", round), many)
		fMany.Registry = append(fMany.Registry, mib/el.Seconds())

		// The same bytes under a new key: the store has every blob, so nothing may be uploaded.
		blob := blobKeyOf(e, ctx, fmt.Sprintf("ingest-one-r%d", round))
		before := lastModified(e, ctx, blob)
		el = register(e, ctx, worker, fAgain, fmt.Sprintf("ingest-again-r%d", round), one)
		if after := lastModified(e, ctx, blob); !after.Equal(before) {
			e.T.Fatalf("re-registering identical bytes wrote blob %s again (%s, was %s)", blob, after, before)
		}
		fAgain.Registry = append(fAgain.Registry, 1/el.Seconds())
		fAgain.Note("seconds", el.Seconds())
	}
	r.Add(fOne)
	r.Add(fMany)
	r.Add(fAgain)

	// The rate against the artifact's size, for docs/benchmarks.md's plot: smaller sizes once each, the
	// full size from the rounds above.
	var curve []CurvePoint
	for _, n := range []int64{size / 16, size / 4} {
		if n < 8<<20 {
			continue
		}
		dir := filepath.Join(e.Dir, fmt.Sprintf("ingest-curve-%d", n>>20))
		writeRandomFiles(e, dir, []int64{n})
		restamp(e, dir, 1000+int(n>>20))
		m := float64(n) / (1 << 20)
		t := baselineUpload(e, ctx, best, dir, fmt.Sprintf("baseline/curve/%d", n>>20))
		el := register(e, ctx, worker, &Figure{}, fmt.Sprintf("ingest-curve-%d", n>>20), dir)
		curve = append(curve, CurvePoint{X: m, Registry: m / el.Seconds(), Baseline: m / t.Seconds()})
		os.RemoveAll(dir)
	}
	curve = append(curve, CurvePoint{X: mib, Registry: fOne.Median, Baseline: fOne.BaseMedian})
	if r.Curves == nil {
		r.Curves = map[string][]CurvePoint{}
	}
	r.Curves["ingest_one_file_mib_per_s"] = curve
}

// register runs the starter as a training job does and returns its time to PendingApproval, noting the
// peak RSS of the starter and of the worker.
func register(e *Env, ctx context.Context, worker *Process, f *Figure, model, dir string) time.Duration {
	worker.ResetPeak()
	out, el, rss, err := e.RunStarter(ctx, "register", "--model", model, "--dir", dir, "--idempotency-key", model, "--wait")
	if err != nil {
		e.T.Fatal(err)
	}
	if !strings.Contains(out, "PendingApproval") {
		e.T.Fatalf("register %s did not reach PendingApproval:\n%s", model, out)
	}
	f.Note("starter_rss_mib", rss)
	f.Note("worker_rss_mib", worker.PeakRSSMiB())
	e.logf("ingest %s: %s", model, el.Round(time.Millisecond))
	return el
}

// sweep uploads the file with each manager, part size and concurrency once and returns the fastest.
func sweep(e *Env, r *Report, ctx context.Context, path string, size int64) uploader {
	var sizes []int64
	var concs []int
	if e.Opts.Short {
		sizes, concs = []int64{8 << 20}, []int{2, 4}
	} else {
		sizes, concs = []int64{16 << 20, 32 << 20, 64 << 20, 128 << 20}, []int{2, 4, 8}
	}
	raw := e.Store.Client()
	var all []uploader
	for _, ps := range sizes {
		for _, c := range concs {
			//lint:ignore SA1019 the deprecated upload manager is what most deployments still run: a baseline, not a dependency of the registry
			up := manager.NewUploader(raw, func(u *manager.Uploader) { u.PartSize, u.Concurrency = ps, c })
			all = append(all, uploader{name: "feature/s3/manager", partSize: ps, concurrency: c, put: func(ctx context.Context, key, path string) error {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				//lint:ignore SA1019 see above
				_, err = up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(key), Body: f})
				return err
			}})
			tm := transfermanager.New(raw, func(o *transfermanager.Options) { o.PartSizeBytes, o.Concurrency = ps, c })
			all = append(all, uploader{name: "feature/s3/transfermanager", partSize: ps, concurrency: c, put: func(ctx context.Context, key, path string) error {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(key), Body: f})
				return err
			}})
		}
	}
	measure := func(i int, u uploader) float64 {
		key := fmt.Sprintf("sweep/%d", i)
		t0 := time.Now()
		if err := u.put(ctx, key, path); err != nil {
			e.T.Fatalf("baseline %s %d MiB × %d: %v", u.name, u.partSize>>20, u.concurrency, err)
		}
		rate := float64(size) / (1 << 20) / time.Since(t0).Seconds()
		e.logf("sweep %s %d MiB × %d: %.0f MiB/s", u.name, u.partSize>>20, u.concurrency, rate)
		deleteObject(e, ctx, key)
		return rate
	}
	rates := make([]float64, len(all))
	for i, u := range all {
		rates[i] = measure(i, u)
		r.Sweep = append(r.Sweep, SweepPoint{Manager: u.name, PartMiB: u.partSize >> 20, Concurrency: u.concurrency, MiBps: rates[i]})
	}
	// One upload each is noisy on a shared machine, and the single best of many noisy figures is
	// biased upwards: the three fastest are measured twice more and the best median is the baseline.
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(rates[b], rates[a]) })
	best, bestMedian := all[order[0]], 0.0
	for _, i := range order[:min(3, len(order))] {
		m := median([]float64{rates[i], measure(i, all[i]), measure(i, all[i])})
		if m > bestMedian {
			best, bestMedian = all[i], m
		}
	}
	return best
}

// baselineUpload uploads every file of dir, one after another, and deletes them again.
func baselineUpload(e *Env, ctx context.Context, u uploader, dir, prefix string) time.Duration {
	entries, err := os.ReadDir(dir)
	if err != nil {
		e.T.Fatal(err)
	}
	t0 := time.Now()
	for _, de := range entries {
		if err := u.put(ctx, prefix+"/"+de.Name(), filepath.Join(dir, de.Name())); err != nil {
			e.T.Fatalf("baseline upload of %s: %v", de.Name(), err)
		}
	}
	el := time.Since(t0)
	for _, de := range entries {
		deleteObject(e, ctx, prefix+"/"+de.Name())
	}
	return el
}

func deleteObject(e *Env, ctx context.Context, key string) {
	if _, err := e.Store.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(key)}); err != nil {
		e.T.Fatalf("delete %s: %v", key, err)
	}
}

// blobKeyOf is the store key of the first file of version 1 of model.
func blobKeyOf(e *Env, ctx context.Context, model string) string {
	m, _, err := e.Store.GetManifest(ctx, model, 1)
	if err != nil || len(m.Files) == 0 {
		e.T.Fatalf("manifest of %s v1: %v (%d files)", model, err, len(m.Files))
	}
	return strings.TrimPrefix(e.Store.BlobURI(m.Files[0].SHA256), "s3://"+e.Bucket+"/")
}

func lastModified(e *Env, ctx context.Context, key string) time.Time {
	out, err := e.Store.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(key)})
	if err != nil {
		e.T.Fatalf("head %s: %v", key, err)
	}
	return aws.ToTime(out.LastModified)
}

// writeRandomFiles writes files of the given sizes into dir, of random bytes (incompressible, and
// unlike each other).
func writeRandomFiles(e *Env, dir string, sizes []int64) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.T.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{42})
	buf := make([]byte, 4<<20)
	for i, n := range sizes {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%04d.bin", i)))
		if err != nil {
			e.T.Fatal(err)
		}
		for left := n; left > 0; {
			b := buf[:min(left, int64(len(buf)))]
			_, _ = rng.Read(b)
			if _, err := f.Write(b); err != nil {
				e.T.Fatal(err)
			}
			left -= int64(len(b))
		}
		if err := f.Close(); err != nil {
			e.T.Fatal(err)
		}
	}
}

// restamp makes every file of dir differ from what earlier rounds stored, by its first bytes.
func restamp(e *Env, dir string, round int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		e.T.Fatal(err)
	}
	var stamp [16]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(round))
	binary.BigEndian.PutUint64(stamp[8:], uint64(time.Now().UnixNano()))
	for _, de := range entries {
		f, err := os.OpenFile(filepath.Join(dir, de.Name()), os.O_WRONLY, 0)
		if err != nil {
			e.T.Fatal(err)
		}
		if _, err := f.WriteAt(stamp[:], 0); err != nil {
			e.T.Fatal(err)
		}
		f.Close()
	}
}

func sizeName(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}
