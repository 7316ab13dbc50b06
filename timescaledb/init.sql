-- Schema of the wearable ingestion service, as a sequence of numbered migrations.
--
-- The official TimescaleDB image runs this file once, from /docker-entrypoint-initdb.d,
-- when it creates a new volume; a database created that way is already current. The
-- ingester (ingestion/ingester/schema.py) runs the same file only when a version named in a
-- `-- migration N: name` header below is missing from schema_migrations, under a short
-- lock_timeout. So the file stays pure SQL (no psql meta-commands), and running it again is
-- a no-op.
--
-- Adding to the schema: append ONE block of the form below, with the next version number
-- (numbers are assigned in advance, so branches don't collide). A migration on main is never
-- edited: fix forward with a new one. Nested bodies inside a block use other $tags$.
--
--   -- migration N: short-name
--   DO $migration$
--   BEGIN
--       IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = N) THEN RETURN; END IF;
--       ...the DDL of this step...
--       INSERT INTO schema_migrations (version, name) VALUES (N, 'short-name');
--   END
--   $migration$;

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Which migrations this database has had. A database without this table was created by an
-- older init.sql (or is empty): migration 1 brings it to the baseline in place.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- migration 1: baseline
-- The schema as it was before migrations existed. Every statement tolerates what an older
-- init.sql already created, so a database made by any earlier version upgrades in place.
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 1) THEN RETURN; END IF;

    -- One row per measured point. `timestamp` is the instant of the point (UTC-normalised
    -- timestamptz); `metric_type` is one word of the vocabulary in the README; `value` is in
    -- that metric's unit.
    CREATE TABLE IF NOT EXISTS raw_data (
        "timestamp"     timestamptz      NOT NULL,
        participant_id  text             NOT NULL,
        metric_type     text             NOT NULL,
        value           double precision NOT NULL,
        -- The key every write upserts on: re-reading an overlap or a late sync is harmless.
        CONSTRAINT raw_data_key UNIQUE (participant_id, metric_type, "timestamp")
    );

    -- Chunks of 1 day. A chunk's indexes are hot while it is being written and should fit in
    -- about a quarter of shared_buffers. A cohort of 1,000 at 1 Hz heart rate writes ~86 M
    -- rows a day, ~5 GB of index per daily chunk; a week-long chunk would be 7x that and
    -- spill out of memory. Smaller cohorts can keep 1 day: chunks are cheap. To change it
    -- later: SELECT set_chunk_time_interval('raw_data', INTERVAL '…');
    PERFORM create_hypertable(
        'raw_data',
        by_range('timestamp', INTERVAL '1 day'),
        if_not_exists => TRUE
    );

    -- The cohort. Who is loaded, from which source, in which zone, from which local day on.
    CREATE TABLE IF NOT EXISTS participants (
        participant_id  text        PRIMARY KEY CHECK (participant_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
        timezone        text        NOT NULL,
        source          text        NOT NULL CHECK (source IN ('synthetic', 'google_health')),
        start_date      date        NOT NULL,
        seed            bigint,
        enrolled_at     timestamptz NOT NULL DEFAULT now(),
        CHECK (source <> 'synthetic' OR seed IS NOT NULL)
    );

    -- OAuth grants of Google Health participants. Readable by whoever can read this database:
    -- keep the DB user to the ingester and the lab's data engineers (see README, "Tokens").
    CREATE TABLE IF NOT EXISTS google_credentials (
        participant_id  text        PRIMARY KEY REFERENCES participants ON DELETE CASCADE,
        refresh_token   text        NOT NULL,
        updated_at      timestamptz NOT NULL DEFAULT now(),
        -- Set when Google answers invalid_grant: the participant must consent again.
        needs_consent_since timestamptz
    );

    -- The run log: one row per run and participant. Written in the same transaction as the
    -- participant's data when it succeeds, so "ok" always means "committed".
    CREATE TABLE IF NOT EXISTS ingest_runs (
        id              bigserial   PRIMARY KEY,
        run_id          uuid        NOT NULL,
        participant_id  text        NOT NULL,
        window_start    timestamptz,  -- NULL when the participant failed before a window was planned
        window_end      timestamptz,
        rows_read       bigint      NOT NULL DEFAULT 0,
        rows_written    bigint      NOT NULL DEFAULT 0,
        rows_rejected   bigint      NOT NULL DEFAULT 0,
        status          text        NOT NULL CHECK (status IN ('ok', 'failed', 'needs_consent')),
        -- The participant's watermark once this run committed; NULL when the run did not move
        -- it (a failure, or a backfill that left a gap). The state file mirrors it.
        watermark       timestamptz,
        error           text,
        started_at      timestamptz NOT NULL,
        -- clock_timestamp(), not now(): now() is the transaction's start, not the row's.
        finished_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
        duration        interval GENERATED ALWAYS AS (finished_at - started_at) STORED
    );
    -- Databases created by the first version of init.sql lack these two.
    ALTER TABLE ingest_runs ALTER COLUMN finished_at SET DEFAULT clock_timestamp();
    ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS watermark timestamptz;
    CREATE INDEX IF NOT EXISTS ingest_runs_participant ON ingest_runs (participant_id, finished_at DESC);

    -- "What was loaded, when, and what failed": the latest run of every participant.
    CREATE OR REPLACE VIEW participant_status AS
    SELECT DISTINCT ON (participant_id)
           participant_id, status, window_start, window_end, rows_written, rows_rejected,
           error, finished_at, duration
    FROM ingest_runs
    ORDER BY participant_id, finished_at DESC, id DESC;

    -- Compression and its policy exist only in the community (Timescale License) edition,
    -- which the official Docker image ships. The Apache-only builds of Debian raise a licence
    -- error on them, so they run only when the licence allows.
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        RAISE NOTICE 'timescaledb.license is %, skipping compression', current_setting('timescaledb.license', true);
    ELSE
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                       WHERE hypertable_name = 'raw_data' AND compression_enabled) THEN
            ALTER TABLE raw_data SET (
                timescaledb.compress,
                timescaledb.compress_segmentby = 'participant_id, metric_type',
                timescaledb.compress_orderby = '"timestamp"'
            );
        END IF;
        -- Older than a week: late syncs rarely reach that far back, and upserts into
        -- compressed chunks still work, only slower.
        PERFORM add_compression_policy('raw_data', INTERVAL '7 days', if_not_exists => TRUE);
    END IF;

    INSERT INTO schema_migrations (version, name) VALUES (1, 'baseline');
