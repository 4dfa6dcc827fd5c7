package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"
)

// upgradeBase is the release the upgrade test starts from: the last commit before the lifecycle's
// behaviour versions (model-behaviour, version-behaviour) came in. MODELREG_UPGRADE_BASE names another
// (a later release, once there is one).
const upgradeBase = "9676e49"

// buildRelease builds the worker and starter of an earlier commit of this repository, as the binaries a
// user's running deployment has.
func buildRelease(t *testing.T, rev string) (worker, starter string) {
	t.Helper()
	if err := exec.Command("git", "-C", "..", "cat-file", "-e", rev+"^{commit}").Run(); err != nil {
		t.Fatalf("commit %s is not in this clone (the upgrade test needs the repository's history; set MODELREG_UPGRADE_BASE to a commit it has): %v", rev, err)
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", fmt.Sprintf("git -C .. archive %s | tar -x -C %s", rev, src))
	if b, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", rev, err, b)
	}
	out := t.TempDir()
	worker, starter = filepath.Join(out, "worker"), filepath.Join(out, "starter")
	for bin, pkg := range map[string]string{worker: "./worker", starter: "./starter"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = src
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s of %s: %v\n%s", pkg, rev, err, b)
		}
	}
	return worker, starter
}

// TestUpgradeFromPreviousRelease is a user's deploy: lifecycles in every waiting stage are started by the
// previous release's worker (Validating with a CI gate, PendingApproval with a quorum half met,
// Production, Archived), that worker is stopped, this release's worker starts on the same catalog, store
// and Temporal, and every lifecycle then finishes correctly while the catalog is migrated in place.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	base := upgradeBase
	if v := os.Getenv("MODELREG_UPGRADE_BASE"); v != "" {
		base = v
	}
	buildBinaries(t)
	oldWorker, oldStarter := buildRelease(t, base)
	h := newHarnessWith(t, harnessOptions{workerBin: oldWorker, starterBin: oldStarter, noMigrate: true})
	ctx := context.Background()
	ci := newValidatorCI(t)

	// The previous release's registry at work.
	h.mustStarter("policy", "set", "--model", "up", "--required-approvals", "2")
	h.mustStarter("policy", "set", "--model", "gated", "--validator", "ci="+ci.srv.URL+"/ci", "--validator-timeout", "1h")
	approve := func(model string, v int, who string) {
		t.Helper()
		if out, err := h.decide("approve", model, v, who, h.digestOf(model, v)); err != nil {
			t.Fatalf("approve %s v%d by %s: %v\n%s", model, v, who, err, out)
		}
	}
	v1 := h.registerSmall("up", "a", "trainer", "0.9")
	approve("up", v1, "alice")
	approve("up", v1, "bob")
	h.waitStage("up", v1, "Production")
	v2 := h.registerSmall("up", "b", "trainer", "0.9")
	approve("up", v2, "alice")
	approve("up", v2, "bob")
	h.waitStage("up", v2, "Production")
	h.waitStage("up", v1, "Archived")
	v3 := h.registerSmall("up", "c", "trainer", "0.9")
	approve("up", v3, "alice") // one of two
	dir := filepath.Join(h.dir, "gated")
	writeFiles(t, dir, map[string]string{"model.bin": "gated weights"})
	h.mustStarter("register", "--model", "gated", "--dir", dir, "--idempotency-key", "g1")
	h.waitStage("gated", 1, "Validating")
	req := ci.request(t, "ci/v1")

	// The deploy: the old worker stops, the new one starts on the same catalog, store and Temporal.
	h.stopWorker()
	h.workerBin, h.starterBin = bins.worker, bins.starter
	h.startWorker()

	approve("up", v3, "bob") // completes the quorum half met before the upgrade
	h.waitStage("up", v3, "Production")
	h.waitStage("up", v2, "Archived")
	out := h.mustStarter("rollback", "--model", "up", "--to", fmt.Sprint(v2), "--actor", "oncall", "--reason", "after upgrade")
	if !strings.Contains(out, fmt.Sprintf("v%d is in production again", v2)) {
		t.Fatalf("rollback after the upgrade:\n%s", out)
	}
	h.waitStage("up", v3, "Archived")
	h.mustStarter("verdict", "--model", "gated", "--version", "1", "--validator", "ci", "--token", req.Token, "--pass")
	h.waitStage("gated", 1, "PendingApproval")
	approve("gated", 1, "alice")
	h.waitStage("gated", 1, "Production")
	// Numbers go on where the previous release left them.
	if v4 := h.registerSmall("up", "d", "trainer", "0.9"); v4 != 4 {
		t.Fatalf("first registration after the upgrade got v%d, want v4", v4)
	}

	// The catalog was migrated in place: the new tables are there and hold what the new worker wrote.
	var version int64
	db, err := sql.Open("postgres", h.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SELECT MAX(version_id) FROM goose_db_version`).Scan(&version); err != nil || version < 3 {
		t.Fatalf("catalog schema version %d after the upgrade: %v", version, err)
	}
	if p, err := h.catalog.Production(ctx, "up"); err != nil || p.Version != v2 {
		t.Fatalf("catalog production after the upgrade: v%d %v", p.Version, err)
	}
	h.recordHistory("model/up", "upgrade-model-started-before-v1")
	h.recordHistory("model/up/v3", "upgrade-version-quorum-completed-after-upgrade")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := h.starter("check")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			out, errOut, _ := h.starter("check")
			t.Fatalf("starter check after the upgrade:\n%s%s", out, errOut)
		}
		time.Sleep(time.Second)
	}
}
