package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/modelreg/modelreg/internal/codec"
	"github.com/modelreg/modelreg/workflows"
)

func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func clearSecretsEnv(t *testing.T) {
	for _, k := range []string{"MODELREG_WEBHOOK_SECRET", "MODELREG_PAYLOAD_KEY", "MODELREG_PAYLOAD_KEY_ID", "MODELREG_PAYLOAD_KEY_PREVIOUS"} {
		t.Setenv(k, "")
	}
}

func TestNoSecretsByDefault(t *testing.T) {
	clearSecretsEnv(t)
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.WebhookSecret) != 0 || len(c.PayloadKeys) != 0 {
		t.Fatalf("secrets without configuration: %v %v", c.WebhookSecret, c.PayloadKeys)
	}
	if cd, err := c.Codec(); cd != nil || err != nil {
		t.Fatalf("codec without a key: %v %v", cd, err)
	}
	dc, err := c.DataConverter()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := dc.ToPayload(map[string]string{"model": "fraud"})
	if string(p.Metadata[converter.MetadataEncoding]) != "json/plain" {
		t.Fatalf("payloads are not plain JSON without a key: %v", p.Metadata)
	}
}

func TestPayloadKeysFromEnv(t *testing.T) {
	clearSecretsEnv(t)
	cur, old := randomKey(t), randomKey(t)
	t.Setenv("MODELREG_WEBHOOK_SECRET", "whsec-abc")
	t.Setenv("MODELREG_PAYLOAD_KEY", cur)
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if string(c.WebhookSecret) != "whsec-abc" {
		t.Fatalf("webhook secret %q", []byte(c.WebhookSecret))
	}
	if len(c.PayloadKeys) != 1 || c.PayloadKeys[0].ID != "default" {
		t.Fatalf("keys %v", c.PayloadKeys)
	}

	t.Setenv("MODELREG_PAYLOAD_KEY_ID", "2026-11")
	t.Setenv("MODELREG_PAYLOAD_KEY_PREVIOUS", "2026-05:"+old+", 2025:"+randomKey(t))
	c, err = FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range c.PayloadKeys {
		ids = append(ids, k.ID)
	}
	if strings.Join(ids, ",") != "2026-11,2026-05,2025" {
		t.Fatalf("key ids %v", ids)
	}

	// The data converter encrypts with the current key, and one configured with only the old key as
	// current can be read after the rotation.
	dc, err := c.DataConverter()
	if err != nil {
		t.Fatal(err)
	}
	p, err := dc.ToPayload(workflows.Decision{Approver: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Metadata[converter.MetadataEncoding]) != codec.EncodingEncrypted || string(p.Metadata[codec.MetadataKeyID]) != "2026-11" {
		t.Fatalf("metadata %v", p.Metadata)
	}
	t.Setenv("MODELREG_PAYLOAD_KEY_ID", "2026-05")
	t.Setenv("MODELREG_PAYLOAD_KEY", old)
	t.Setenv("MODELREG_PAYLOAD_KEY_PREVIOUS", "")
	before, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	bdc, _ := before.DataConverter()
	oldPayload, _ := bdc.ToPayload(workflows.Decision{Approver: "bob"})
	var d workflows.Decision
	if err := dc.FromPayload(oldPayload, &d); err != nil || d.Approver != "bob" {
		t.Fatalf("payload of the previous key: %+v %v", d, err)
	}
}

func TestPayloadKeyErrors(t *testing.T) {
	good := randomKey(t)
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"wrong length", map[string]string{"MODELREG_PAYLOAD_KEY": short}, `MODELREG_PAYLOAD_KEY: payload key "default" has 16 bytes; AES-256 needs exactly 32`},
		{"not base64", map[string]string{"MODELREG_PAYLOAD_KEY": "%%%" + good}, `MODELREG_PAYLOAD_KEY: payload key "default" is not valid base64`},
		{"previous without id", map[string]string{"MODELREG_PAYLOAD_KEY": good, "MODELREG_PAYLOAD_KEY_PREVIOUS": good}, "item 1 is not <id>:<base64 key>"},
		{"previous too short", map[string]string{"MODELREG_PAYLOAD_KEY": good, "MODELREG_PAYLOAD_KEY_PREVIOUS": "old:" + short}, `MODELREG_PAYLOAD_KEY_PREVIOUS: payload key "old" has 16 bytes`},
		{"duplicate id", map[string]string{"MODELREG_PAYLOAD_KEY": good, "MODELREG_PAYLOAD_KEY_PREVIOUS": "default:" + good}, `"default" is given twice`},
		{"previous without current", map[string]string{"MODELREG_PAYLOAD_KEY_PREVIOUS": "old:" + good}, "MODELREG_PAYLOAD_KEY is not"},
		{"id without key", map[string]string{"MODELREG_PAYLOAD_KEY_ID": "k2"}, "MODELREG_PAYLOAD_KEY is not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearSecretsEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := FromEnv()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			for _, secret := range []string{good, short, strings.TrimRight(good, "=")} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error shows key material: %v", err)
				}
			}
		})
	}
}

