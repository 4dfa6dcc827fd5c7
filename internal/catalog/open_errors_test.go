package catalog_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

// TestOpenErrorsHideThePassword makes catalog.Open fail for real — nothing listening on the port, and a
// real PostgreSQL refusing an unknown database — with the password in the user info and in every query
// parameter lib/pq reads one from, and checks that the error names the server but not the password.
func TestOpenErrorsHideThePassword(t *testing.T) {
	ctx := context.Background()
	const secret = "hunter2-s3cr3t"
	pg := testenv.Postgres(t) // postgres://postgres@127.0.0.1:<port>/<db>?sslmode=disable
	host := strings.TrimPrefix(pg, "postgres://postgres@")
	host = host[:strings.Index(host, "/")]
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	for _, url := range []string{
		"postgres://u@" + closed + "/db?sslmode=disable&password=" + secret,
		"postgres://u:" + secret + "@" + closed + "/db?sslmode=disable",
		"postgresql://u@" + closed + "/db?password=" + secret + "&sslpassword=" + secret + "&sslmode=disable",
		"postgres://postgres@" + host + "/no_such_database?password=" + secret + "&sslmode=disable",
	} {
		c, err := catalog.Open(ctx, url)
		if err == nil {
			c.Close()
			t.Fatalf("Open(%s) succeeded", url)
		}
		msg := err.Error()
		if strings.Contains(msg, secret) {
			t.Errorf("Open's error shows the password:\n%s", msg)
		}
		if !strings.Contains(msg, "catalog: connect to postgres") {
			t.Errorf("Open's error does not say what it connected to:\n%s", msg)
		}
		t.Log(msg)
	}
	if _, err := catalog.Open(ctx, "mysql://u:"+secret+"@h/db?password="+secret); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("unsupported URL: %v", err)
	}
}

// A PostgreSQL URL gets lib/pq's binary_parameters (one round trip per statement instead of two) unless
// it sets the option itself; everything else in it reaches the driver as given, and a URL that does not
// parse is refused without its password.
func TestPostgresURLGetsBinaryParameters(t *testing.T) {
	for raw, want := range map[string]string{
		"postgres://u:p%40ss@h:5432/db?sslmode=disable": "postgres://u:p%40ss@h:5432/db?binary_parameters=yes&sslmode=disable",
		"postgresql://u@h/db":                           "postgresql://u@h/db?binary_parameters=yes",
		"postgres://u@h/db?binary_parameters=no":        "postgres://u@h/db?binary_parameters=no",
	} {
		driver, dsn, dialect, err := catalog.ParseURL(raw)
		if err != nil || driver != "postgres" || dialect != catalog.DialectPostgres || dsn != want {
			t.Errorf("ParseURL(%s) = %s %s %s %v, want the DSN %s", raw, driver, dsn, dialect, err, want)
		}
	}
	_, _, _, err := catalog.ParseURL("postgres://u:hunter2@h:port/db")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a URL with a bad port: %v", err)
	}
}
