package dbdump

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// querier is the little each engine provides for reading migrations: whether a table
// exists and the rows of a query as strings.
type querier interface {
	tableExists(ctx context.Context, name string) (bool, error)
	rows(ctx context.Context, query string) ([][]string, error)
}

const (
	djangoMigrationsQuery  = "SELECT app, name FROM django_migrations ORDER BY id"
	alembicMigrationsQuery = "SELECT version_num FROM alembic_version ORDER BY version_num"
)

// readMigrations reads the applied migrations the way cfg.Migrations says:
//
//   - django: the latest applied migration name per app (django_migrations, by id);
//   - alembic: "alembic" -> the version(s) in alembic_version, comma-separated when
//     there are several heads;
//   - sql: MigrationsQuery returns (key, value) rows.
//
// It returns nil when no migrations are configured.
func readMigrations(ctx context.Context, q querier, cfg Config, database string) (map[string]string, error) {
	switch cfg.Migrations {
	case "":
		return nil, nil
	case "django":
		if err := needTable(ctx, q, "django_migrations", database); err != nil {
			return nil, err
		}
		rows, err := q.rows(ctx, djangoMigrationsQuery)
		if err != nil {
			return nil, fmt.Errorf("read django_migrations: %w", err)
		}
		m := make(map[string]string)
		for _, r := range rows {
			if len(r) != 2 {
				return nil, fmt.Errorf("read django_migrations: got %d columns, want 2", len(r))
			}
			m[r[0]] = r[1] // ordered by id: the last one wins
		}
		return m, nil
	case "alembic":
		if err := needTable(ctx, q, "alembic_version", database); err != nil {
			return nil, err
		}
		rows, err := q.rows(ctx, alembicMigrationsQuery)
		if err != nil {
			return nil, fmt.Errorf("read alembic_version: %w", err)
		}
		var heads []string
		for _, r := range rows {
			if len(r) != 1 {
				return nil, fmt.Errorf("read alembic_version: got %d columns, want 1", len(r))
			}
			heads = append(heads, r[0])
		}
		sort.Strings(heads)
		return map[string]string{"alembic": strings.Join(heads, ",")}, nil
	case "sql":
		rows, err := q.rows(ctx, cfg.MigrationsQuery)
		if err != nil {
			return nil, fmt.Errorf("run migrations query: %w", err)
		}
		m := make(map[string]string)
		for _, r := range rows {
			if len(r) != 2 {
				return nil, fmt.Errorf("migrations query returned %d columns, want 2 (key, value)", len(r))
			}
			m[r[0]] = r[1]
		}
		return m, nil
	default:
		return nil, fmt.Errorf("%w: migrations %q", ErrUnsupported, cfg.Migrations)
	}
}

func needTable(ctx context.Context, q querier, table, database string) error {
	ok, err := q.tableExists(ctx, table)
	if err != nil {
		return fmt.Errorf("look for migration table %s: %w", table, err)
	}
	if !ok {
		return fmt.Errorf("%w: table %s does not exist in database %s", ErrMigrationTableMissing, table, database)
	}
	return nil
}