func TestConfigPrintsNoSecrets(t *testing.T) {
	clearSecretsEnv(t)
	key := randomKey(t)
	t.Setenv("MODELREG_WEBHOOK_SECRET", "whsec-do-not-print")
	t.Setenv("MODELREG_PAYLOAD_KEY", key)
	t.Setenv("MODELREG_S3_SECRET_ACCESS_KEY", "s3-secret-do-not-print")
	t.Setenv("MODELREG_S3_ACCESS_KEY_ID", "AKIATEST")
	t.Setenv("TEMPORAL_API_KEY", "temporal-key-do-not-print")
	t.Setenv("TEMPORAL_TLS_CLIENT_KEY_DATA", "tls-key-do-not-print")
	t.Setenv("TEMPORAL_GRPC_META_AUTHORIZATION", "grpc-meta-do-not-print")
	t.Setenv("MODELREG_TOKEN", "api-token-do-not-print")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(key)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", c, "secret", c.WebhookSecret)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", c, "secret", c.WebhookSecret)
	for _, s := range []string{
		fmt.Sprintf("%v|%+v|%#v|%s|%x|%d", c, c, c, c.WebhookSecret, c.WebhookSecret, c.WebhookSecret),
		string(js), logged.String(),
	} {
		for _, secret := range []string{"whsec-do-not-print", "s3-secret-do-not-print", key,
			"temporal-key-do-not-print", "tls-key-do-not-print", "grpc-meta-do-not-print", fmt.Sprint([]byte("tls-key-do-not-print")),
			"api-token-do-not-print", fmt.Sprint([]byte("api-token-do-not-print")), fmt.Sprintf("%x", raw), fmt.Sprint(raw),
			fmt.Sprint([]byte("whsec-do-not-print")), fmt.Sprintf("%x", "whsec-do-not-print"),
			base64.StdEncoding.EncodeToString([]byte("whsec-do-not-print"))} {
			if strings.Contains(s, secret) {
				t.Fatalf("%q shows a secret (%q)", s, secret)
			}
		}
	}
	if string(c.Token) != "api-token-do-not-print" {
		t.Fatalf("MODELREG_TOKEN not read")
	}
	if c.Temporal.Profile.APIKey != "temporal-key-do-not-print" || !strings.Contains(fmt.Sprint(c), "APIKey:REDACTED") {
		t.Fatalf("the API key is not read or not shown as set: %v", c)
	}
	if !strings.Contains(fmt.Sprint(c.WebhookSecret), "REDACTED") {
		t.Fatalf("secret printed as %v", c.WebhookSecret)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://modelreg:s3cr3t@db:5432/modelreg?sslmode=disable":   "postgres://modelreg:xxxxx@db:5432/modelreg?sslmode=disable",
		"postgres://db/modelreg?password=s3cr3t&sslmode=disable":        "postgres://db/modelreg?password=xxxxx&sslmode=disable",
		"postgres://u@db/modelreg":                                      "postgres://u@db/modelreg",
		"sqlite://.modelreg/catalog.db":                                 "sqlite://.modelreg/catalog.db",
		"postgres://u:s3cr3t@db:99999999999999999999999999/x%zz":        "postgres://REDACTED@db:99999999999999999999999999/x%zz",
		"postgresql://u:p%40ss@host/db":                                 "postgresql://u:xxxxx@host/db",
		"postgres://modelreg:s3cr3t@db/modelreg?sslpassword=s3cr3t&x=1": "postgres://modelreg:xxxxx@db/modelreg?sslpassword=xxxxx&x=1",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSetUpload(t *testing.T) {
	var c Config
	if err := c.SetUpload(0, 0); err != nil || c.S3.PartSize != 0 || c.S3.Concurrency != 0 {
		t.Fatalf("SetUpload(0, 0) = %v, %+v; want the settings left alone", err, c.S3)
	}
	if err := c.SetUpload(16, 3); err != nil || c.S3.PartSize != 16<<20 || c.S3.Concurrency != 3 {
		t.Fatalf("SetUpload(16, 3) = %v, %+v", err, c.S3)
	}
	for _, bad := range []struct {
		mib  int64
		conc int
		want string
	}{{4, 0, "--part-size-mib 4"}, {5121, 0, "--part-size-mib 5121"}, {0, -1, "--upload-concurrency -1"}, {0, 65, "--upload-concurrency 65"}} {
		if err := c.SetUpload(bad.mib, bad.conc); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SetUpload(%d, %d) = %v, want an error naming %q", bad.mib, bad.conc, err, bad.want)
		}
	}
}

