package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
	"github.com/modelreg/modelreg/workflows"
)

// Env is the production shape the suites run in: PostgreSQL, versitygw and a Temporal dev server on
// loopback, the registry's worker as its own process (built from this checkout), and clients of each.
type Env struct {
	T     testenv.TB
	Opts  Options
	Dir   string
	PGURL string
	S3    testenv.S3Server
	// TemporalAddress is the dev server's frontend (host:port).
	TemporalAddress string
	Bucket          string
	// WorkerBin and StarterBin are the registry's binaries built for the run; NoopWorkerBin is the
	// orchestration suite's baseline worker (tests/bench/noopworker).
	WorkerBin, StarterBin, NoopWorkerBin string
	// BaseEnv is the environment of the worker and starter processes.
	BaseEnv []string
	Catalog *catalog.Catalog
	Store   *artifact.S3
	Client  client.Client

	worker *Process
}

func newEnv(t testenv.TB, opts Options) *Env {
	e := &Env{T: t, Opts: opts, Dir: t.TempDir(), Bucket: "registry"}
	e.logf("starting PostgreSQL, versitygw and Temporal")
	e.PGURL = testenv.Postgres(t)
	e.S3 = testenv.S3(t)
	srv := testenv.Temporal(t, "")
	e.TemporalAddress = srv.Address
	e.buildBinaries()

	ctx := context.Background()
	st, err := artifact.NewS3(ctx, e.s3Config(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	e.Store = st
	cat, err := catalog.Open(ctx, e.PGURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	if err := cat.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e.Catalog = cat
	c, err := client.Dial(client.Options{HostPort: e.TemporalAddress, DataConverter: workflows.NewDataConverter(), Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.Client = c
	e.BaseEnv = append(os.Environ(),
		"TEMPORAL_ADDRESS="+e.TemporalAddress,
		"TEMPORAL_NAMESPACE=default",
		"MODELREG_DATA_DIR="+filepath.Join(e.Dir, "data"),
		"MODELREG_DATABASE_URL="+e.PGURL,
		"MODELREG_S3_BUCKET="+e.Bucket,
		"MODELREG_S3_ENDPOINT="+e.S3.Endpoint,
		"MODELREG_S3_REGION="+e.S3.Region,
		"MODELREG_S3_ACCESS_KEY_ID="+e.S3.AccessKey,
		"MODELREG_S3_SECRET_ACCESS_KEY="+e.S3.SecretKey,
		"MODELREG_S3_PATH_STYLE=true",
	)
	return e
}

func (e *Env) s3Config(partSize int64, concurrency int) artifact.S3Config {
	return artifact.S3Config{Bucket: e.Bucket, Endpoint: e.S3.Endpoint, Region: e.S3.Region,
		AccessKeyID: e.S3.AccessKey, SecretAccessKey: e.S3.SecretKey, PathStyle: true,
		PartSize: partSize, Concurrency: concurrency}
}

func (e *Env) logf(format string, args ...any) {
	if e.Opts.Verbose {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// buildBinaries builds the worker and the starter of this checkout, as a user's deployment runs them,
// and the baseline's worker. (The baseline is a binary of its own rather than a mode of this command:
// under go test, this command's code runs inside the test binary, which cannot be started as a worker.)
func (e *Env) buildBinaries() {
	root, err := moduleRoot()
	if err != nil {
		e.T.Fatal(err)
	}
	out := e.T.TempDir()
	e.WorkerBin, e.StarterBin, e.NoopWorkerBin = filepath.Join(out, "worker"), filepath.Join(out, "starter"), filepath.Join(out, "noopworker")
	for bin, pkg := range map[string]string{e.WorkerBin: "./worker", e.StarterBin: "./starter", e.NoopWorkerBin: "./tests/bench/noopworker"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			e.T.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
}

func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run the benchmark from the modelreg repository (go run ./tests/bench)")
	}
	return filepath.Dir(gomod), nil
}

// Process is a child process whose peak RSS can be read and reset.
type Process struct {
	Cmd *exec.Cmd
	Log string
}

// StartWorker starts the registry's worker with extra environment and waits until it polls.
func (e *Env) StartWorker(extra ...string) *Process {
	if e.worker != nil {
		e.StopWorker()
	}
	p := e.startProcess("worker", e.WorkerBin, nil, append(slicesClone(e.BaseEnv), extra...))
	e.worker = p
	e.waitStarted(p, "worker started")
	return p
}

// StopWorker stops the worker the way an operator does (SIGINT, then SIGKILL after 15 s).
func (e *Env) StopWorker() {
	if e.worker != nil {
		e.worker.Stop()
		e.worker = nil
	}
}

func (e *Env) startProcess(name, bin string, args, env []string) *Process {
	logPath := filepath.Join(e.Dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		e.T.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		e.T.Fatal(err)
	}
	f.Close()
	p := &Process{Cmd: cmd, Log: logPath}
	e.T.Cleanup(p.Stop)
	return p
}

// Stop interrupts the process and waits for it.
func (p *Process) Stop() {
	if p.Cmd.ProcessState != nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-done
	}
}

// PeakRSSMiB is the process's peak resident set size (VmHWM) since it started or since ResetPeak.
func (p *Process) PeakRSSMiB() float64 { return p.statusMiB("VmHWM:") }

// RSSMiB is the process's resident set size now (VmRSS): what a process holds while it waits, which its
// peak, set by whatever it did before, cannot tell.
func (p *Process) RSSMiB() float64 { return p.statusMiB("VmRSS:") }

// statusMiB reads a field in kB of the process's /proc status, in MiB (0 once the process is gone).
func (p *Process) statusMiB(field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// ResetPeak makes PeakRSSMiB start again from the current RSS (Linux's clear_refs 5), so a figure
// measures what one step costs rather than the process's whole life.
func (p *Process) ResetPeak() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Cmd.Process.Pid), []byte("5"), 0)
}

// CPUSeconds is the user+system CPU time the process has used so far.
func (p *Process) CPUSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces, within parentheses).
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// RunStarter runs the starter with args and returns its output, wall time and peak RSS.
//
// The peak is read from /proc while the starter runs, not from its rusage: Go starts a child with
// CLONE_VM, and Linux records the parent's memory high-water mark at exec as the child's ru_maxrss, so
// that figure is this process's RSS, not the starter's.
func (e *Env) RunStarter(ctx context.Context, args ...string) (out string, elapsed time.Duration, rssMiB float64, err error) {
	cmd := exec.CommandContext(ctx, e.StarterBin, args...)
	cmd.Env = e.BaseEnv
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return "", 0, 0, err
	}
	p := &Process{Cmd: cmd}
	done := make(chan struct{})
	peak := make(chan float64, 1)
	go func() {
		var max float64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if v := p.PeakRSSMiB(); v > max {
				max = v
			}
			select {
			case <-done:
				peak <- max
				return
			case <-t.C:
			}
		}
	}()
	err = cmd.Wait()
	elapsed = time.Since(t0)
	close(done)
	rssMiB = <-peak
	if err != nil {
		err = fmt.Errorf("starter %s: %v\n%s", strings.Join(args, " "), err, buf.String())
	}
	return buf.String(), elapsed, rssMiB, err
}

// waitStarted waits until the process logs that it started (after its worker polls), so that a
// measurement does not include its start. (A task queue's poller list keeps a stopped worker for
// minutes, so it cannot tell.)
func (e *Env) waitStarted(p *Process, line string) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.Log)
		if bytes.Contains(b, []byte(line)) {
			return
		}
		if p.Cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(p.Log)
	e.T.Fatalf("%s did not log %q within 60 s:\n%s", p.Cmd.Path, line, tailBytes(b, 4000))
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
