package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A SIGKILLed worker's partial import files are removed when a worker starts, and a live worker's are
// not: production runs several workers on one task queue, often on one host.
func TestWorkerRemovesOnlyDeadWorkersTempFiles(t *testing.T) {
	h := newHarness(t)
	h.stopWorker()
	tmp := filepath.Join(h.dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	h.env = append(h.env, "TMPDIR="+tmp)

	// start runs a worker and returns it once it is polling, with the directory it created for imports
	// (whatever its layout: the one that appeared under TMPDIR while it started).
	start := func(name string) (*exec.Cmd, string) {
		t.Helper()
		before := dirsUnder(t, tmp)
		logPath := filepath.Join(h.dir, name+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd := exec.Command(bins.worker)
		cmd.Env, cmd.Stdout, cmd.Stderr = h.env, logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		deadline := time.Now().Add(time.Minute)
		for {
			b, _ := os.ReadFile(logPath)
			if strings.Contains(string(b), `"msg":"worker started"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %s did not start:\n%s", name, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		var mine []string
		for d := range dirsUnder(t, tmp) {
			if !before[d] {
				mine = append(mine, d)
			}
		}
		// The deepest new directory is the worker's own (a shared base may appear with it).
		own := ""
		for _, d := range mine {
			if len(d) > len(own) {
				own = d
			}
		}
		if own == "" {
			t.Fatalf("worker %s created no directory under TMPDIR", name)
		}
		return cmd, own
	}
	partial := func(dir string) string {
		t.Helper()
		p := filepath.Join(dir, "import-partial")
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	_, liveDir := start("live")
	liveFile := partial(liveDir)
	killed, deadDir := start("killed")
	deadFile := partial(deadDir)
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = killed.Process.Wait()

	_, newDir := start("next")
	if _, err := os.Stat(deadFile); !os.IsNotExist(err) {
		t.Errorf("the SIGKILLed worker's partial import %s is still there after a worker started (stat: %v)", deadFile, err)
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("the SIGKILLed worker's directory %s is still there (stat: %v)", deadDir, err)
	}
	if _, err := os.Stat(liveFile); err != nil {
		t.Errorf("a starting worker removed a live worker's import file %s: %v", liveFile, err)
	}
	if _, err := os.Stat(newDir); err != nil {
		t.Errorf("the new worker's own directory: %v", err)
	}
}

// dirsUnder lists the directories under root, two levels deep.
func dirsUnder(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(root, e.Name())
		out[p] = true
		sub, _ := os.ReadDir(p)
		for _, s := range sub {
			if s.IsDir() {
				out[filepath.Join(p, s.Name())] = true
			}
		}
	}
	return out
}
