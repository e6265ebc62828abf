-- yizheng schema, version 1. Portable SQL: SQLite and PostgreSQL run the same file
-- (the PostgreSQL store rewrites the few dialect words marked below).
-- No column here may hold a requester's name, phone, ID number or address.

CREATE TABLE cases (
    no              TEXT PRIMARY KEY,           -- the number the citizen was given
    feed            TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    town            TEXT NOT NULL,
    village         TEXT,                       -- NULL for sensitive cases
    kind            TEXT NOT NULL,
    category        TEXT,
    channel         TEXT,
    department      TEXT,
    stage           TEXT NOT NULL,
    outcome         TEXT,
    summary         TEXT,                       -- redacted; NULL for sensitive cases
    sensitive       INTEGER NOT NULL DEFAULT 0,
    received_at     TEXT NOT NULL,              -- ISO 8601 UTC
    updated_at      TEXT NOT NULL,
    resolved_at     TEXT,
    replied_at      TEXT,
    due_date        TEXT,
    due_estimated   INTEGER NOT NULL DEFAULT 0,
    first_reply_due TEXT,
    overdue         INTEGER NOT NULL DEFAULT 0,
    on_time         INTEGER,                    -- closed within its deadline; NULL while open
    supervised      INTEGER NOT NULL DEFAULT 0,
    supervised_note TEXT,
    satisfaction    TEXT,
    withdrawn       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (feed, source_id)
);
CREATE INDEX cases_town_stage ON cases (town, stage);
CREATE INDEX cases_received ON cases (received_at);

CREATE TABLE case_timeline (
    id          INTEGER PRIMARY KEY /*AUTOINCREMENT*/,
    no          TEXT NOT NULL REFERENCES cases (no) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    stage       TEXT NOT NULL,
    note        TEXT,
    department  TEXT,
    outcome     TEXT
);
CREATE INDEX case_timeline_no ON case_timeline (no, at);

-- The bus: a change and its event commit together; seq is the SSE event id.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY /*AUTOINCREMENT*/,
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,                      -- case | notice | stats | board
    town    TEXT,                               -- NULL: county-wide
    data    TEXT NOT NULL                       -- JSON, public projection only
);
CREATE INDEX events_town ON events (town, seq);

CREATE TABLE notices (
    id           INTEGER PRIMARY KEY /*AUTOINCREMENT*/,
    town         TEXT,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    case_no      TEXT,
    urgent       INTEGER NOT NULL DEFAULT 0,
    publish_at   TEXT,
    expires_at   TEXT,
    withdrawn_at TEXT,
    created_at   TEXT NOT NULL,
    created_by   TEXT,
    announced    INTEGER NOT NULL DEFAULT 0     -- 1 once its going live was announced
);
CREATE INDEX notices_town ON notices (town, created_at);

CREATE TABLE boards (
    id           TEXT PRIMARY KEY,
    town         TEXT,
    profile      TEXT NOT NULL,                 -- JSON board profile
    token_hash   TEXT,
    last_seen_at TEXT,
    created_at   TEXT NOT NULL
);

CREATE TABLE feed_state (
    name                 TEXT PRIMARY KEY,
    cursor               TEXT,
    last_attempt_at      TEXT,
    last_success_at      TEXT,
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    counts               TEXT
);

-- A rejected record: its source id and why; never its raw content.
CREATE TABLE quarantine (
    id        INTEGER PRIMARY KEY /*AUTOINCREMENT*/,
    feed      TEXT NOT NULL,
    source_id TEXT,
    reason    TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE INDEX quarantine_feed ON quarantine (feed, at);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY /*AUTOINCREMENT*/,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,                -- admin | county | town
    towns         TEXT NOT NULL DEFAULT '',     -- comma-separated slugs for role town
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);

-- Append-only: the store offers no update or delete for it.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY /*AUTOINCREMENT*/,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT,
    ip      TEXT
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
