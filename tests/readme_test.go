package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/testenv"
)

// walkthroughMarker precedes each README code block that TestREADMEWalkthrough runs.
const walkthroughMarker = "<!-- walkthrough"

// walkthroughCommands returns the commands of README.md's marked code blocks, in order: comment and
// blank lines dropped, backslash continuations joined.
func walkthroughCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	blocks := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if !strings.HasPrefix(strings.TrimSpace(sc.Text()), walkthroughMarker) {
			continue
		}
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "```") {
			t.Fatalf("README.md: %s is not followed by a code block", walkthroughMarker)
		}
		blocks++
		closed := false
		cur := ""
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "```") {
				closed = true
				break
			}
			trimmed := strings.TrimSpace(line)
			if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
				continue
			}
			if strings.HasSuffix(line, `\`) {
				cur += strings.TrimSuffix(line, `\`) + " "
				continue
			}
			cmds = append(cmds, strings.TrimSpace(cur+line))
			cur = ""
		}
		if !closed || cur != "" {
			t.Fatal("README.md: a walk-through code block ends inside a command or is not closed")
		}
	}
	if blocks == 0 || len(cmds) < 10 {
		t.Fatalf("README.md has %d walk-through blocks with %d commands; the marker %q was lost?", blocks, len(cmds), walkthroughMarker)
	}
	return cmds
}

var stepLine = regexp.MustCompile(`(?m)^### walkthrough step (\d+)$`)

// TestREADMEWalkthrough runs the README's walk-through as a user pastes it — the commands taken from
// README.md, not copied here — with bash, in a fresh directory where `worker --dev` runs with its
// embedded default, the starter and the temporal CLI on PATH. Any command that fails fails the test.
func TestREADMEWalkthrough(t *testing.T) {
	buildBinaries(t)
	cmds := walkthroughCommands(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("the walk-through is a bash session and needs bash: ", err)
	}

	dir := t.TempDir()
	port, uiPort, httpPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	// ./.modelreg of dir: where `go run ./worker --dev` run in dir keeps the embedded default.
	stop := startDevWorker(t, filepath.Join(dir, ".modelreg"), port, uiPort, httpPort)
	defer stop()

	// As the README's setup leaves it: `starter` and `temporal` on PATH; TEMPORAL_ADDRESS because this
	// dev server is on a free port rather than 7233 (both tools read it).
	binDir := t.TempDir()
	for name, target := range map[string]string{"starter": bins.starter, "temporal": testenv.TemporalBinary(t)} {
		if err := os.Symlink(target, filepath.Join(binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MODELREG_") && !strings.HasPrefix(kv, "TEMPORAL_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		fmt.Sprintf("TEMPORAL_ADDRESS=127.0.0.1:%d", port), "TEMPORAL_CLI_SHOW_STACKS=0")

	var script strings.Builder
	script.WriteString("set -eo pipefail\n")
	for i, c := range cmds {
		// The HTTP API's documented address, moved to this worker's free port.
		c = strings.ReplaceAll(c, "127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", httpPort))
		fmt.Fprintf(&script, "echo '### walkthrough step %d'\n%s\n", i, c)
	}
	// A bound on the whole session (a stuck `until` loop), not an assertion about its duration.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-c", script.String())
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if runErr != nil {
		step := -1
		if m := stepLine.FindAllStringSubmatch(out.String(), -1); len(m) > 0 {
			step, _ = strconv.Atoi(m[len(m)-1][1])
		}
		failed := "(before the first command)"
		if step >= 0 && step < len(cmds) {
			failed = cmds[step]
		}
		t.Fatalf("README walk-through command failed (%v):\n  %s\noutput:\n%s", runErr, failed, out.String())
	}
	t.Logf("README walk-through output:\n%s", out.String())

	// What the walk-through's comments promise at its end.
	for _, want := range []string{
		"fraud: v1 is in production again (v2 archived)",
		"every size and SHA-256 verified",
		"fraud v2 was in production at",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the walk-through's output lacks %q", want)
		}
	}
	if n := len(stepLine.FindAllString(out.String(), -1)); n != len(cmds) {
		t.Errorf("%d of %d commands ran", n, len(cmds))
	}
}
