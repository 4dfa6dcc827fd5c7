package catalog

import "context"

// MigrateTo applies the migrations up to and including version, as an older build would have.
func (c *Catalog) MigrateTo(ctx context.Context, version int64) error { return c.migrate(ctx, version) }

// MigrateDownTo reverts the migrations above version.
func (c *Catalog) MigrateDownTo(ctx context.Context, version int64) error {
	return c.migrateDown(ctx, version)
}

// CreateLegacyVersion inserts a version row naming only the columns of migration 00001, as a build of
// that time did.
func (c *Catalog) CreateLegacyVersion(ctx context.Context, v Version) error {
	if err := ensureModel(ctx, c.db, v.Model); err != nil {
		return err
	}
	at := now()
	_, err := c.db.ExecContext(ctx, c.db.Rebind(`INSERT INTO versions (model, version, stage, idempotency_key, workflow_id,
		seq, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), v.Model, v.Version, StageRegistered, v.IdempotencyKey, v.WorkflowID, v.Seq, at, at)
	return err
}

// ParseURL is parseURL: the driver, DSN and dialect Open would use for a database URL.
func ParseURL(raw string) (driver, dsn, dialect string, err error) { return parseURL(raw) }
