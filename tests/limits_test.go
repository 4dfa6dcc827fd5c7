package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/workflows"
)

// A version of 100,000 files registers through the starter and validates: its file list travels as a
// listing blob named by its digest, never inside a Temporal payload (a list that size is ~12 MB).
func TestRegisterManyFilesByListing(t *testing.T) {
	h := newHarness(t)
	const n = 100_000
	dir := filepath.Join(h.dir, "run")
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("shard-%03d", i/1000), fmt.Sprintf("part-%05d.txt", i))
		if i%1000 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// A thousand distinct contents: dedup and fresh uploads both get their share.
		if err := os.WriteFile(p, []byte(fmt.Sprintf("content %d\n", i%1000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	out, errOut, err := h.starterTimeout(15*time.Minute, "register", "--model", "many", "--dir", dir, "--source-run", "run-100k", "--wait")
	if err != nil {
		t.Fatalf("register 100,000 files: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	t.Logf("registered and validated %d files in %s", n, time.Since(start).Round(time.Second))
	if !strings.Contains(out, workflows.StagePendingApproval) {
		t.Fatalf("register --wait did not reach PendingApproval:\n%s", out)
	}
	var d workflows.VersionDescription
	if err := json.Unmarshal([]byte(h.mustStarter("status", "--model", "many", "--version", "1", "--json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.State.Files != n || d.Request.Source.Listing == nil || d.Request.Source.Listing.Count != n || len(d.Request.Source.Files) != 0 {
		t.Fatalf("version 1: %d files, request source %+v; want %d files registered by listing", d.State.Files, d.Request.Source.Listing, n)
	}
	for i := 1; i < len(d.State.History); i++ {
		c := d.State.History[i]
		t.Logf("%s -> %s after %s", c.From, c.To, c.At.Sub(d.State.History[i-1].At).Round(time.Second))
	}
	m, digest, err := h.store.GetManifest(context.Background(), "many", 1)
	if err != nil || len(m.Files) != n || digest != d.State.ManifestDigest {
		t.Fatalf("manifest: %d files, digest %s, %v; want %d files, digest %s", len(m.Files), digest, err, n, d.State.ManifestDigest)
	}
}

// Requests Temporal would refuse are refused with a message naming the limit before any blob is
// uploaded, and the model's workflow keeps working.
func TestRegisterRequestLimits(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	run := filepath.Join(h.dir, "run")
	writeFiles(t, run, map[string]string{"model.bin": "weights"})

	// A metrics file of 3 MB (50,000 metrics) and 1,001 params, through the starter.
	var b strings.Builder
	b.WriteString("{")
	for i := range 50_000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q: %d.%06d", fmt.Sprintf("metric_%05d_with_a_long_name_for_size", i), i, i)
	}
	b.WriteString("}")
	big := filepath.Join(h.dir, "metrics.json")
	if err := os.WriteFile(big, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	params := []string{"register", "--model", "limits", "--dir", run}
	for i := range workflows.MaxParams + 1 {
		params = append(params, "--param", fmt.Sprintf("p%d=%d", i, i))
	}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"metrics file", []string{"register", "--model", "limits", "--dir", run, "--metrics", big}, []string{"metrics file", big, "bytes"}},
		{"params", params, []string{"1001 params", "at most 1000"}},
	} {
		out, errOut, err := h.starter(c.args...)
		if err == nil {
			t.Fatalf("%s: register succeeded: %s", c.name, out)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: error %q does not mention %q", c.name, strings.TrimSpace(errOut), w)
			}
		}
	}
	s3c := h.store.(*artifact.S3).Client()
	objs, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(h.bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Contents) != 0 {
		t.Fatalf("refused registrations uploaded %d objects first (e.g. %s)", len(objs.Contents), aws.ToString(objs.Contents[0].Key))
	}

	// Files inline, the way a training job in another language would send them: 5,000 (a 600 KB request)
	// is refused by the register update's validator with a message naming the limit; 20,001 (2.4 MB) is
	// refused by Temporal itself, because a rejection carries the rejected request back and so exceeds
	// the same 2 MB limit, but the model's workflow must survive both.
	tc, err := client.Dial(client.Options{HostPort: h.address, DataConverter: workflows.NewDataConverter(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for _, n := range []int{5_000, 20_001} {
		files := make([]artifact.FileEntry, n)
		for i := range files {
			files[i] = artifact.FileEntry{Path: fmt.Sprintf("shard/part-%05d.bin", i), Size: 100, SHA256: fmt.Sprintf("%064x", i)}
		}
		req := workflows.RegisterRequest{SchemaVersion: workflows.SchemaVersion, Model: "limits", IdempotencyKey: fmt.Sprintf("inline-%d", n),
			Source: workflows.ArtifactSource{Files: files}}
		uctx, cancel := context.WithTimeout(ctx, time.Minute)
		start := tc.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
			ID: workflows.ModelWorkflowID("limits"), TaskQueue: workflows.TaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.SAModelName.ValueSet("limits")),
		}, workflows.ModelWorkflowType, workflows.ModelInput{SchemaVersion: workflows.SchemaVersion, Model: "limits"})
		uh, err := tc.UpdateWithStartWorkflow(uctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: start,
			UpdateOptions: client.UpdateWorkflowOptions{UpdateName: workflows.UpdateRegister, Args: []any{req},
				WaitForStage: client.WorkflowUpdateStageCompleted}})
		if err == nil {
			err = uh.Get(uctx, nil)
		}
		cancel()
		t.Logf("%d inline files: %v", n, err)
		if err == nil {
			t.Fatalf("register with %d inline files succeeded", n)
		}
		if n == 5_000 && (!strings.Contains(err.Error(), "5000 files listed inline") || !strings.Contains(err.Error(), "source.listing")) {
			t.Fatalf("register with 5,000 inline files = %v, want a refusal naming the limit and source.listing", err)
		}
	}

	// The model's workflow is unharmed: it still runs and registers the next request as v1.
	out := h.mustStarter("register", "--model", "limits", "--dir", run, "--wait")
	if !strings.Contains(out, "registered limits v1") || !strings.Contains(out, workflows.StagePendingApproval) {
		t.Fatalf("register after the refusals: %s", out)
	}
	desc, err := tc.DescribeWorkflowExecution(ctx, workflows.ModelWorkflowID("limits"), "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.WorkflowExecutionInfo.Status; st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("model workflow is %s after the refused registrations, want running", st)
	}
}

// starterTimeout is starter with a longer deadline than the harness's three minutes.
func (h *harness) starterTimeout(d time.Duration, args ...string) (string, string, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.starter, args...)
	cmd.Env = h.env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}