END
$migration$;

-- migration 3: google devices and scopes
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 3) THEN RETURN; END IF;
    -- What users.pairedDevices last said about each of a Google participant's devices
    -- (ingester/devices.py): the latest state per device, for `status` and the morning
    -- report. The newest tracker sync bounds the participant's watermarks.
    CREATE TABLE IF NOT EXISTS google_devices (
        participant_id  text        NOT NULL REFERENCES participants ON DELETE CASCADE,
        device_id       text        NOT NULL,  -- Google's resource name of the device
        device_type     text        NOT NULL,  -- TRACKER, SCALE, or what Google adds
        device_version  text,                  -- the product name, e.g. "Charge 6"
        last_sync_time  timestamptz,           -- its last sync with the Fitbit app
        battery_level   integer,
        battery_status  text,                  -- High, Medium, Low or Empty
        seen_at         timestamptz NOT NULL,  -- when the ingester last read this
        PRIMARY KEY (participant_id, device_id)
    );
    -- The read scopes a 403 showed the participant's grant lacks (cleared by re-enrolment):
    -- the streams under them are not loaded until the participant consents again.
    ALTER TABLE google_credentials
        ADD COLUMN IF NOT EXISTS missing_scopes text[] NOT NULL DEFAULT '{}';
    INSERT INTO schema_migrations (version, name) VALUES (3, 'google devices and scopes');
END
$migration$;

-- migration 5: compression
-- The compression policy compresses a chunk once no late data can reach it any more: older
-- than the late-sync horizon (LATE_SYNC_HORIZON_DAYS, 7: a Fitbit tracker keeps about 7
-- days of minute data, so nothing older can still arrive) plus the overlap a run re-reads
-- before its watermark (OVERLAP_HOURS, 24). Then the nightly run's re-read [now - 8 days,
-- now) never reaches a compressed chunk, and the points a late sync still delivers land in
-- uncompressed chunks: writing into a compressed chunk decompresses the batches the rows
-- fall into and leaves the chunk partially compressed until the policy's next run. A re-read
-- that does reach compressed chunks (--since, a backfill) still decompresses nothing unless
-- it changes something: the writer compares before it writes (ingester/writer.py).
-- Raise both together: with LATE_SYNC_HORIZON_DAYS=14, run
--   SELECT remove_compression_policy('raw_data');
--   SELECT add_compression_policy('raw_data', INTERVAL '15 days');
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 5) THEN RETURN; END IF;
    -- Compression exists only in the community (Timescale License) edition; see above.
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        PERFORM remove_compression_policy('raw_data', if_exists => TRUE);
        PERFORM add_compression_policy('raw_data', INTERVAL '8 days');
    END IF;
    INSERT INTO schema_migrations (version, name) VALUES (5, 'compression');
END
$migration$;
