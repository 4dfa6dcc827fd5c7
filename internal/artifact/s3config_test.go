package artifact

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestS3ConfigFromEnv(t *testing.T) {
	for k, v := range map[string]string{
		"MODELREG_S3_BUCKET":            "models",
		"MODELREG_S3_PREFIX":            "registry",
		"MODELREG_S3_ENDPOINT":          "http://127.0.0.1:9000",
		"MODELREG_S3_REGION":            "",
		"MODELREG_S3_ACCESS_KEY_ID":     "AKIDEXAMPLE",
		"MODELREG_S3_SECRET_ACCESS_KEY": "very-secret-value",
		"MODELREG_S3_PATH_STYLE":        "true",
	} {
		t.Setenv(k, v)
	}
	c, err := S3Config{Bucket: "overridden", PartSize: 8 << 20}.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := S3Config{Bucket: "models", Prefix: "registry", Endpoint: "http://127.0.0.1:9000", Region: "us-east-1",
		AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "very-secret-value", PathStyle: true, PartSize: 8 << 20}
	if c != want {
		t.Fatalf("FromEnv = %+v, want %+v", c, want)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, c); strings.Contains(s, "very-secret-value") || !strings.Contains(s, "AKIDEXAMPLE") {
			t.Errorf("Sprintf(%q, cfg) = %s: the secret must be redacted, the key ID kept", format, s)
		}
	}

	t.Setenv("MODELREG_S3_PATH_STYLE", "sometimes")
	if _, err := (S3Config{}).FromEnv(); err == nil || !strings.Contains(err.Error(), "MODELREG_S3_PATH_STYLE") {
		t.Fatalf("FromEnv with a bad PATH_STYLE = %v", err)
	}
}

func TestNewS3Validation(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]struct {
		cfg  S3Config
		want string
	}{
		"no bucket":       {S3Config{}, "bucket is not set"},
		"key, no secret":  {S3Config{Bucket: "b", AccessKeyID: "AKIDEXAMPLE"}, "set both"},
		"secret, no key":  {S3Config{Bucket: "b", SecretAccessKey: "very-secret-value"}, "set both"},
		"small parts":     {S3Config{Bucket: "b", PartSize: 1 << 20}, "part size"},
		"escaping prefix": {S3Config{Bucket: "b", Prefix: "a/../b"}, "prefix"},
	} {
		_, err := NewS3(ctx, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "very-secret-value") {
			t.Errorf("%s: NewS3 = %v, want an error containing %q and no secret", name, err, c.want)
		}
	}
}

func TestS3ConfigUploadSettingsFromEnv(t *testing.T) {
	t.Setenv("MODELREG_S3_PART_SIZE_MIB", "32")
	t.Setenv("MODELREG_S3_CONCURRENCY", "6")
	t.Setenv("MODELREG_S3_MAX_ATTEMPTS", "12")
	c, err := S3Config{}.FromEnv()
	if err != nil || c.PartSize != 32<<20 || c.Concurrency != 6 || c.MaxAttempts != 12 {
		t.Fatalf("FromEnv = %+v, %v; want 32 MiB parts, 6 at a time, 12 attempts", c, err)
	}
	for name, v := range map[string]string{"PART_SIZE_MIB": "4", "CONCURRENCY": "0", "MAX_ATTEMPTS": "many"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("MODELREG_S3_"+name, v)
			if _, err := (S3Config{}).FromEnv(); err == nil || !strings.Contains(err.Error(), "MODELREG_S3_"+name) {
				t.Fatalf("FromEnv with MODELREG_S3_%s=%s = %v, want an error naming the variable", name, v, err)
			}
		})
	}
	for name, cfg := range map[string]S3Config{
		"huge parts":       {Bucket: "b", PartSize: 6 << 30},
		"many in flight":   {Bucket: "b", Concurrency: 65},
		"negative retries": {Bucket: "b", MaxAttempts: -1},
	} {
		if _, err := NewS3(context.Background(), cfg); err == nil {
			t.Errorf("%s: NewS3 accepted %+v", name, cfg)
		}
	}
}

// A file too large for 10,000 parts of the configured size is cut into larger parts.
func TestPartPlan(t *testing.T) {
	// Up to the multipart threshold (by default S3's largest PUT) a file is one part.
	if got := (&S3{cfg: S3Config{PartSize: 5 << 20}}).partPlan(1 << 30); got != 1<<30 {
		t.Fatalf("partPlan(1 GiB) under the default threshold = %d, want one part", got)
	}
	if got := (&S3{cfg: S3Config{PartSize: 5 << 20, MultipartThreshold: 100 << 20}}).partPlan(1 << 30); got != 5<<20 {
		t.Fatalf("partPlan(1 GiB) over a 100 MiB threshold = %d, want 5 MiB parts", got)
	}
	s := &S3{cfg: S3Config{PartSize: 5 << 20, MultipartThreshold: -1}}
	if got := s.partPlan(5 << 30); got != 5<<20 {
		t.Fatalf("partPlan(5 GiB) with 5 MiB parts = %d", got)
	}
	const big = 100 << 30
	ps := s.partPlan(big)
	if n := (big + ps - 1) / ps; n > 10_000 || ps%(1<<20) != 0 {
		t.Fatalf("partPlan(100 GiB) = %d bytes: %d parts", ps, n)
	}
	if got := (&S3{}).partPlan(6 << 30); got != DefaultPartSize {
		t.Fatalf("partPlan with no part size = %d, want DefaultPartSize", got)
	}
}

// The registry's list of variables (config.Variables) is built from S3EnvSuffixes, so it must name
// exactly what FromLookup reads.
func TestS3EnvSuffixesAreWhatFromLookupReads(t *testing.T) {
	read := map[string]bool{}
	if _, err := (S3Config{}).FromLookup("P_", func(name string) string { read[name] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, s := range S3EnvSuffixes {
		listed["P_"+s] = true
	}
	if fmt.Sprint(read) != fmt.Sprint(listed) {
		t.Fatalf("FromLookup reads %v; S3EnvSuffixes lists %v", read, listed)
	}
}
