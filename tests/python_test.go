package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/testenv"
)

// TestPythonClient runs the Python client's tests (clients/python/tests) with python3 against a
// running registry: the real worker with its HTTP API on real PostgreSQL, S3 and Temporal servers.
func TestPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		testenv.Unavailable(t, "python3 not found")
		return
	}
	// The training bucket is the one prefix registrations through the API may import from.
	h := newHarnessWith(t, harnessOptions{api: true, env: []string{"MODELREG_API_S3_SOURCES=s3://training/runs"}})
	ctx := context.Background()
	raw := h.store.(*artifact.S3).Client()
	if _, err := raw.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("training")}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("training"), Key: aws.String("runs/py/model.bin"),
		Body: strings.NewReader("weights-py")}); err != nil {
		t.Fatal(err)
	}
	h.waitAPI()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "discover", "-v", "-s", filepath.Join("..", "clients", "python", "tests"))
	cmd.Env = append(os.Environ(), "MODELREG_TEST_URL="+h.apiURL, "MODELREG_TEST_SOURCE=s3://training/runs/py", "PYTHONDONTWRITEBYTECODE=1")
	for name, tok := range h.apiTokens {
		cmd.Env = append(cmd.Env, "MODELREG_TEST_TOKEN_"+strings.ToUpper(name)+"="+tok)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest:\n%s", out)
	if err != nil {
		t.Fatalf("the Python client's tests failed: %v", err)
	}
	if !strings.Contains(string(out), "OK") || strings.Contains(string(out), "skipped") {
		t.Fatal("the Python client's tests did not all run")
	}
}
