// Package catalog is the registry's queryable projection of model and version state (docs/architecture.md, "Where
// state lives"). The workflows are the authority; the catalog is written only by their activities, so
// every write here is idempotent (an activity retry is harmless) and fenced by a sequence number (a late
// retry never overwrites newer state). The database itself enforces the invariants it can: at most one
// Production version per model, write-once registrations and manifests, one audit row per transition.
//
// The same SQL serves PostgreSQL (production) and SQLite (the embedded default); sqlx rebinds the
// placeholders for each driver.
package catalog

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/modelreg/modelreg/internal/redact"
)

// Dialect names, as returned by (*Catalog).Dialect.
const (
	DialectPostgres = "postgres"
	DialectSQLite   = "sqlite"
)

//go:embed migrations
var migrations embed.FS

// sqliteBusyTimeout is how long a SQLite writer waits for another process's write transaction (a CLI
// next to the worker, say) before giving up with SQLITE_BUSY. Within one process the single connection
// already serializes writers.
const sqliteBusyTimeout = 10 * time.Second

// Catalog is a handle on one catalog database. It is safe for concurrent use.
type Catalog struct {
	db      *sqlx.DB
	dialect string
}

// Open connects to the catalog at dbURL:
//
//	postgres://user:pass@host:5432/db?sslmode=disable   (also postgresql://)
//	sqlite:///absolute/path/catalog.db
//	sqlite://relative/path/catalog.db
//
// It does not create the schema; call Migrate.
// postgresMaxConns bounds one process's connections to PostgreSQL; more would queue in PostgreSQL
// instead of in database/sql, with a backend's memory each.
const postgresMaxConns = 16

func Open(ctx context.Context, dbURL string) (*Catalog, error) {
	driver, dsn, dialect, err := parseURL(dbURL)
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("catalog: open %s: %w", dialect, err)
	}
	if dialect == DialectSQLite {
		// SQLite allows one writer at a time. Funnelling every statement through one connection makes
		// concurrent callers queue in database/sql instead of failing with SQLITE_BUSY, and it means a
		// transaction never waits for a lock held by a sibling connection of the same process.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	} else {
		// database/sql keeps 2 idle connections by default: under concurrent API reads every other
		// query would open a new PostgreSQL backend (a fork and an authentication) and close it again.
		db.SetMaxOpenConns(postgresMaxConns)
		db.SetMaxIdleConns(postgresMaxConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("catalog: connect to %s: %w", redact.URL(dbURL), err)
	}
	if dialect == DialectSQLite {
		if err := enableWAL(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("catalog: %s: %w", redact.URL(dbURL), err)
		}
	}
	return &Catalog{db: db, dialect: dialect}, nil
}

// enableWAL switches the database file to WAL mode (a no-op once it is), waiting up to the busy timeout
// for other connections. It is not a DSN pragma because SQLite does not call the busy handler for it:
// on a fresh file the switch is a write made while the pragma holds a read lock, and a connection that
// must upgrade a lock it holds gets SQLITE_BUSY at once when another one is writing (the other handle's
// own switch, say), so handles opening a new catalog together failed within milliseconds. The mode is
// stored in the file, so later connections of the pool open it in WAL mode without the pragma.
func enableWAL(ctx context.Context, db *sqlx.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	delay := time.Millisecond
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("set journal_mode WAL: %w", err)
			}
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("set journal_mode WAL: %w", ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func parseURL(raw string) (driver, dsn, dialect string, err error) {
	switch {
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		u, err := url.Parse(raw)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its message quotes the URL, password and all
			}
			return "", "", "", fmt.Errorf("catalog: database URL %q: %v", redact.URL(raw), err)
		}
		// lib/pq sends a statement with parameters in two round trips by default (parse and describe,
		// then bind and execute); with binary_parameters in one. Nearly every catalog statement has
		// parameters (docs/benchmarks.md has what the trip saved). A URL that sets the option keeps its
		// own value.
		if q := u.Query(); !q.Has("binary_parameters") {
			q.Set("binary_parameters", "yes")
			u.RawQuery = q.Encode()
		}
		return "postgres", u.String(), DialectPostgres, nil
	case strings.HasPrefix(raw, "sqlite://"):
		path := strings.TrimPrefix(raw, "sqlite://")
		if path == "" || path == "/" {
			return "", "", "", fmt.Errorf("catalog: %q names no database file (want sqlite:///abs/path.db or sqlite://rel.db)", raw)
		}
		// The driver splits its DSN at the first '?', so such a path could not be opened faithfully.
		if strings.ContainsAny(path, "?#") {
			return "", "", "", fmt.Errorf("catalog: sqlite path %q must not contain '?' or '#'", path)
		}
		q := url.Values{}
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
		// journal_mode(WAL) is set by enableWAL, not here.
		q.Add("_pragma", "foreign_keys(1)")
		// NORMAL is durable in WAL mode except against power loss of the last commits, the usual choice.
		q.Add("_pragma", "synchronous(NORMAL)")
		// IMMEDIATE takes the write lock at BEGIN. A deferred transaction that reads and then writes can
		// fail with SQLITE_BUSY without waiting when another process wrote in between; busy_timeout
		// cannot help it.
		q.Set("_txlock", "immediate")
		// An RFC 3339-like text form that sorts chronologically (all times are UTC) and scans back into
		// time.Time from TIMESTAMP columns.
		q.Set("_time_format", "sqlite")
		return "sqlite", path + "?" + q.Encode(), DialectSQLite, nil
	default:
		return "", "", "", fmt.Errorf("catalog: unsupported database URL %q (want postgres://, postgresql:// or sqlite://)", redact.URL(raw))
	}
}

