// Package config reads the registry's settings from the environment, shared by the worker and the
// starter so both talk to the same Temporal namespace, catalog and artifact store. With nothing set, every
// setting points at the embedded default that `worker --dev` runs in ./.modelreg.
package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/codec"
	"github.com/modelreg/modelreg/internal/redact"
	"github.com/modelreg/modelreg/workflows"
)

// Config is every setting of the registry. README lists the environment variables.
type Config struct {
	DataDir         string // MODELREG_DATA_DIR, default ./.modelreg (the embedded default's files)
	TemporalAddress string // TEMPORAL_ADDRESS, default 127.0.0.1:7233
	Namespace       string // TEMPORAL_NAMESPACE, default "default"
	TLSCert         string // TEMPORAL_TLS_CERT (client certificate file)
	TLSKey          string // TEMPORAL_TLS_KEY
	TLSCA           string // TEMPORAL_TLS_CA (server CA file)
	TLSServerName   string // TEMPORAL_TLS_SERVER_NAME
	TLS             bool   // TEMPORAL_TLS=true: TLS with the system roots
	DatabaseURL     string // MODELREG_DATABASE_URL, default sqlite://<data dir>/catalog.db
	ArtifactRoot    string // MODELREG_ARTIFACT_ROOT, default <data dir>/artifacts (when no S3 bucket)
	S3              artifact.S3Config
	SourceS3        artifact.S3Config // MODELREG_SOURCE_S3_*: where s3:// sources are read; default S3
	// WebhookSecret (MODELREG_WEBHOOK_SECRET) signs every webhook and validation request; empty: unsigned.
	WebhookSecret Secret
	// MustExist makes OpenCatalog and OpenStore refuse a SQLite catalog file or a store directory that is
	// not there instead of creating it. The starter sets it: run outside the registry's directory, it
	// would otherwise make an empty registry of its own, list nothing and upload blobs no worker reads.
	MustExist bool
	// PayloadKeys encrypt workflow payloads (MODELREG_PAYLOAD_KEY with MODELREG_PAYLOAD_KEY_ID, then each
	// key of MODELREG_PAYLOAD_KEY_PREVIOUS): the first encrypts, all decrypt. Empty: payloads are plain JSON.
	PayloadKeys []codec.Key
	// MetricsHandler receives the Temporal SDK's metrics (the worker serves them at /metrics); nil: none.
	MetricsHandler client.MetricsHandler
}

// Secret is secret configuration bytes. Printing it (fmt with any verb, JSON, slog) shows "REDACTED".
type Secret []byte

// String is "REDACTED" for a set secret and "" for an empty one.
func (s Secret) String() string {
	if len(s) == 0 {
		return ""
	}
	return "REDACTED"
}

// GoString is String, for %#v.
func (s Secret) GoString() string { return s.String() }

