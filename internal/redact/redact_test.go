package redact_test

import (
	"strings"
	"testing"

	"github.com/modelreg/modelreg/internal/redact"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://modelreg:s3cr3t@db:5432/modelreg?sslmode=disable":   "postgres://modelreg:xxxxx@db:5432/modelreg?sslmode=disable",
		"postgres://db/modelreg?password=s3cr3t&sslmode=disable":        "postgres://db/modelreg?password=xxxxx&sslmode=disable",
		"postgres://u@db/modelreg?password=s3cr3t":                      "postgres://u@db/modelreg?password=xxxxx",
		"postgres://u@db/modelreg":                                      "postgres://u@db/modelreg",
		"sqlite://.modelreg/catalog.db":                                 "sqlite://.modelreg/catalog.db",
		"sqlite:///abs/catalog.db":                                      "sqlite:///abs/catalog.db",
		"postgres://u:s3cr3t@db:99999999999999999999999999/x%zz":        "postgres://REDACTED@db:99999999999999999999999999/x%zz",
		"postgres://u:s3cr3t@db/x%zz?password=s3cr3t&sslmode=require":   "postgres://REDACTED@db/x%zz?password=xxxxx&sslmode=require",
		"postgresql://u:p%40ss@host/db":                                 "postgresql://u:xxxxx@host/db",
		"postgres://modelreg:s3cr3t@db/modelreg?sslpassword=s3cr3t&x=1": "postgres://modelreg:xxxxx@db/modelreg?sslpassword=xxxxx&x=1",
		// Order and escaping of the other parameters are kept; every secret-looking name is masked.
		"postgres://u@db/m?sslmode=verify-full&sslkey=/k.pem&PassWord=a&x=%2F": "postgres://u@db/m?sslmode=verify-full&sslkey=xxxxx&PassWord=xxxxx&x=%2F",
		"postgres://u@db/m?api_token=t&client_secret=s&sslrootcert=/ca.pem":    "postgres://u@db/m?api_token=xxxxx&client_secret=xxxxx&sslrootcert=/ca.pem",
		"postgres://u@db/m?pass%77ord=s3cr3t":                                  "postgres://u@db/m?pass%77ord=xxxxx",
		"postgres://u@db/m?password":                                           "postgres://u@db/m?password",
		// lib/pq's key=value form, and a URL that does not parse.
		"host=db user=u password=s3cr3t sslmode=disable": "host=db user=u password=xxxxx sslmode=disable",
		"host=db password='s3 cr\\'et' dbname=m":         "host=db password=xxxxx dbname=m",
		"not a url ://u:s3cr3t@h password=s3cr3t":        "not a url ://REDACTED@h password=xxxxx",
		"": "",
		// A password with an unescaped '/', '#' or '@' that breaks the URL apart.
		"postgres://u:s3cr3t/x@db/m?sslmode=disable": "postgres://REDACTED@db/m?sslmode=disable",
		"postgres://u:1234/s3cr3t@db/m":              "postgres://REDACTED@db/m",
		"postgres://u:s3#cr3t@db/m":                  "postgres://REDACTED@db/m",
		"postgres://u:s3@cr3t@db/m":                  "postgres://u:xxxxx@db/m",
		"postgres://u@db/m#password=s3cr3t":          "postgres://u@db/m#password=xxxxx",
	} {
		got := redact.URL(in)
		if got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "s3cr3t") || strings.Contains(got, "cr\\'et") {
			t.Errorf("URL(%q) = %q still holds the secret", in, got)
		}
	}
}

func TestIsSecretName(t *testing.T) {
	for _, n := range []string{"password", "sslpassword", "sslkey", "PWD", "token", "X-Amz-Signature", "aws_secret_access_key"} {
		if !redact.IsSecretName(n) {
			t.Errorf("%q is not treated as a secret", n)
		}
	}
	for _, n := range []string{"sslmode", "host", "user", "dbname", "application_name", "sslrootcert", "connect_timeout"} {
		if redact.IsSecretName(n) {
			t.Errorf("%q is treated as a secret", n)
		}
	}
}
