package catalog

import "context"

// MigrateTo applies the migrations up to and including version, as an older build would have.
func (c *Catalog) MigrateTo(ctx context.Context, version int64) error { return c.migrate(ctx, version) }

// MigrateDownTo reverts the migrations above version.
func (c *Catalog) MigrateDownTo(ctx context.Context, version int64) error {
	return c.migrateDown(ctx, version)
}