// Format is String for every verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// MarshalText is String, for JSON and slog.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// FromEnv reads Config from the environment.
func FromEnv() (Config, error) {
	c := Config{
		DataDir:         env("MODELREG_DATA_DIR", ".modelreg"),
		TemporalAddress: env("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		Namespace:       env("TEMPORAL_NAMESPACE", "default"),
		TLSCert:         os.Getenv("TEMPORAL_TLS_CERT"),
		TLSKey:          os.Getenv("TEMPORAL_TLS_KEY"),
		TLSCA:           os.Getenv("TEMPORAL_TLS_CA"),
		TLSServerName:   os.Getenv("TEMPORAL_TLS_SERVER_NAME"),
		TLS:             os.Getenv("TEMPORAL_TLS") == "true",
	}
	var err error
	if c.S3, err = (artifact.S3Config{}).FromEnv(); err != nil {
		return c, err
	}
	c.DatabaseURL = env("MODELREG_DATABASE_URL", "sqlite://"+filepath.Join(c.DataDir, "catalog.db"))
	c.ArtifactRoot = env("MODELREG_ARTIFACT_ROOT", filepath.Join(c.DataDir, "artifacts"))
	// Sources default to the store's endpoint and credentials, with any MODELREG_SOURCE_S3_* on top.
	if c.SourceS3, err = c.S3.FromEnvPrefix("MODELREG_SOURCE_S3_"); err != nil {
		return c, err
	}
	c.WebhookSecret = Secret(os.Getenv("MODELREG_WEBHOOK_SECRET"))
	if c.PayloadKeys, err = payloadKeysFromEnv(); err != nil {
		return c, err
	}
	return c, nil
}

// payloadKeysFromEnv reads MODELREG_PAYLOAD_KEY (base64 of 32 bytes) under the id MODELREG_PAYLOAD_KEY_ID
// (default "default"), then MODELREG_PAYLOAD_KEY_PREVIOUS: comma-separated <id>:<base64> keys that
// still decrypt payloads written before a rotation. Errors name variables and ids, never key material.
func payloadKeysFromEnv() ([]codec.Key, error) {
	cur := strings.TrimSpace(os.Getenv("MODELREG_PAYLOAD_KEY"))
	id := strings.TrimSpace(os.Getenv("MODELREG_PAYLOAD_KEY_ID"))
	prev := strings.TrimSpace(os.Getenv("MODELREG_PAYLOAD_KEY_PREVIOUS"))
	if cur == "" {
		if id != "" || prev != "" {
			return nil, errors.New("MODELREG_PAYLOAD_KEY_ID or MODELREG_PAYLOAD_KEY_PREVIOUS is set but MODELREG_PAYLOAD_KEY is not: " +
				"set the current key too (turning encryption off would leave running workflows unable to read their own history)")
		}
		return nil, nil
	}
	if id == "" {
		id = "default"
	}
	k, err := codec.ParseKey(id, cur)
	if err != nil {
		return nil, fmt.Errorf("MODELREG_PAYLOAD_KEY: %w", err)
	}
	keys := []codec.Key{k}
	if prev != "" {
		for i, item := range strings.Split(prev, ",") {
			pid, b64, ok := strings.Cut(strings.TrimSpace(item), ":")
			if !ok || strings.TrimSpace(pid) == "" {
				return nil, fmt.Errorf("MODELREG_PAYLOAD_KEY_PREVIOUS: item %d is not <id>:<base64 key>", i+1)
			}
			pk, err := codec.ParseKey(strings.TrimSpace(pid), b64)
			if err != nil {
				return nil, fmt.Errorf("MODELREG_PAYLOAD_KEY_PREVIOUS: %w", err)
			}
			keys = append(keys, pk)
		}
	}
	// Fails now, not at the first payload, on a duplicate id.
	if _, err := codec.NewCodec(keys...); err != nil {
		return nil, fmt.Errorf("MODELREG_PAYLOAD_KEY*: %w", err)
	}
	return keys, nil
}

// Codec is the payload codec of the configured keys, or nil when no key is configured.
func (c Config) Codec() (*codec.Codec, error) {
	if len(c.PayloadKeys) == 0 {
		return nil, nil
	}
	return codec.NewCodec(c.PayloadKeys...)
}

// DataConverter is the registry's data converter: with payload keys, every payload is encrypted.
func (c Config) DataConverter() (converter.DataConverter, error) {
	cd, err := c.Codec()
	if err != nil || cd == nil {
		return workflows.NewDataConverter(), err
	}
	return workflows.NewDataConverterWithCodec(cd), nil
}

// RedactURL returns a URL fit for logs, with every password and secret-looking parameter masked. It is
// redact.URL, which the catalog's errors use too, so a log line and an error cannot disagree on a secret.
func RedactURL(raw string) string { return redact.URL(raw) }

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// Dial connects to Temporal with the registry's data converter. With payload keys, every payload is
// encrypted (and decrypted) by the client and the workers built on it, and so are the messages and stack
// traces of failures.
func (c Config) Dial(logger *slog.Logger) (client.Client, error) {
	dc, err := c.DataConverter()
	if err != nil {
		return nil, err
	}
	opts := client.Options{
		HostPort:       c.TemporalAddress,
		Namespace:      c.Namespace,
		DataConverter:  dc,
		Logger:         log.NewStructuredLogger(logger),
		MetricsHandler: c.MetricsHandler,
	}
	if len(c.PayloadKeys) > 0 {
		// An error's message is not a payload: without this it would be stored in the clear.
		opts.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter: dc, EncodeCommonAttributes: true,
		})
	}
	if c.TLS || c.TLSCert != "" || c.TLSCA != "" {
		tc := &tls.Config{ServerName: c.TLSServerName, MinVersion: tls.VersionTLS12}
		if c.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("TEMPORAL_TLS_CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("TEMPORAL_TLS_CA %s holds no PEM certificate", c.TLSCA)
			}
			tc.RootCAs = pool
		}
		opts.ConnectionOptions.TLS = tc
	}
	cl, err := client.Dial(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", c.TemporalAddress, c.Namespace, err)
	}
	return cl, nil
}

