-- An Alembic-managed (SQLAlchemy) application schema: alembic_version plus a table.
-- Portable SQL: loaded as is into SQLite, PostgreSQL and MariaDB/MySQL by dbdump's tests.
-- Applied revision: 4f2e9a1c7b3d.
CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL PRIMARY KEY
);
INSERT INTO alembic_version (version_num) VALUES ('4f2e9a1c7b3d');

CREATE TABLE part (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    description TEXT,
    stock INTEGER NOT NULL DEFAULT 0
);
INSERT INTO part (id, name, description, stock) VALUES
    (1, 'Resistor 10k', '0603 1%', 5000),
    (2, 'Capacitor 100n', NULL, 1200),
    (3, 'LED red', 'T-1 3/4', 300);
