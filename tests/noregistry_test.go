package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/testenv"
)

// TestStarterOutsideTheRegistry: a starter run in a directory with no .modelreg, while `worker --dev`
// runs elsewhere, must say that no registry is there and how to point at one — not create an empty
// catalog and store of its own, print empty lists, or register a version the worker cannot store.
func TestStarterOutsideTheRegistry(t *testing.T) {
	buildBinaries(t)
	root := t.TempDir()
	regDir := filepath.Join(root, "registry")
	dataDir := filepath.Join(regDir, ".modelreg")
	elsewhere := filepath.Join(root, "elsewhere")
	for _, d := range []string{regDir, elsewhere} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port, uiPort := testenv.FreePort(t), testenv.FreePort(t)
	stop := startDevWorker(t, dataDir, port, uiPort)
	defer stop()
	h := &harness{t: t, dir: root, temporal: testenv.TemporalBinary(t), address: fmt.Sprintf("127.0.0.1:%d", port)}

	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MODELREG_") && !strings.HasPrefix(kv, "TEMPORAL_") {
			env = append(env, kv)
		}
	}
	env = append(env, "TEMPORAL_ADDRESS="+h.address)
	run := func(dir string, extraEnv []string, args ...string) (string, string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bins.starter, args...)
		cmd.Dir = dir
		cmd.Env = append(append([]string(nil), env...), extraEnv...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}

	writeFiles(t, filepath.Join(elsewhere, "run"), map[string]string{"model.bin": "weights"})
	for _, args := range [][]string{
		{"list"},
		{"production", "--model", "fraud"},
		{"policy", "set", "--model", "fraud", "--threshold", "accuracy>=0.9"},
		{"history", "--model", "fraud"},
		{"register", "--model", "fraud", "--dir", "run", "--wait"},
		{"check"},
	} {
		out, errOut, err := run(elsewhere, nil, args...)
		if code := checkExitCode(err); code != 1 {
			t.Errorf("starter %s outside the registry exited %d, want 1:\n%s%s", strings.Join(args, " "), code, out, errOut)
			continue
		}
		for _, want := range []string{"no registry here", filepath.Join(elsewhere, ".modelreg"), "worker --dev", "MODELREG_DATA_DIR", "MODELREG_DATABASE_URL"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("starter %s: the error does not say %q:\n%s", strings.Join(args, " "), want, errOut)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(elsewhere, ".modelreg")); !os.IsNotExist(err) {
		t.Errorf("the starter created a registry outside the worker's directory: %v", err)
	}
	// Nothing reached Temporal: no model workflow, so no version was minted and burnt.
	if out, err := h.cli("workflow", "describe", "--workflow-id", "model/fraud"); err == nil {
		t.Errorf("a model workflow was started from outside the registry:\n%s", out)
	}

	// Pointed at the registry, the same commands work from anywhere.
	if out, errOut, err := run(elsewhere, []string{"MODELREG_DATA_DIR=" + dataDir}, "list"); err != nil {
		t.Fatalf("starter list with MODELREG_DATA_DIR: %v\n%s%s", err, out, errOut)
	}
	if out, errOut, err := run(regDir, nil, "list"); err != nil {
		t.Fatalf("starter list in the registry's directory: %v\n%s%s", err, out, errOut)
	}
}
