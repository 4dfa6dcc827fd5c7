package tests

import (
	"context"
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

// The starter rides out an S3 outage with retries and backoff, as the worker does, instead of giving
// up on the first refused connection.
func TestStarterRidesOutStoreOutage(t *testing.T) {
	f := newFaultHarness(t)
	run := filepath.Join(f.dir, "run")
	writeFiles(t, run, map[string]string{"model.bin": "weights through an outage", "config.json": "{}"})
	f.s3o.Stop()
	type result struct {
		out, errOut string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, err := f.starter("register", "--model", "outage", "--dir", run)
		done <- result{out, errOut, err}
	}()
	// The store stays down long enough for a starter without retries to have failed many times over.
	select {
	case r := <-done:
		t.Fatalf("the starter ended while the store was down: %v\nstdout: %s\nstderr: %s", r.err, r.out, r.errOut)
	case <-time.After(8 * time.Second):
	}
	if err := f.s3o.Start(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !strings.Contains(r.out, "registered outage v1") {
		t.Fatalf("register across a store outage: %v\nstdout: %s\nstderr: %s", r.err, r.out, r.errOut)
	}
	f.waitStage("outage", 1, "PendingApproval")
}

// A 5 GiB file registers against the tests' S3 server (versitygw): with the SDK's fixed 5 MiB parts it
// took 1,024 parts. Sparse, so it costs no disk on the client side; the server stores it whole, so the
// test wants ~11 GiB free and takes over a minute: it runs with MODELREG_TEST_5GIB=1 (CONTRIBUTING.md).
func TestRegisterFiveGiBFile(t *testing.T) {
	if os.Getenv("MODELREG_TEST_5GIB") != "1" {
		t.Skip("set MODELREG_TEST_5GIB=1 to register a 5 GiB file (takes over a minute, needs ~11 GiB of free disk)")
	}
	h := newHarness(t)
	run := filepath.Join(h.dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	const size = 5 << 30
	p := filepath.Join(run, "model.bin")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// A few non-zero bytes so the content is not the all-zero blob some other test might store.
	if _, err := fh.WriteAt([]byte("modelreg 5 GiB "+strconv.FormatInt(time.Now().UnixNano(), 10)), size/2); err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	start := time.Now()
	out, errOut, err := h.starterTimeout(30*time.Minute, "register", "--model", "huge", "--dir", run)
	if err != nil {
		t.Fatalf("register a 5 GiB file: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	t.Logf("uploaded and registered 5 GiB in %s", time.Since(start).Round(time.Second))
	m := waitManifest(t, h, "huge", 1)
	if len(m.Files) != 1 || m.Files[0].Size != size {
		t.Fatalf("manifest %+v, want one file of %d bytes", m.Files, int64(size))
	}
	ups, err := h.store.(*artifact.S3).Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(h.bucket)})
	if err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("unfinished multipart uploads after the registration: %v %v", ups, err)
	}
}

func waitManifest(t *testing.T, h *harness, model string, version int) artifact.Manifest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		m, _, err := h.store.GetManifest(context.Background(), model, version)
		if err == nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no manifest for %s v%d: %v", model, version, err)
		}
		time.Sleep(time.Second)
	}
}

// Ctrl-C during `starter register` aborts the multipart upload in flight instead of leaving its parts on
// the server (the abort used to run with the cancelled context, and failed).
func TestStarterInterruptedAbortsUpload(t *testing.T) {
	h := newHarness(t)
	run := filepath.Join(h.dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRandomFile(t, filepath.Join(run, "model.bin"), 256<<20)
	ctx := context.Background()
	client := h.store.(*artifact.S3).Client()
	unfinished := func() int {
		t.Helper()
		out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(h.bucket)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Uploads)
	}
	// Small parts one at a time (every file in parts), so the upload is surely in flight when the signal comes.
	cmd := exec.Command(bins.starter, "register", "--model", "interrupted", "--dir", run)
	cmd.Env = append(h.env, "MODELREG_S3_PART_SIZE_MIB=5", "MODELREG_S3_MULTIPART_THRESHOLD_MIB=0", "MODELREG_S3_CONCURRENCY=1")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for unfinished() == 0 {
		select {
		case err := <-exited:
			t.Fatalf("the starter ended before its upload could be interrupted: %v\n%s\n%s", err, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no multipart upload started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Fatalf("an interrupted register succeeded: %s", out.String())
	}
	if n := unfinished(); n != 0 {
		t.Fatalf("an interrupted register left %d unfinished multipart uploads\nstderr: %s", n, errOut.String())
	}
}
