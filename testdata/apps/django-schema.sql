-- A Paperless-ngx-like Django schema: django_migrations plus a few application tables.
-- Portable SQL: loaded as is into SQLite, PostgreSQL and MariaDB/MySQL by dbdump's tests.
-- Latest applied migration per app (by id): admin 0003_logentry_add_action_flag_choices,
-- auth 0012_alter_user_first_name_max_length, contenttypes 0002_remove_content_type_name,
-- documents 1016_auto_20210317_1351, paperless_mail 0008_auto_20210516_0940,
-- sessions 0001_initial.
CREATE TABLE django_migrations (
    id INTEGER NOT NULL PRIMARY KEY,
    app VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    applied TIMESTAMP NOT NULL
);
INSERT INTO django_migrations (id, app, name, applied) VALUES
    (1, 'contenttypes', '0001_initial', '2021-03-01 10:00:00'),
    (2, 'auth', '0001_initial', '2021-03-01 10:00:01'),
    (3, 'admin', '0001_initial', '2021-03-01 10:00:02'),
    (4, 'admin', '0002_logentry_remove_auto_add', '2021-03-01 10:00:03'),
    (5, 'admin', '0003_logentry_add_action_flag_choices', '2021-03-01 10:00:04'),
    (6, 'contenttypes', '0002_remove_content_type_name', '2021-03-01 10:00:05'),
    (7, 'auth', '0002_alter_permission_name_max_length', '2021-03-01 10:00:06'),
    (8, 'auth', '0011_update_proxy_permissions', '2021-03-01 10:00:07'),
    (9, 'documents', '0001_initial', '2021-03-01 10:00:08'),
    (10, 'documents', '1000_update_paperless_all', '2021-03-01 10:00:09'),
    (11, 'documents', '1015_remove_document_added', '2021-03-01 10:00:10'),
    (12, 'auth', '0012_alter_user_first_name_max_length', '2021-03-01 10:00:11'),
    (13, 'documents', '1016_auto_20210317_1351', '2021-03-17 13:51:00'),
    (14, 'paperless_mail', '0001_initial', '2021-03-20 09:00:00'),
    (15, 'paperless_mail', '0008_auto_20210516_0940', '2021-05-16 09:40:00'),
    (16, 'sessions', '0001_initial', '2021-03-01 10:00:12');

CREATE TABLE documents_correspondent (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(128) NOT NULL UNIQUE
);
INSERT INTO documents_correspondent (id, name) VALUES
    (1, 'ACME Insurance'), (2, 'City Water'), (3, 'Tax Office');

CREATE TABLE documents_document (
    id INTEGER NOT NULL PRIMARY KEY,
    correspondent_id INTEGER REFERENCES documents_correspondent (id),
    title VARCHAR(128) NOT NULL,
    content TEXT NOT NULL,
    checksum VARCHAR(32) NOT NULL UNIQUE,
    created TIMESTAMP NOT NULL
);
CREATE INDEX documents_document_title ON documents_document (title);
INSERT INTO documents_document (id, correspondent_id, title, content, checksum, created) VALUES
    (1, 1, 'Policy 2021', 'Your insurance policy for 2021. Tab	and ''quote'' and a semicolon; inside.', '0b1f0ef6b8f0a5c44d1ad1c9bc1e2a11', '2021-01-05 08:00:00'),
    (2, 2, 'Water bill Q1', 'Amount due: 42.17 EUR', '1c2e5d9b7e7c4f1d8f3f0b6a2a9e3c22', '2021-04-02 09:30:00'),
    (3, NULL, 'Scan 0001', '', '2d3f6e0c8f8d5e2e9e4e1c7b3bae4d33', '2021-04-03 11:00:00'),
    (4, 3, 'Tax assessment 2020', 'Multi
line
content', '3e4a7f1d9e9e6f3fafaf2d8c4cbf5e44', '2021-06-30 15:45:00');

CREATE TABLE documents_tag (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    color VARCHAR(7) NOT NULL
);
INSERT INTO documents_tag (id, name, color) VALUES (1, 'inbox', '#a6cee3'), (2, 'paid', '#1f78b4');

-- A many-to-many table without a primary key of its own.
CREATE TABLE documents_document_tags (
    document_id INTEGER NOT NULL REFERENCES documents_document (id),
    tag_id INTEGER NOT NULL REFERENCES documents_tag (id)
);
INSERT INTO documents_document_tags (document_id, tag_id) VALUES (2, 2), (1, 1), (2, 1), (4, 1);
