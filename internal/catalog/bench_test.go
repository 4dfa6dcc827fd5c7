package catalog_test

import (
	"context"
	"strings"
	"testing"

	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

// BenchmarkPostgresStatement reads one version row on a real PostgreSQL with lib/pq's
// binary_parameters, which Open sets, and without it (two round trips per statement): go test
// -bench PostgresStatement ./internal/catalog/. The two are measured in the same run; compare their ns/op.
func BenchmarkPostgresStatement(b *testing.B) {
	ctx := context.Background()
	url := testenv.Postgres(b)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	for _, tc := range []struct{ name, url string }{
		{"binary_parameters=yes", url},
		{"binary_parameters=no", url + sep + "binary_parameters=no"},
	} {
		c, err := catalog.Open(ctx, tc.url)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.MintVersion(ctx, catalog.Version{Model: "bench", IdempotencyKey: "k", WorkflowID: "model/bench/v1"}); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.GetVersion(ctx, "bench", 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
