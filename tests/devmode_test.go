package tests

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/testenv"
)

// devWorker runs `worker --dev` the way the README says, on free ports, and returns the environment a
// starter in the same directory needs.
func startDevWorker(t *testing.T, dataDir string, port, uiPort int, httpPort ...int) (stop func()) {
	t.Helper()
	// --dev serves the HTTP API on 127.0.0.1:8080 unless told otherwise; tests run side by side.
	hp := testenv.FreePort(t)
	if len(httpPort) > 0 {
		hp = httpPort[0]
	}
	cmd := exec.Command(bins.worker, "--dev", "--data-dir", dataDir, "--dev-port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", hp))
	cmd.Env = append(os.Environ(), "MODELREG_TEMPORAL_BIN="+testenv.TemporalBinary(t))
	logPath := filepath.Join(dataDir, "..", fmt.Sprintf("worker-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
	}
	// Ready when the worker says so.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), `"msg":"worker started"`) {
			return stop
		}
		select {
		case <-done:
			t.Fatalf("worker --dev exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("worker --dev not ready in 2 minutes:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestEmbeddedDefault runs the registry with `worker --dev` (Temporal dev server with Web UI, SQLite
// catalog, directory store, all under one data directory) and drives a version to production across a
// restart of the whole registry.
func TestEmbeddedDefault(t *testing.T) {
	buildBinaries(t)
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	port, uiPort := testenv.FreePort(t), testenv.FreePort(t)
	stop := startDevWorker(t, dataDir, port, uiPort)
	defer func() { stop() }()

	h := &harness{t: t, dir: root, temporal: testenv.TemporalBinary(t), address: fmt.Sprintf("127.0.0.1:%d", port)}
	h.env = append(os.Environ(), "MODELREG_DATA_DIR="+dataDir, "TEMPORAL_ADDRESS="+h.address)

	// The Web UI answers (it may come up a moment after the frontend).
	waitFor(t, func() (string, bool) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", uiPort))
		if err != nil {
			return err.Error(), false
		}
		resp.Body.Close()
		return resp.Status, resp.StatusCode == http.StatusOK
	})

	dir := filepath.Join(root, "run")
	writeFiles(t, dir, map[string]string{"model.bin": "tiny weights", "metrics.json": `{"accuracy": 0.91}`})
	start := time.Now()
	out := h.mustStarter("register", "--model", "iris", "--dir", dir, "--metrics", filepath.Join(dir, "metrics.json"), "--wait")
	t.Logf("register -> PendingApproval on the embedded default: %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "PendingApproval") {
		t.Fatalf("register:\n%s", out)
	}
	// Search attributes are registered by the dev server the worker started.
	if ids := h.listIDs(`ModelName="iris" AND ModelStage="PendingApproval"`); len(ids) != 1 {
		t.Fatalf("list by search attribute: %v", ids)
	}

	// Everything survives a restart of the registry: workflows, catalog, artifacts.
	stop()
	stop = startDevWorker(t, dataDir, port, uiPort)
	out = h.mustStarter("approve", "--model", "iris", "--version", "1", "--approver", "alice")
	if !strings.Contains(out, "Approved") {
		t.Fatalf("approve:\n%s", out)
	}
	h.waitStage("iris", 1, "Production")
	out = h.mustStarter("production", "--model", "iris")
	if !strings.Contains(out, "iris v1") || !strings.Contains(out, "file://"+dataDir) {
		t.Fatalf("production:\n%s", out)
	}
	out = h.mustStarter("list", "--model", "iris")
	if !strings.Contains(out, "Production") {
		t.Fatalf("list:\n%s", out)
	}
	for _, p := range []string{"temporal.db", "catalog.db", "artifacts/manifests/iris/v1/manifest.json"} {
		if _, err := os.Stat(filepath.Join(dataDir, p)); err != nil {
			t.Errorf("embedded default file: %v", err)
		}
	}
}