// ErrNoRegistry is returned (wrapped) by OpenCatalog and OpenStore with MustExist when the embedded
// default's files are not where the settings point.
var ErrNoRegistry = errors.New("no registry")

// noRegistry names what is missing and every way to point at a registry that exists.
func (c Config) noRegistry(what, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return fmt.Errorf("%w here: %s %s does not exist. Run this in the directory where `worker --dev` runs (it creates %s), "+
		"set MODELREG_DATA_DIR to the worker's --data-dir, or, for a registry that is not the embedded default, set "+
		"MODELREG_DATABASE_URL, MODELREG_S3_BUCKET (or MODELREG_ARTIFACT_ROOT) and TEMPORAL_ADDRESS",
		ErrNoRegistry, what, abs, c.DataDir)
}

// OpenCatalog opens the catalog and brings its schema up to date.
func (c Config) OpenCatalog(ctx context.Context) (*catalog.Catalog, error) {
	if strings.HasPrefix(c.DatabaseURL, "sqlite://") {
		path := strings.TrimPrefix(c.DatabaseURL, "sqlite://")
		if c.MustExist {
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				return nil, c.noRegistry("the catalog", path)
			}
		} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
	}
	cat, err := catalog.Open(ctx, c.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := cat.Migrate(ctx); err != nil {
		cat.Close()
		return nil, err
	}
	return cat, nil
}

// SetUpload applies the upload flags (part size in MiB, parts in flight per file; 0 leaves a setting
// as the environment or the default has it) to the S3 store's configuration.
func (c *Config) SetUpload(partSizeMiB int64, concurrency int) error {
	if partSizeMiB != 0 {
		if partSizeMiB < artifact.MinPartSize>>20 || partSizeMiB > artifact.MaxPartSize>>20 {
			return fmt.Errorf("--part-size-mib %d: want %d to %d", partSizeMiB, artifact.MinPartSize>>20, artifact.MaxPartSize>>20)
		}
		c.S3.PartSize = partSizeMiB << 20
	}
	if concurrency != 0 {
		if concurrency < 1 || concurrency > artifact.MaxConcurrency {
			return fmt.Errorf("--upload-concurrency %d: want 1 to %d", concurrency, artifact.MaxConcurrency)
		}
		c.S3.Concurrency = concurrency
	}
	return nil
}

// OpenStore opens the artifact store: S3 when MODELREG_S3_BUCKET is set, else the directory.
func (c Config) OpenStore(ctx context.Context) (artifact.Store, error) {
	if c.S3.Bucket != "" {
		return artifact.NewS3(ctx, c.S3)
	}
	if c.ArtifactRoot == "" {
		return nil, errors.New("no artifact store: set MODELREG_S3_BUCKET or MODELREG_ARTIFACT_ROOT")
	}
	if c.MustExist {
		if _, err := os.Stat(c.ArtifactRoot); errors.Is(err, os.ErrNotExist) {
			return nil, c.noRegistry("the artifact store", c.ArtifactRoot)
		}
	}
	return artifact.NewDir(c.ArtifactRoot)
}

// SourceClient is the S3 client that reads s3:// registration sources, or nil when none is configured.
func (c Config) SourceClient(ctx context.Context) (*s3.Client, error) {
	if c.SourceS3.Endpoint == "" && c.SourceS3.AccessKeyID == "" && c.S3.Bucket == "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		return nil, nil
	}
	return artifact.NewS3Client(ctx, c.SourceS3)
}
