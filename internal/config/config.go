// Package config reads the registry's settings from the environment, shared by the worker and the
// starter so both talk to the same Temporal namespace, catalog and artifact store. With nothing set, every
// setting points at the embedded default that `worker --dev` runs in ./.modelreg.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/codec"
	"github.com/modelreg/modelreg/internal/redact"
	"github.com/modelreg/modelreg/workflows"
)

// Config is every setting of the registry. README lists the environment variables; Variables names them.
type Config struct {
	DataDir string // MODELREG_DATA_DIR, default ./.modelreg (the embedded default's files)
	// TemporalAddress and Namespace are TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, else the Temporal
	// profile's, else 127.0.0.1:7233 and "default".
	TemporalAddress string
	Namespace       string
	// Temporal is the rest of the Temporal client's settings (API key, TLS, gRPC metadata).
	Temporal Temporal
	// HTTPAddr (MODELREG_HTTP_ADDR, or the worker's --http) is where the worker serves its HTTP API;
	// APITokensFile (MODELREG_API_TOKENS_FILE, or --api-tokens) holds the API's bearer tokens.
	HTTPAddr      string
	APITokensFile string
	// APISources (MODELREG_API_S3_SOURCES, comma-separated s3://bucket/prefix) are the s3:// prefixes a
	// registration through the HTTP API may import from; none by default: the worker's S3 credentials
	// would otherwise copy, for anyone with the register role, whatever they can read.
	APISources []string
	// Server (MODELREG_SERVER, or the starter's --server) is the registry's HTTP API the starter talks
	// to instead of Temporal, the catalog and the store; Token (MODELREG_TOKEN, or --token) its bearer
	// token.
	Server      string
	Token       Secret
	DatabaseURL string // MODELREG_DATABASE_URL, default sqlite://<data dir>/catalog.db
	// ArtifactRoot is MODELREG_ARTIFACT_ROOT, default <data dir>/artifacts (when no S3 bucket).
	ArtifactRoot string
	S3           artifact.S3Config
	SourceS3     artifact.S3Config // MODELREG_SOURCE_S3_*: where s3:// sources are read; default S3
	// Worker is how much the worker runs at once (MODELREG_WORKER_*).
	Worker WorkerTuning
	// GrpcCompression is MODELREG_TEMPORAL_GRPC_COMPRESSION: how requests to Temporal are compressed,
	// "gzip" or "none".
	GrpcCompression string
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

// Temporal is a Temporal client profile as the temporal CLI and the other SDKs read it (envconfig): the
// profile TEMPORAL_PROFILE (default "default") of the TOML file TEMPORAL_CONFIG_FILE (default the
// CLI's), with the TEMPORAL_* variables on top. Printing it (fmt, JSON, slog) shows no secret.
type Temporal struct {
	Profile envconfig.ClientConfigProfile
	// Deprecated are the deprecated variables in use, each as "OLD (use NEW)", for Dial to warn about.
	Deprecated []string
}

// String describes t without its API key, key material or gRPC metadata values (which may carry
// credentials too).
func (t Temporal) String() string {
	p := t.Profile
	tlsOn := (p.TLS == nil && p.APIKey != "") || (p.TLS != nil && !p.TLS.Disabled)
	var clientCert, serverCA bool
	var serverName string
	if p.TLS != nil {
		clientCert = p.TLS.ClientCertPath != "" || len(p.TLS.ClientCertData) > 0
		serverCA = p.TLS.ServerCACertPath != "" || len(p.TLS.ServerCACertData) > 0
		serverName = p.TLS.ServerName
	}
	meta := make([]string, 0, len(p.GRPCMeta))
	for k := range p.GRPCMeta {
		meta = append(meta, k)
	}
	sort.Strings(meta)
	return fmt.Sprintf("{APIKey:%s TLS:%t ClientCert:%t ServerCA:%t ServerName:%s GRPCMeta:%v}",
		Secret(p.APIKey), tlsOn, clientCert, serverCA, serverName, meta)
}

// GoString is String, for %#v.
func (t Temporal) GoString() string { return t.String() }

// Format is String for every verb.
func (t Temporal) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// MarshalText is String, for JSON and slog.
func (t Temporal) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

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
func FromEnv() (Config, error) { return fromEnv(envconfig.EnvLookupOS) }

// Variables are the environment variables FromEnv reads, and VariablePrefixes the prefixes of the
// families it reads (TEMPORAL_GRPC_META_<header>: gRPC metadata sent to Temporal). A test holds them to
// what FromEnv looks up. Beyond these, the AWS SDK reads its own AWS_* variables when no static S3
// credentials are set.
var (
	Variables        = variables()
	VariablePrefixes = []string{"TEMPORAL_GRPC_META_"}
)

// IsVariable is whether FromEnv reads the variable name.
func IsVariable(name string) bool {
	if slices.Contains(Variables, name) {
		return true
	}
	for _, p := range VariablePrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

func variables() []string {
	v := []string{"MODELREG_DATA_DIR", "MODELREG_HTTP_ADDR", "MODELREG_API_TOKENS_FILE", "MODELREG_API_S3_SOURCES", "MODELREG_SERVER", "MODELREG_TOKEN",
		"TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE"}
	v = append(v, temporalVariables...)
	for _, d := range deprecatedTemporalVariables {
		v = append(v, d.old)
	}
	v = append(v, "MODELREG_DATABASE_URL", "MODELREG_ARTIFACT_ROOT")
	for _, prefix := range []string{"MODELREG_S3_", "MODELREG_SOURCE_S3_"} {
		for _, s := range artifact.S3EnvSuffixes {
			v = append(v, prefix+s)
		}
	}
	v = append(v, workerVariables...)
	v = append(v, "MODELREG_TEMPORAL_GRPC_COMPRESSION")
	return append(v, "MODELREG_WEBHOOK_SECRET", "MODELREG_PAYLOAD_KEY", "MODELREG_PAYLOAD_KEY_ID", "MODELREG_PAYLOAD_KEY_PREVIOUS")
}

// temporalVariables are the variables envconfig applies on top of a profile and the registry uses. Not
// TEMPORAL_CODEC_ENDPOINT and TEMPORAL_CODEC_AUTH, which envconfig reads too: payloads are encoded by the
// registry's own codec (MODELREG_PAYLOAD_KEY), never by a remote codec server, which a worker would call
// for every payload of every replay.
var temporalVariables = []string{
	"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_CLIENT_AUTHORITY", "TEMPORAL_TLS",
	"TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA", "TEMPORAL_TLS_CLIENT_KEY_PATH",
	"TEMPORAL_TLS_CLIENT_KEY_DATA", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
	"TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
}

// deprecatedTemporalVariables are the registry's own names from before it read envconfig's, still
// honoured for one release when envconfig's name is not set. TEMPORAL_TLS and TEMPORAL_TLS_SERVER_NAME
// were already envconfig's names.
var deprecatedTemporalVariables = []struct{ old, new string }{
	{"TEMPORAL_TLS_CERT", "TEMPORAL_TLS_CLIENT_CERT_PATH"},
	{"TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CLIENT_KEY_PATH"},
	{"TEMPORAL_TLS_CA", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"},
}

// aliasEnv is the environment as envconfig sees it: a deprecated name stands in for its replacement
// when the replacement is not set.
type aliasEnv struct {
	envconfig.EnvLookup
	used *[]string
}

func (e aliasEnv) LookupEnv(name string) (string, bool) {
	if v, ok := e.EnvLookup.LookupEnv(name); ok {
		return v, true
	}
	for _, d := range deprecatedTemporalVariables {
		if d.new == name {
			if v, ok := e.EnvLookup.LookupEnv(d.old); ok && v != "" {
				*e.used = append(*e.used, d.old+" (use "+d.new+")")
				return v, true
			}
		}
	}
	return "", false
}

func fromEnv(e envconfig.EnvLookup) (Config, error) {
	get := func(name string) string {
		v, _ := e.LookupEnv(name)
		return v
	}
	def := func(name, d string) string {
		if v := strings.TrimSpace(get(name)); v != "" {
			return v
		}
		return d
	}
	c := Config{DataDir: def("MODELREG_DATA_DIR", ".modelreg"), HTTPAddr: strings.TrimSpace(get("MODELREG_HTTP_ADDR")),
		APITokensFile: strings.TrimSpace(get("MODELREG_API_TOKENS_FILE")), Server: strings.TrimSpace(get("MODELREG_SERVER")),
		Token: Secret(strings.TrimSpace(get("MODELREG_TOKEN")))}
	for _, p := range strings.Split(get("MODELREG_API_S3_SOURCES"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, _, err := artifact.ParseS3URI(p); err != nil {
				return c, fmt.Errorf("MODELREG_API_S3_SOURCES: %w", err)
			}
			c.APISources = append(c.APISources, p)
		}
	}
	var err error
	if c.Temporal, err = temporalFromEnv(e); err != nil {
		return c, err
	}
	c.TemporalAddress = strings.TrimSpace(c.Temporal.Profile.Address)
	if c.TemporalAddress == "" {
		c.TemporalAddress = "127.0.0.1:7233"
	}
	c.Namespace = strings.TrimSpace(c.Temporal.Profile.Namespace)
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.S3, err = (artifact.S3Config{}).FromLookup("MODELREG_S3_", get); err != nil {
		return c, err
	}
	c.DatabaseURL = def("MODELREG_DATABASE_URL", "sqlite://"+filepath.Join(c.DataDir, "catalog.db"))
	c.ArtifactRoot = def("MODELREG_ARTIFACT_ROOT", filepath.Join(c.DataDir, "artifacts"))
	// Sources default to the store's endpoint and credentials, with any MODELREG_SOURCE_S3_* on top.
	if c.SourceS3, err = c.S3.FromLookup("MODELREG_SOURCE_S3_", get); err != nil {
		return c, err
	}
	if c.Worker, err = workerTuningFromEnv(get); err != nil {
		return c, err
	}
	c.GrpcCompression = strings.ToLower(strings.TrimSpace(get("MODELREG_TEMPORAL_GRPC_COMPRESSION")))
	if c.GrpcCompression == "" {
		c.GrpcCompression = DefaultGrpcCompression
	}
	if _, err = ParseGrpcCompression(c.GrpcCompression); err != nil {
		return c, err
	}
	c.WebhookSecret = Secret(get("MODELREG_WEBHOOK_SECRET"))
	if c.PayloadKeys, err = payloadKeysFromEnv(get); err != nil {
		return c, err
	}
	return c, nil
}

// temporalFromEnv loads the Temporal profile the way the temporal CLI does, so one config file and one set
// of TEMPORAL_* variables serve the CLI, the worker and the starter alike.
func temporalFromEnv(e envconfig.EnvLookup) (Temporal, error) {
	var t Temporal
	file, _ := e.LookupEnv("TEMPORAL_CONFIG_FILE")
	profile, _ := e.LookupEnv("TEMPORAL_PROFILE")
	if file == "" {
		// Without a home directory (a container's user may have none) there is no default file, which
		// is no reason to refuse to start; a profile asked for by name is.
		if file = envconfig.DefaultConfigFilePath(); file == "" && profile != "" {
			return t, fmt.Errorf("TEMPORAL_PROFILE=%s: no config file to read it from (no home directory); set TEMPORAL_CONFIG_FILE", profile)
		}
	}
	p, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{
		ConfigFilePath: file, ConfigFileProfile: profile, DisableFile: file == "",
		EnvLookup: aliasEnv{EnvLookup: e, used: &t.Deprecated},
	})
	if err != nil {
		return t, fmt.Errorf("reading the Temporal client settings (TEMPORAL_CONFIG_FILE %s, TEMPORAL_PROFILE %q): %w", file, profile, err)
	}
	t.Profile = p
	return t, nil
}

// UseDevServer points the client at the embedded default's Temporal dev server, which has no TLS and
// no API key whatever profile the config file holds for other servers.
func (c *Config) UseDevServer(address string) {
	c.TemporalAddress = address
	c.Temporal.Profile.APIKey = ""
	c.Temporal.Profile.TLS = &envconfig.ClientConfigTLS{Disabled: true}
}

// payloadKeysFromEnv reads MODELREG_PAYLOAD_KEY (base64 of 32 bytes) under the id MODELREG_PAYLOAD_KEY_ID
// (default "default"), then MODELREG_PAYLOAD_KEY_PREVIOUS: comma-separated <id>:<base64> keys that
// still decrypt payloads written before a rotation. Errors name variables and ids, never key material.
func payloadKeysFromEnv(getenv func(string) string) ([]codec.Key, error) {
	cur := strings.TrimSpace(getenv("MODELREG_PAYLOAD_KEY"))
	id := strings.TrimSpace(getenv("MODELREG_PAYLOAD_KEY_ID"))
	prev := strings.TrimSpace(getenv("MODELREG_PAYLOAD_KEY_PREVIOUS"))
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

// Dial connects to Temporal with the profile's credentials and TLS and the registry's data converter.
// With payload keys, every payload is encrypted (and decrypted) by the client and the workers built on
// it, and so are the messages and stack traces of failures.
func (c Config) Dial(logger *slog.Logger) (client.Client, error) {
	opts, err := c.clientOptions(logger)
	if err != nil {
		return nil, err
	}
	cl, err := client.Dial(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", c.TemporalAddress, c.Namespace, err)
	}
	return cl, nil
}

func (c Config) clientOptions(logger *slog.Logger) (client.Options, error) {
	dc, err := c.DataConverter()
	if err != nil {
		return client.Options{}, err
	}
	for _, d := range c.Temporal.Deprecated {
		logger.Warn("deprecated variable: " + d)
	}
	p := c.Temporal.Profile
	p.Address, p.Namespace = c.TemporalAddress, c.Namespace
	p.Codec = nil // the codec is the registry's (see temporalVariables)
	opts, err := p.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("the Temporal client settings: %w", err)
	}
	opts.DataConverter = dc
	if opts.ConnectionOptions.GrpcCompression, err = ParseGrpcCompression(c.GrpcCompression); err != nil {
		return client.Options{}, err
	}
	opts.Logger = log.NewStructuredLogger(logger)
	opts.MetricsHandler = c.MetricsHandler
	if len(c.PayloadKeys) > 0 {
		// An error's message is not a payload: without this it would be stored in the clear.
		opts.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter: dc, EncodeCommonAttributes: true,
		})
	}
	return opts, nil
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

// DefaultGrpcCompression is what MODELREG_TEMPORAL_GRPC_COMPRESSION is when unset (README,
// "Configuration"): not the SDK's gzip. The registry's requests are small (no model bytes enter a
// payload), so gzip saved little and cost CPU: in docs/benchmarks.md's A/B, both workers ran 21 % (the
// registry) and 26 % (the no-op mirror) more lifecycles a second over 20 models without it, and the
// registry's worker spent 23 % less CPU per lifecycle.
const DefaultGrpcCompression = "none"

// ParseGrpcCompression reads a MODELREG_TEMPORAL_GRPC_COMPRESSION value: "gzip" or "none", "" for
// DefaultGrpcCompression. The benchmark's baseline worker reads the same variable through it, so that
// both sides of a comparison compress alike.
func ParseGrpcCompression(v string) (client.GrpcCompression, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		v = DefaultGrpcCompression
	}
	switch v {
	case "gzip":
		return &client.GrpcCompressionGzip{}, nil
	case "none":
		return &client.GrpcCompressionNone{}, nil
	}
	return nil, fmt.Errorf("MODELREG_TEMPORAL_GRPC_COMPRESSION=%q: want gzip or none", v)
}
