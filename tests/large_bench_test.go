package tests

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/artifact"
)

// BenchmarkLargeArtifact measures peak RSS of the starter and of the worker (against an external Temporal
// server, PostgreSQL and versitygw) while a large artifact is registered and validated, from a directory
// and from an s3:// prefix. The baseline is the same registration of a 1 KiB artifact in the same run.
//
//	MODELREG_LARGE_BYTES=2147483648 go test ./tests -run '^$' -bench LargeArtifact -benchtime 1x
func BenchmarkLargeArtifact(b *testing.B) {
	size := int64(256 << 20)
	if v := os.Getenv("MODELREG_LARGE_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	h := newHarness(b)
	ctx := context.Background()
	raw := h.store.(*artifact.S3).Client()
	if _, err := raw.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("training")}); err != nil {
		b.Fatal(err)
	}
	type result struct {
		starterKiB, workerKiB int64
		elapsed               time.Duration
	}
	run := func(name string, n int64, fromS3 bool) result {
		dir := filepath.Join(h.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "model.bin")
		writeRandomFile(b, path, n)
		// A fresh worker, so its high-water mark belongs to this registration alone.
		h.stopWorker()
		h.startWorker()
		args := []string{"register", "--model", "big", "--idempotency-key", name, "--wait"}
		if fromS3 {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			// One PUT (up to S3's 5 GiB): the bytes only have to be there for the import.
			_, err = raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("training"), Key: aws.String(name + "/model.bin"), Body: f, ContentLength: aws.Int64(n)})
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			args = append(args, "--source", "s3://training/"+name)
		} else {
			args = append(args, "--dir", dir)
		}
		start := time.Now()
		cmd := exec.Command(bins.starter, args...)
		cmd.Env = h.env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		// The starter's peak is read from /proc while it runs: its rusage would be this process's, since
		// Go starts children with CLONE_VM and Linux records the parent's high-water mark at exec.
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var peak int64
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
	poll:
		for {
			if v := liveVmHWM(cmd.Process.Pid); v > peak {
				peak = v
			}
			select {
			case err = <-done:
				break poll
			case <-time.After(5 * time.Millisecond):
			}
		}
		if err != nil || !strings.Contains(out.String(), "PendingApproval") {
			b.Fatalf("register %s: %v\n%s", name, err, out.String())
		}
		r := result{elapsed: time.Since(start), starterKiB: peak}
		r.workerKiB = vmHWM(b, h.worker.Process.Pid)
		os.RemoveAll(dir)
		return r
	}
	for i := 0; i < b.N; i++ {
		baseDir := run(fmt.Sprintf("small-dir-%d", i), 1<<10, false)
		bigDir := run(fmt.Sprintf("large-dir-%d", i), size, false)
		baseS3 := run(fmt.Sprintf("small-s3-%d", i), 1<<10, true)
		bigS3 := run(fmt.Sprintf("large-s3-%d", i), size, true)
		mib := func(kib int64) float64 { return float64(kib) / 1024 }
		b.ReportMetric(mib(bigDir.starterKiB), "starter-peak-MiB")
		b.ReportMetric(mib(bigDir.workerKiB), "worker-dir-peak-MiB")
		b.ReportMetric(mib(bigS3.workerKiB), "worker-s3-peak-MiB")
		b.ReportMetric(float64(bigDir.starterKiB)/float64(baseDir.starterKiB), "starter-x-baseline")
		b.ReportMetric(float64(bigDir.workerKiB)/float64(baseDir.workerKiB), "worker-dir-x-baseline")
		b.ReportMetric(float64(bigS3.workerKiB)/float64(baseS3.workerKiB), "worker-s3-x-baseline")
		b.Logf("%d bytes: dir register->PendingApproval %s (starter %.0f MiB, worker %.0f MiB; 1 KiB baseline %.0f / %.0f MiB); "+
			"s3 source %s (worker %.0f MiB; baseline %.0f MiB)", size, bigDir.elapsed.Round(time.Millisecond),
			mib(bigDir.starterKiB), mib(bigDir.workerKiB), mib(baseDir.starterKiB), mib(baseDir.workerKiB),
			bigS3.elapsed.Round(time.Millisecond), mib(bigS3.workerKiB), mib(baseS3.workerKiB))
	}
}

// writeRandomFile writes n pseudo-random bytes (incompressible, so no layer can cheat).
func writeRandomFile(tb testing.TB, path string, n int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	seed := uint64(0)
	for _, c := range path {
		seed = seed*31 + uint64(c)
	}
	// Seeded by path, so two runs never share blobs and every upload really happens.
	rng := rand.New(rand.NewPCG(uint64(n), seed))
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		k := int64(len(buf))
		if left < k {
			k = left
		}
		if _, err := f.Write(buf[:k]); err != nil {
			tb.Fatal(err)
		}
		left -= k
	}
}

// liveVmHWM is vmHWM of a process that may have exited (0 then).
func liveVmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// vmHWM is a live process's peak resident set size in KiB.
func vmHWM(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	tb.Fatalf("no VmHWM for pid %d", pid)
	return 0
}
