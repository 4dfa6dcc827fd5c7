package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/check"
	"github.com/modelreg/modelreg/workflows"
)

// TestCheckFindsWhatWasBrokenBehindTheRegistrysBack runs a small lifecycle (v1 approved, then v2
// approved, so v1 is archived), sees `starter check` pass, then breaks the artifact store and the
// catalog by hand, one fault at a time, and sees each reported with exit status 1.
func TestCheckFindsWhatWasBrokenBehindTheRegistrysBack(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	for i, weights := range []string{"check-weights-one", "check-weights-two"} {
		v := strconv.Itoa(i + 1)
		dir := filepath.Join(h.dir, "run"+v)
		writeFiles(t, dir, map[string]string{"model.bin": weights, "notes.txt": "run " + v + "\n"})
		h.mustStarter("register", "--model", "fraud", "--dir", dir, "--registered-by", "trainer", "--wait")
		h.mustStarter("approve", "--model", "fraud", "--version", v, "--approver", "alice")
	}
	h.waitStage("fraud", 2, "Production")
	h.waitStage("fraud", 1, "Archived")

	clean := func(args ...string) {
		t.Helper()
		out := h.mustStarter(append([]string{"check"}, args...)...)
		if strings.TrimSpace(out) != "checked 1 model, 2 versions: 0 findings" {
			t.Fatalf("starter check %v on a consistent registry:\n%s", args, out)
		}
	}
	clean()
	clean("--model", "fraud", "--verify")

	// The checker is a Go function too.
	tc, err := client.Dial(client.Options{HostPort: h.address, Namespace: "default", DataConverter: workflows.NewDataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	rep, err := check.Run(ctx, check.Deps{Catalog: h.catalog, Store: h.store, Temporal: tc, Verify: true})
	if err != nil || rep.Models != 1 || rep.Versions != 2 || len(rep.Findings) != 0 {
		t.Fatalf("check.Run: %+v %v", rep, err)
	}

	db, err := sql.Open("postgres", h.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sqlExec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw := h.store.(*artifact.S3).Client()
	m1, _, err := h.store.GetManifest(ctx, "fraud", 1)
	if err != nil {
		t.Fatal(err)
	}
	var blob artifact.FileEntry
	for _, f := range m1.Files {
		if f.Path == "model.bin" {
			blob = f
		}
	}
	blobKey := "blobs/sha256/" + blob.SHA256[:2] + "/" + blob.SHA256
	markKey := "manifests/fraud/v1/archived"

	cases := []struct {
		name    string
		breakIt func()
		restore func()
		// want are "v<N>:<kind>" of the findings; line is one line the text output must hold.
		want []string
		line string
	}{
		{
			name: "blob deleted from S3",
			breakIt: func() {
				if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.bucket), Key: aws.String(blobKey)}); err != nil {
					t.Fatal(err)
				}
			},
			restore: func() {
				if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(h.bucket), Key: aws.String(blobKey),
					Body: strings.NewReader("check-weights-one")}); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"v1:" + check.KindBlobMissing},
			line: "fraud v1: blob of model.bin (sha256:" + blob.SHA256 + ", 17 bytes) is missing from the artifact store",
		},
		{
			name:    "catalog stage changed with SQL",
			breakIt: func() { sqlExec(`UPDATE versions SET stage = 'Approved' WHERE model = 'fraud' AND version = 1`) },
			restore: func() { sqlExec(`UPDATE versions SET stage = 'Archived' WHERE model = 'fraud' AND version = 1`) },
			want:    []string{"v1:" + check.KindStage, "v1:" + check.KindArchivedMark, "v1:" + check.KindAuditEnd},
			line:    "fraud v1: catalog stage Approved, workflow stage Archived",
		},
		{
			name:    "production pointer at the archived version",
			breakIt: func() { sqlExec(`UPDATE models SET production_version = 1 WHERE name = 'fraud'`) },
			restore: func() { sqlExec(`UPDATE models SET production_version = 2 WHERE name = 'fraud'`) },
			want:    []string{"v1:" + check.KindProductionPointer, "v0:" + check.KindProductionWorkflow},
			line:    "fraud v1: the production pointer names v1, whose catalog stage is Archived (v2 in Production)",
		},
		{
			name: "archived marker removed",
			breakIt: func() {
				if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(h.bucket), Key: aws.String(markKey)}); err != nil {
					t.Fatal(err)
				}
			},
			restore: func() {
				if err := h.store.SetArchived(ctx, "fraud", 1, true); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"v1:" + check.KindArchivedMark},
			line: "fraud v1: catalog stage Archived, but the artifact store has no archived mark",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.breakIt()

			out, errOut, err := h.starter("check")
			if code := checkExitCode(err); code != 1 {
				t.Fatalf("starter check exited %d (%v), want 1:\n%s%s", code, err, out, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if !slices.Contains(lines, c.line) {
				t.Fatalf("output lacks %q:\n%s", c.line, out)
			}
			if want := "checked 1 model, 2 versions: " + checkPlural(len(c.want), "finding"); lines[len(lines)-1] != want {
				t.Fatalf("summary %q, want %q:\n%s", lines[len(lines)-1], want, out)
			}

			out, _, err = h.starter("check", "--model", "fraud", "--json")
			if code := checkExitCode(err); code != 1 {
				t.Fatalf("starter check --json exited %d (%v), want 1:\n%s", code, err, out)
			}
			var rep check.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("--json output: %v\n%s", err, out)
			}
			var got []string
			for _, f := range rep.Findings {
				if f.Model != "fraud" || f.Detail == "" {
					t.Fatalf("finding %+v", f)
				}
				got = append(got, "v"+strconv.Itoa(f.Version)+":"+f.Kind)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(c.want))
			if rep.Models != 1 || rep.Versions != 2 || !slices.Equal(got, want) {
				t.Fatalf("--json: models %d versions %d findings %v, want %v:\n%s", rep.Models, rep.Versions, got, want, out)
			}

			c.restore()
			clean()
		})
	}
}

func checkExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func checkPlural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