// Dialect reports which database the catalog is on: DialectPostgres or DialectSQLite.
func (c *Catalog) Dialect() string { return c.dialect }

// Close closes the database handle.
func (c *Catalog) Close() error { return c.db.Close() }

// Migrate brings the schema up to date. It is safe to call on every start: applied migrations are
// skipped, and on PostgreSQL an advisory lock serializes workers starting at the same time.
func (c *Catalog) Migrate(ctx context.Context) error { return c.migrate(ctx, goose.MaxVersion) }

// migrate applies the migrations up to and including version target.
func (c *Catalog) migrate(ctx context.Context, target int64) error {
	p, err := c.migrationProvider()
	if err != nil {
		return err
	}
	// SQLite has no advisory lock, so processes migrating a fresh file together race: the loser picks a
	// migration the winner is applying and fails on it. Each migration runs in one transaction, DDL
	// included, so the loser wrote nothing, and a retry finds the winner's work. A loser fails at most
	// once per migration (it lists what is pending once per attempt) and once creating goose's own table.
	attempts := len(p.ListSources()) + 2
	for attempt := 1; ; attempt++ {
		_, err = p.UpTo(ctx, target)
		if err == nil {
			return nil
		}
		if c.dialect != DialectSQLite || attempt >= attempts || ctx.Err() != nil {
			return fmt.Errorf("catalog: migrate %s: %w", c.dialect, err)
		}
	}
}

// migrateDown reverts the migrations above version target (for tests of the down migrations).
func (c *Catalog) migrateDown(ctx context.Context, target int64) error {
	p, err := c.migrationProvider()
	if err != nil {
		return err
	}
	if _, err := p.DownTo(ctx, target); err != nil {
		return fmt.Errorf("catalog: migrate %s down to %d: %w", c.dialect, target, err)
	}
	return nil
}

func (c *Catalog) migrationProvider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+c.dialect)
	if err != nil {
		return nil, fmt.Errorf("catalog: migrations for %s: %w", c.dialect, err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	gooseDialect := goose.DialectSQLite3
	if c.dialect == DialectPostgres {
		gooseDialect = goose.DialectPostgres
		// Probe every second, for up to five minutes, rather than goose's default of every five seconds.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, fmt.Errorf("catalog: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	// The provider is not closed: its Close would close our *sql.DB.
	p, err := goose.NewProvider(gooseDialect, c.db.DB, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("catalog: migrations: %w", err)
	}
	return p, nil
}

// inTx runs fn in a transaction, committing if it returns nil.
func (c *Catalog) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := c.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: commit: %w", err)
	}
	return nil
}

// now is the timestamp written for a change. PostgreSQL keeps microseconds, so truncating here makes
// what a caller wrote and what it reads back compare equal on both dialects.
func now() time.Time { return utc(time.Now()) }

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func isUniqueViolation(err error) bool {
	if pq.As(err, pqerror.UniqueViolation) != nil {
		return true
	}
	var se *sqlite.Error
	return errors.As(err, &se) &&
		(se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func isForeignKeyViolation(err error) bool {
	if pq.As(err, pqerror.ForeignKeyViolation) != nil {
		return true
	}
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
