-- Which factlog release introduced each schema version. An older binary that finds a
-- version it does not know reads here which release it needs, and says so in one line
-- instead of sqlx's "previously applied but missing". Every later migration adds its own
-- row, naming the release that first ships it.
CREATE TABLE schema_versions (
    version INTEGER PRIMARY KEY,
    factlog_version TEXT NOT NULL
);

INSERT INTO schema_versions (version, factlog_version)
VALUES (1, '0.1.0'), (2, '0.2.0'), (3, '0.2.0'), (4, '0.2.0');