func TestWorkerTuningFromEnv(t *testing.T) {
	env := map[string]string{"MODELREG_WORKER_MAX_CONCURRENT_ACTIVITIES": "50", "MODELREG_WORKER_WORKFLOW_POLLERS": " 4 ", "MODELREG_WORKER_STICKY_CACHE_SIZE": "2000"}
	got, err := workerTuningFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got != (WorkerTuning{MaxConcurrentActivities: 50, WorkflowPollers: 4, StickyCacheSize: 2000}) {
		t.Fatalf("tuning %+v", got)
	}
	o := got.Options()
	if o.MaxConcurrentActivityExecutionSize != 50 || o.MaxConcurrentWorkflowTaskPollers != 4 || o.MaxConcurrentActivityTaskPollers != 0 {
		t.Fatalf("options %+v", o)
	}
	for name, bad := range map[string]string{
		"MODELREG_WORKER_MAX_CONCURRENT_ACTIVITIES":     "0",
		"MODELREG_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "1", // the SDK needs 2 for its sticky and normal queues
		"MODELREG_WORKER_ACTIVITY_POLLERS":              "many",
		"MODELREG_WORKER_STICKY_CACHE_SIZE":             "-5",
	} {
		_, err := workerTuningFromEnv(func(k string) string {
			if k == name {
				return bad
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: err %v, want one naming the variable", name, bad, err)
		}
	}
}

func TestGrpcCompressionFromEnv(t *testing.T) {
	for v, want := range map[string]any{"": &client.GrpcCompressionNone{}, " GZIP ": &client.GrpcCompressionGzip{}, "none": &client.GrpcCompressionNone{}} {
		t.Setenv("MODELREG_TEMPORAL_GRPC_COMPRESSION", v)
		c, err := FromEnv()
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		opts, err := c.clientOptions(slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if reflect.TypeOf(opts.ConnectionOptions.GrpcCompression) != reflect.TypeOf(want) {
			t.Fatalf("%q: compression %T, want %T", v, opts.ConnectionOptions.GrpcCompression, want)
		}
	}
	t.Setenv("MODELREG_TEMPORAL_GRPC_COMPRESSION", "zstd")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MODELREG_TEMPORAL_GRPC_COMPRESSION") || !strings.Contains(err.Error(), "gzip or none") {
		t.Fatalf("an unknown compression: %v", err)
	}
}
