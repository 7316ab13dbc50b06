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
    -- (ingester/sources/google_health/devices.py): the latest state per device, for `status` and the morning
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

-- migration 6: rollups
-- data_1m, data_1h (UTC buckets) and data_1d (the participant's local day) summarise
-- raw_data per participant and metric; adherence_daily holds wear minutes per local day.
-- The ingester keeps all four in the transaction that writes the raw rows
-- (ingestion/ingester/rollups.py), for the buckets of the slice it wrote. Plain tables, not
-- continuous aggregates: the Apache edition has none, and the same code then runs on both
-- editions (README, "Rollups and adherence").
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 6) THEN RETURN; END IF;

    CREATE TABLE data_1m (
        bucket          timestamptz      NOT NULL,  -- start of the UTC minute
        participant_id  text             NOT NULL,
        metric_type     text             NOT NULL,
        count           bigint           NOT NULL,
        min             double precision NOT NULL,
        max             double precision NOT NULL,
        mean            double precision NOT NULL,
        sum             double precision NOT NULL,
        PRIMARY KEY (participant_id, metric_type, bucket)
    );
    -- A week per chunk: at most 1,440 rows per participant, metric and day (heart rate: a
    -- sixtieth of its raw rows).
    PERFORM create_hypertable('data_1m', by_range('bucket', INTERVAL '7 days'));

    CREATE TABLE data_1h (LIKE data_1m INCLUDING ALL);  -- bucket: start of the UTC hour
    -- "Latest data of a participant" (participant_flags) without naming a metric.
    CREATE INDEX data_1h_latest ON data_1h (participant_id, bucket DESC);

    CREATE TABLE data_1d (
        day             date             NOT NULL,  -- the participant's local date
        participant_id  text             NOT NULL,
        metric_type     text             NOT NULL,
        count           bigint           NOT NULL,
        min             double precision NOT NULL,
        max             double precision NOT NULL,
        mean            double precision NOT NULL,
        sum             double precision NOT NULL,
        PRIMARY KEY (participant_id, metric_type, day)
    );

    -- One row per participant and local day with at least one heart-rate sample.
    CREATE TABLE adherence_daily (
        participant_id  text        NOT NULL,
        day             date        NOT NULL,  -- the participant's local date
        wear_minutes    integer     NOT NULL,  -- minutes with at least one heart-rate sample
        first_sample    timestamptz NOT NULL,  -- first heart-rate sample of the day
        last_sample     timestamptz NOT NULL,  -- last heart-rate sample of the day
        PRIMARY KEY (participant_id, day)
    );

    -- The thresholds of the adherence views. The ingester writes its settings here at every
    -- command (VALID_DAY_WEAR, NO_UPLOAD_HOURS, LOW_WEAR_DAYS), so psql sees the ones in force.
    CREATE TABLE adherence_settings (
        singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        valid_day_minutes  integer CHECK (valid_day_minutes BETWEEN 0 AND 1500),
        valid_day_percent  double precision CHECK (valid_day_percent > 0 AND valid_day_percent <= 100),
        no_upload_hours    integer NOT NULL CHECK (no_upload_hours > 0),
        low_wear_days      integer NOT NULL CHECK (low_wear_days BETWEEN 1 AND 7),
        updated_at         timestamptz NOT NULL DEFAULT now(),
        -- A valid day is either at least N minutes of wear or at least N% of the day's minutes.
        CHECK ((valid_day_minutes IS NULL) <> (valid_day_percent IS NULL))
    );
    INSERT INTO adherence_settings (valid_day_minutes, no_upload_hours, low_wear_days)
    VALUES (600, 48, 3);

    -- The local-day level of one participant, days first_day..last_day (NULL: all), from
    -- data_1m: recomputed, so a day that lost its last row disappears. A minute never
    -- straddles a local midnight (zone offsets are whole minutes).
    CREATE FUNCTION rollups_refresh_days(p_participant text, p_first date, p_last date)
    RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $days$
    DECLARE
        zone text := (SELECT timezone FROM participants WHERE participant_id = p_participant);
        lower_bound timestamptz := '-infinity';
        upper_bound timestamptz := 'infinity';
    BEGIN
        IF zone IS NULL THEN RETURN; END IF;  -- not enrolled: no zone, no local days
        IF p_first IS NOT NULL THEN lower_bound := p_first::timestamp AT TIME ZONE zone; END IF;
        IF p_last IS NOT NULL THEN
            upper_bound := (p_last + 1)::timestamp AT TIME ZONE zone;
        END IF;
        DELETE FROM data_1d WHERE participant_id = p_participant
            AND day >= COALESCE(p_first, '-infinity') AND day <= COALESCE(p_last, 'infinity');
        INSERT INTO data_1d (day, participant_id, metric_type, count, min, max, mean, sum)
        SELECT (bucket AT TIME ZONE zone)::date, participant_id, metric_type,
               sum(count), min(min), max(max), sum(sum) / sum(count), sum(sum)
        FROM data_1m
        WHERE participant_id = p_participant AND bucket >= lower_bound AND bucket < upper_bound
        GROUP BY 1, 2, 3 ORDER BY 3, 1;
        DELETE FROM adherence_daily WHERE participant_id = p_participant
            AND day >= COALESCE(p_first, '-infinity') AND day <= COALESCE(p_last, 'infinity');
        INSERT INTO adherence_daily (participant_id, day, wear_minutes, first_sample, last_sample)
        SELECT d.participant_id, d.day, d.wear_minutes,
               (SELECT min(r."timestamp") FROM raw_data r
                WHERE r.participant_id = p_participant AND r.metric_type = 'heart_rate'
                  -- Constant bounds as well: a correlated bound alone excludes no chunk
                  -- at plan time, so the query would lock every chunk of raw_data.
                  AND r."timestamp" >= lower_bound AND r."timestamp" < upper_bound
                  AND r."timestamp" >= d.first_minute
                  AND r."timestamp" < d.first_minute + INTERVAL '1 minute'),
               (SELECT max(r."timestamp") FROM raw_data r
                WHERE r.participant_id = p_participant AND r.metric_type = 'heart_rate'
                  AND r."timestamp" >= lower_bound AND r."timestamp" < upper_bound
                  AND r."timestamp" >= d.last_minute
                  AND r."timestamp" < d.last_minute + INTERVAL '1 minute')
        FROM (SELECT participant_id, (bucket AT TIME ZONE zone)::date AS day,
                     count(*) AS wear_minutes, min(bucket) AS first_minute,
                     max(bucket) AS last_minute
              FROM data_1m
              WHERE participant_id = p_participant AND metric_type = 'heart_rate'
                AND bucket >= lower_bound AND bucket < upper_bound
              GROUP BY 1, 2) d;
    END
    $days$;

    -- Every level for the buckets that meet [p_start, p_end): the ingester calls it in the
    -- transaction of a slice that wrote rows, with the slice's window (every row it wrote lies
    -- in it). Each bucket is recomputed whole from the level below (data_1m from raw_data,
    -- data_1h and data_1d from data_1m), so reruns, late rows and corrected values leave
    -- every bucket equal to a fresh aggregation, and a bucket left empty disappears.
    CREATE FUNCTION rollups_refresh(p_participant text, p_start timestamptz, p_end timestamptz)
    RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $refresh$
    DECLARE
        zone text := (SELECT timezone FROM participants WHERE participant_id = p_participant);
        -- time_bucket, not date_trunc: UTC buckets whatever the session's zone.
        minute_start timestamptz := time_bucket(INTERVAL '1 minute', p_start);
        minute_end timestamptz := time_bucket(INTERVAL '1 minute', p_end - INTERVAL '1 microsecond')
                                  + INTERVAL '1 minute';
        hour_start timestamptz := time_bucket(INTERVAL '1 hour', p_start);
        hour_end timestamptz := time_bucket(INTERVAL '1 hour', p_end - INTERVAL '1 microsecond')
                                + INTERVAL '1 hour';
    BEGIN
        IF p_end <= p_start THEN RETURN; END IF;
        DELETE FROM data_1m WHERE participant_id = p_participant
            AND bucket >= minute_start AND bucket < minute_end;
        INSERT INTO data_1m (bucket, participant_id, metric_type, count, min, max, mean, sum)
        SELECT time_bucket(INTERVAL '1 minute', "timestamp"), participant_id, metric_type,
               count(*), min(value), max(value), avg(value), sum(value)
        FROM raw_data
        WHERE participant_id = p_participant
          AND "timestamp" >= minute_start AND "timestamp" < minute_end
        GROUP BY 1, 2, 3
        -- In key order: inserting into the primary key in order costs half of random order.
        ORDER BY 3, 1;
        DELETE FROM data_1h WHERE participant_id = p_participant
            AND bucket >= hour_start AND bucket < hour_end;
        INSERT INTO data_1h (bucket, participant_id, metric_type, count, min, max, mean, sum)
        SELECT time_bucket(INTERVAL '1 hour', bucket), participant_id, metric_type,
               sum(count), min(min), max(max), sum(sum) / sum(count), sum(sum)
        FROM data_1m
        WHERE participant_id = p_participant AND bucket >= hour_start AND bucket < hour_end
        GROUP BY 1, 2, 3 ORDER BY 3, 1;
        IF zone IS NOT NULL THEN
            PERFORM rollups_refresh_days(p_participant,
                                         (p_start AT TIME ZONE zone)::date,
                                         ((p_end - INTERVAL '1 microsecond') AT TIME ZONE zone)::date);
        END IF;
    END
    $refresh$;

    -- Existing databases: the rollups of what is stored already.
    INSERT INTO data_1m (bucket, participant_id, metric_type, count, min, max, mean, sum)
    SELECT time_bucket(INTERVAL '1 minute', "timestamp"), participant_id, metric_type,
           count(*), min(value), max(value), avg(value), sum(value)
    FROM raw_data GROUP BY 1, 2, 3;
    INSERT INTO data_1h (bucket, participant_id, metric_type, count, min, max, mean, sum)
    SELECT time_bucket(INTERVAL '1 hour', bucket), participant_id, metric_type,
           sum(count), min(min), max(max), sum(sum) / sum(count), sum(sum)
    FROM data_1m GROUP BY 1, 2, 3;
    PERFORM rollups_refresh_days(participant_id, NULL, NULL) FROM participants;

    -- data_1d and adherence_daily are by local day: a participant whose zone changes, or who
    -- is enrolled again over rows kept from before, gets them rebuilt in its zone.
    CREATE FUNCTION rollups_rezone() RETURNS trigger LANGUAGE plpgsql AS $rezone$
    BEGIN
        PERFORM rollups_refresh_days(NEW.participant_id, NULL, NULL);
        RETURN NULL;
    END
    $rezone$;
    CREATE TRIGGER participants_rezone_insert AFTER INSERT ON participants
        FOR EACH ROW EXECUTE FUNCTION rollups_rezone();
    CREATE TRIGGER participants_rezone_update AFTER UPDATE OF timezone ON participants
        FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone)
        EXECUTE FUNCTION rollups_rezone();

    CREATE INDEX data_1d_by_day ON data_1d (participant_id, day);

    -- The tracker's last sync and battery of a Google participant, from google_devices
    -- (migration 3, issue 9): the newest TRACKER, the device whose sync bounds the data.
    -- Dynamic SQL, so this works whether or not that table exists yet: no rows without it.
    CREATE FUNCTION participant_tracker(p_participant text)
    RETURNS TABLE (last_sync timestamptz, battery integer)
    LANGUAGE plpgsql STABLE AS $tracker$
    BEGIN
        IF to_regclass('google_devices') IS NULL THEN RETURN; END IF;
        RETURN QUERY EXECUTE
            'SELECT last_sync_time, battery_level FROM google_devices
             WHERE participant_id = $1 AND device_type = ''TRACKER''
             ORDER BY last_sync_time DESC NULLS LAST LIMIT 1' USING p_participant;
    END
    $tracker$;

    -- Adherence per participant and local day, from the start date to as_of's local date:
    -- wear minutes (minutes with at least one heart-rate sample, as RAPIDS and Fitabase
    -- count: steps read 0 when the device is off the wrist), the day's real minutes (1,380 or
    -- 1,500 on DST days), the valid-day flag against adherence_settings, and whether the day
    -- has any data at all. last_sync and battery are the Google tracker's now (what
    -- pairedDevices said at the last run, the same on every day); NULL for synthetic ones.
    CREATE FUNCTION adherence_at(as_of timestamptz, from_day date DEFAULT NULL,
                                 only_participant text DEFAULT NULL)
    RETURNS TABLE (participant_id text, day date, complete boolean, day_minutes integer,
                   wear_minutes integer, wear_fraction double precision, valid_day boolean,
                   has_data boolean, first_sample timestamptz, last_sample timestamptz,
                   last_sync timestamptz, battery integer)
    LANGUAGE sql STABLE AS $adherence$
        SELECT p.participant_id, g.day, g.day < (as_of AT TIME ZONE p.timezone)::date,
               m.day_minutes, COALESCE(a.wear_minutes, 0),
               COALESCE(a.wear_minutes, 0)::double precision / m.day_minutes,
               CASE WHEN s.valid_day_minutes IS NOT NULL
                    THEN COALESCE(a.wear_minutes, 0) >= s.valid_day_minutes
                    ELSE COALESCE(a.wear_minutes, 0) >= s.valid_day_percent / 100 * m.day_minutes
               END,
               a.wear_minutes IS NOT NULL OR EXISTS (
                   SELECT 1 FROM data_1d d WHERE d.participant_id = p.participant_id
                     AND d.day = g.day),
               a.first_sample, a.last_sample, dev.last_sync, dev.battery
        FROM participants p
        LEFT JOIN LATERAL participant_tracker(p.participant_id) dev ON true
        CROSS JOIN adherence_settings s
        CROSS JOIN LATERAL (
            SELECT d::date AS day
            FROM generate_series(greatest(p.start_date, from_day)::timestamp,
                                 (as_of AT TIME ZONE p.timezone)::date::timestamp,
                                 INTERVAL '1 day') d) g
        CROSS JOIN LATERAL (
            SELECT (extract(epoch FROM ((g.day + 1)::timestamp AT TIME ZONE p.timezone)
                                       - (g.day::timestamp AT TIME ZONE p.timezone)) / 60
                   )::integer AS day_minutes) m
        LEFT JOIN adherence_daily a ON a.participant_id = p.participant_id AND a.day = g.day
        WHERE only_participant IS NULL OR p.participant_id = only_participant
    $adherence$;
    CREATE VIEW adherence AS SELECT * FROM adherence_at(now());

    -- The morning check, one row per participant: last data and last sync and the days since
    -- each; "no upload" when the last sync (else the last data) is older than
    -- no_upload_hours; "low wear" when at least low_wear_days of the last 7 complete local
    -- days (since the start date) are not valid; "needs consent" for a revoked Google grant.
    CREATE FUNCTION participant_flags_at(as_of timestamptz)
    RETURNS TABLE (participant_id text, source text, last_data timestamptz,
                   days_since_data numeric, last_sync timestamptz, days_since_sync numeric,
                   battery integer, invalid_days_of_7 integer, no_upload boolean,
                   low_wear boolean, needs_consent boolean, last_run_status text,
                   last_run_at timestamptz)
    LANGUAGE sql STABLE AS $flags$
        SELECT p.participant_id, p.source, ld.last_data,
               round((extract(epoch FROM as_of - ld.last_data) / 86400)::numeric, 1),
               dev.last_sync,
               round((extract(epoch FROM as_of - dev.last_sync) / 86400)::numeric, 1),
               dev.battery, COALESCE(w.invalid, 0),
               COALESCE(dev.last_sync, ld.last_data) IS NULL
                   OR COALESCE(dev.last_sync, ld.last_data)
                      < as_of - s.no_upload_hours * INTERVAL '1 hour',
               COALESCE(w.invalid, 0) >= s.low_wear_days,
               c.needs_consent_since IS NOT NULL OR r.status = 'needs_consent',
               r.status, r.finished_at
        FROM participants p
        CROSS JOIN adherence_settings s
        LEFT JOIN LATERAL (
            SELECT max(raw."timestamp") AS last_data FROM raw_data raw
            WHERE raw.participant_id = p.participant_id AND raw."timestamp" <= as_of
              AND raw."timestamp" >= (SELECT max(h.bucket) FROM data_1h h
                                      WHERE h.participant_id = p.participant_id
                                        AND h.bucket <= as_of)) ld ON true
        LEFT JOIN LATERAL participant_tracker(p.participant_id) dev ON true
        LEFT JOIN LATERAL (
            SELECT count(*) FILTER (WHERE NOT a.valid_day)::integer AS invalid
            FROM adherence_at(as_of, (as_of AT TIME ZONE p.timezone)::date - 7, p.participant_id) a
            WHERE a.complete) w ON true
        LEFT JOIN google_credentials c ON c.participant_id = p.participant_id
        LEFT JOIN LATERAL (
            SELECT i.status, i.finished_at FROM ingest_runs i
            WHERE i.participant_id = p.participant_id
            ORDER BY i.finished_at DESC, i.id DESC LIMIT 1) r ON true
    $flags$;
    CREATE VIEW participant_flags AS SELECT * FROM participant_flags_at(now());

    INSERT INTO schema_migrations (version, name) VALUES (6, 'rollups');
END
$migration$;

-- migration 7: claims
-- Workers, containers and pods that run the same command share the cohort through these
-- tables (ingestion/ingester/claims.py): a batch is one pass over the cohort ("a night"),
-- its items are the participants to load, and a worker claims an item with a session
-- advisory lock on the participant, which the server releases if the worker dies.
-- request_pacing spaces requests to Google across all of them (ingestion/ingester/sources/google_health/quota.py).
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 7) THEN RETURN; END IF;
    -- IF NOT EXISTS: a database whose schema_migrations was lost still takes the block.
    CREATE TABLE IF NOT EXISTS ingest_batches (
        batch_id    bigserial   PRIMARY KEY,
        -- The "now" every run of the batch plans its windows to.
        run_now     timestamptz NOT NULL,
        -- false for a run with --participant, --since or --until: nobody else joins it.
        joinable    boolean     NOT NULL,
        opened_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
        closed_at   timestamptz,
        -- 'done' (every item finished) or 'abandoned' (every run of it died first).
        outcome     text        CHECK (outcome IN ('done', 'abandoned'))
    );
    CREATE INDEX IF NOT EXISTS ingest_batches_open ON ingest_batches (batch_id) WHERE closed_at IS NULL;
    CREATE TABLE IF NOT EXISTS ingest_batch_items (
        batch_id        bigint      NOT NULL REFERENCES ingest_batches ON DELETE CASCADE,
        participant_id  text        NOT NULL,
        -- Claims so far: more than 1 means a worker died holding it and another took over.
        claims          integer     NOT NULL DEFAULT 0,
        claimed_by      text,       -- host:pid/worker of the latest claim
        status          text,       -- the participant's outcome, once done
        done_at         timestamptz,
        PRIMARY KEY (batch_id, participant_id)
    );
    CREATE INDEX IF NOT EXISTS ingest_batch_items_pending ON ingest_batch_items (batch_id)
        WHERE done_at IS NULL;
    -- One row per limit shared across workers ('project'): the next free request slot.
    -- (Before the per-participant schedules moved into the workers' memory there were
    -- 'user:<participant>' rows too; nothing reads them any more.)
    CREATE TABLE IF NOT EXISTS request_pacing (
        bucket      text        PRIMARY KEY,
        next_slot   timestamptz NOT NULL
    );
    INSERT INTO schema_migrations (version, name) VALUES (7, 'claims');
END
$migration$;

-- migration 9: participant status per run
-- participant_status showed the newest run-log row, and a run commits a participant in
-- slices, one row each: it said 19,856 rows written where the run wrote 301,756. Now it is
-- each participant's last run (the run_id of its newest row), its slices summed: still one
-- row per participant, with the same columns (so that migration 1, which a database whose
-- schema_migrations was lost runs again, can still replace it). The window spans the run's
-- slices; the status and error are the last slice's (a participant stops at its first
-- failed slice); the duration runs from the first slice's start to the last one's end.
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 9) THEN RETURN; END IF;
    CREATE OR REPLACE VIEW participant_status AS
    WITH last_run AS (
        SELECT DISTINCT ON (participant_id) participant_id, run_id
        FROM ingest_runs
        ORDER BY participant_id, finished_at DESC, id DESC
    )
    SELECT r.participant_id,
           (array_agg(r.status ORDER BY r.finished_at DESC, r.id DESC))[1] AS status,
           min(r.window_start) AS window_start,
           max(r.window_end) AS window_end,
           sum(r.rows_written)::bigint AS rows_written,
           sum(r.rows_rejected)::bigint AS rows_rejected,
           (array_agg(r.error ORDER BY r.finished_at DESC, r.id DESC))[1] AS error,
           max(r.finished_at) AS finished_at,
           max(r.finished_at) - min(r.started_at) AS duration
    FROM ingest_runs r JOIN last_run USING (participant_id, run_id)
    GROUP BY r.participant_id, r.run_id;
    INSERT INTO schema_migrations (version, name) VALUES (9, 'participant status per run');
END
$migration$;

-- migration 10: dashboard
-- The dashboard (ingestion/ingester/dashboard/, docs/dashboard.md) reads through the role
-- dashboard_reader: it may log in and SELECT what the pages show, nothing else. It owns
-- nothing, is a member of no role (so SET ROLE leads nowhere), may not create roles,
-- databases or objects, and never sees a refresh token (google_credentials is granted
-- column by column). Its password is set by the ingester from DASHBOARD_DB_PASSWORD
-- (ingester/access.py), never written here. A role is the cluster's, not the database's:
-- it is created once and granted in each database that takes this block. A DB_USER that may
-- not create roles skips it with a notice; the dashboard then needs a DBA to create it.
--
-- And the state of each participant's ingestion, which the report and the dashboard show
-- on every row: ok, failed (with its error), held, needs_consent, or never_loaded. Days we
-- failed to load are ours to fix, not the participant's: adherence_at says `loaded` per day,
-- and participant_flags_at raises no compliance flag on a day that is not loaded.
DO $migration$
DECLARE
    may_create_roles boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles
                                 WHERE rolname = current_user);
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 10) THEN RETURN; END IF;

    -- The latest run decides the state (the run log has no row for a participant never
    -- loaded). A held first load is logged as 'failed' with pipeline._held's message, which
    -- starts "a first load of"; tests/test_report_truth.py runs a real one. loaded_until is
    -- the committed watermark (as db.recover_watermark reads it), else the end of the last
    -- window loaded whole.
    CREATE OR REPLACE FUNCTION participant_ingestion_of(p_participant text)
    RETURNS TABLE (ingestion_state text, ingestion_error text, last_run_at timestamptz,
                   last_ok_at timestamptz, loaded_until timestamptz)
    LANGUAGE sql STABLE AS $ingestion$
        SELECT CASE WHEN c.needs_consent_since IS NOT NULL OR r.status = 'needs_consent'
                        THEN 'needs_consent'
                    WHEN r.status IS NULL THEN 'never_loaded'
                    WHEN r.status = 'ok' THEN 'ok'
                    WHEN r.error LIKE 'a first load of % held.%' THEN 'held'
                    ELSE 'failed' END,
               CASE WHEN r.status <> 'ok' THEN r.error END,
               r.finished_at, good.last_ok_at, good.loaded_until
        FROM (SELECT p_participant AS participant_id) me
        LEFT JOIN LATERAL (
            SELECT i.status, i.error, i.finished_at FROM ingest_runs i
            WHERE i.participant_id = me.participant_id
            ORDER BY i.finished_at DESC, i.id DESC LIMIT 1) r ON true
        LEFT JOIN LATERAL (
            SELECT max(i.finished_at) AS last_ok_at,
                   COALESCE(max(i.watermark), max(i.window_end)) AS loaded_until
            FROM ingest_runs i
            WHERE i.participant_id = me.participant_id AND i.status = 'ok') good ON true
        LEFT JOIN google_credentials c ON c.participant_id = me.participant_id
    $ingestion$;
    CREATE OR REPLACE VIEW participant_ingestion AS
    SELECT p.participant_id, s.* FROM participants p
    CROSS JOIN LATERAL participant_ingestion_of(p.participant_id) s;

    -- adherence_at and participant_flags_at as migration 6 made them, and: `loaded` per day
    -- (the ingestion is ok, or the day ended before loaded_until); low wear counts only
    -- loaded days; "no upload" is judged at loaded_until, not as_of, while the ingestion is
    -- not ok (we cannot know of uploads we failed to read); and the ingestion's state.
    DROP VIEW IF EXISTS adherence;
    DROP VIEW IF EXISTS participant_flags;
    DROP FUNCTION IF EXISTS participant_flags_at(timestamptz);
    DROP FUNCTION IF EXISTS adherence_at(timestamptz, date, text);
    CREATE FUNCTION adherence_at(as_of timestamptz, from_day date DEFAULT NULL,
                                 only_participant text DEFAULT NULL)
    RETURNS TABLE (participant_id text, day date, complete boolean, day_minutes integer,
                   wear_minutes integer, wear_fraction double precision, valid_day boolean,
                   has_data boolean, first_sample timestamptz, last_sample timestamptz,
                   last_sync timestamptz, battery integer, loaded boolean)
    LANGUAGE sql STABLE AS $adherence$
        SELECT p.participant_id, g.day, g.day < (as_of AT TIME ZONE p.timezone)::date,
               m.day_minutes, COALESCE(a.wear_minutes, 0),
               COALESCE(a.wear_minutes, 0)::double precision / m.day_minutes,
               CASE WHEN s.valid_day_minutes IS NOT NULL
                    THEN COALESCE(a.wear_minutes, 0) >= s.valid_day_minutes
                    ELSE COALESCE(a.wear_minutes, 0) >= s.valid_day_percent / 100 * m.day_minutes
               END,
               a.wear_minutes IS NOT NULL OR EXISTS (
                   SELECT 1 FROM data_1d d WHERE d.participant_id = p.participant_id
                     AND d.day = g.day),
               a.first_sample, a.last_sample, dev.last_sync, dev.battery,
               ing.ingestion_state = 'ok'
                   OR COALESCE(((g.day + 1)::timestamp AT TIME ZONE p.timezone)
                               <= ing.loaded_until, false)
        FROM participants p
        LEFT JOIN LATERAL participant_tracker(p.participant_id) dev ON true
        CROSS JOIN LATERAL participant_ingestion_of(p.participant_id) ing
        CROSS JOIN adherence_settings s
        CROSS JOIN LATERAL (
            SELECT d::date AS day
            FROM generate_series(greatest(p.start_date, from_day)::timestamp,
                                 (as_of AT TIME ZONE p.timezone)::date::timestamp,
                                 INTERVAL '1 day') d) g
        CROSS JOIN LATERAL (
            SELECT (extract(epoch FROM ((g.day + 1)::timestamp AT TIME ZONE p.timezone)
                                       - (g.day::timestamp AT TIME ZONE p.timezone)) / 60
                   )::integer AS day_minutes) m
        LEFT JOIN adherence_daily a ON a.participant_id = p.participant_id AND a.day = g.day
        WHERE only_participant IS NULL OR p.participant_id = only_participant
    $adherence$;
    CREATE VIEW adherence AS SELECT * FROM adherence_at(now());

    CREATE FUNCTION participant_flags_at(as_of timestamptz)
    RETURNS TABLE (participant_id text, source text, last_data timestamptz,
                   days_since_data numeric, last_sync timestamptz, days_since_sync numeric,
                   battery integer, invalid_days_of_7 integer, no_upload boolean,
                   low_wear boolean, needs_consent boolean, last_run_status text,
                   last_run_at timestamptz, ingestion_state text, ingestion_error text,
                   last_ok_at timestamptz, loaded_until timestamptz)
    LANGUAGE sql STABLE AS $flags$
        SELECT p.participant_id, p.source, ld.last_data,
               round((extract(epoch FROM as_of - ld.last_data) / 86400)::numeric, 1),
               dev.last_sync,
               round((extract(epoch FROM as_of - dev.last_sync) / 86400)::numeric, 1),
               dev.battery, COALESCE(w.invalid, 0),
               CASE WHEN ing.ingestion_state = 'ok'
                    THEN COALESCE(dev.last_sync, ld.last_data) IS NULL
                         OR COALESCE(dev.last_sync, ld.last_data)
                            < as_of - s.no_upload_hours * INTERVAL '1 hour'
                    -- Not ok: only what we knew when we last loaded; never when we never did.
                    ELSE COALESCE(COALESCE(dev.last_sync, ld.last_data)
                                  < least(as_of, ing.loaded_until)
                                    - s.no_upload_hours * INTERVAL '1 hour', false)
               END,
               COALESCE(w.invalid, 0) >= s.low_wear_days,
               ing.ingestion_state = 'needs_consent',
               r.status, r.finished_at,
               ing.ingestion_state, ing.ingestion_error, ing.last_ok_at, ing.loaded_until
        FROM participants p
        CROSS JOIN adherence_settings s
        CROSS JOIN LATERAL participant_ingestion_of(p.participant_id) ing
        LEFT JOIN LATERAL (
            SELECT max(raw."timestamp") AS last_data FROM raw_data raw
            WHERE raw.participant_id = p.participant_id AND raw."timestamp" <= as_of
              AND raw."timestamp" >= (SELECT max(h.bucket) FROM data_1h h
                                      WHERE h.participant_id = p.participant_id
                                        AND h.bucket <= as_of)) ld ON true
        LEFT JOIN LATERAL participant_tracker(p.participant_id) dev ON true
        LEFT JOIN LATERAL (
            SELECT count(*) FILTER (WHERE NOT a.valid_day)::integer AS invalid
            FROM adherence_at(as_of, (as_of AT TIME ZONE p.timezone)::date - 7, p.participant_id) a
            WHERE a.complete AND a.loaded) w ON true
        LEFT JOIN LATERAL (
            SELECT i.status, i.finished_at FROM ingest_runs i
            WHERE i.participant_id = p.participant_id
            ORDER BY i.finished_at DESC, i.id DESC LIMIT 1) r ON true
    $flags$;
    CREATE VIEW participant_flags AS SELECT * FROM participant_flags_at(now());

    -- The reader. Created once per cluster; a concurrent creator (another database taking
    -- this block at the same moment) wins the race harmlessly.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dashboard_reader') THEN
        IF NOT may_create_roles THEN
            RAISE NOTICE '% may not create roles: skipping the role dashboard_reader (docs/dashboard.md)', current_user;
        ELSE
            BEGIN
                CREATE ROLE dashboard_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                    NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 20;
                -- A second fence: a read-only transaction refuses writes even where a
                -- privilege were granted by mistake.
                ALTER ROLE dashboard_reader SET default_transaction_read_only = on;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dashboard_reader') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO dashboard_reader', current_database());
        GRANT USAGE ON SCHEMA public TO dashboard_reader;
        -- TimescaleDB passes a hypertable's grants on to its chunks, new ones included.
        GRANT SELECT ON raw_data, participants, data_1m, data_1h, data_1d, adherence_daily,
            adherence_settings, ingest_runs, ingest_batches, ingest_batch_items,
            google_devices, schema_migrations, participant_status, adherence,
            participant_flags, participant_ingestion TO dashboard_reader;
        -- Never refresh_token.
        GRANT SELECT (participant_id, updated_at, needs_consent_since, missing_scopes)
            ON google_credentials TO dashboard_reader;
        -- Sleep (the Google issue's migration), when it came first.
        IF to_regclass('sleep_sessions') IS NOT NULL THEN
            GRANT SELECT ON sleep_sessions TO dashboard_reader;
        END IF;
        IF to_regclass('sleep_stages') IS NOT NULL THEN
            GRANT SELECT ON sleep_stages TO dashboard_reader;
        END IF;
    END IF;

    INSERT INTO schema_migrations (version, name) VALUES (10, 'dashboard');
END
$migration$;

-- migration 11: enrolment identity and stream watermarks
-- participants.enrolment: which enrolment of a participant id a row is, a number drawn when
-- the row is inserted, so a participant removed (say with --purge) and enrolled again under
-- the same id is another enrolment. A run reads it with the participant and checks it again
-- in every slice's transaction: a run that read the old enrolment's watermarks must not
-- commit them into the new one's run log. Re-enrolling a participant who is still enrolled
-- (a new grant, a new zone) keeps the number.
-- ingest_runs.stream_watermarks: each stream's own watermark once the slice committed
-- (docs/operations-notes.md has both).
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 11) THEN RETURN; END IF;
    CREATE SEQUENCE IF NOT EXISTS participant_enrolments;
    ALTER TABLE participants ADD COLUMN IF NOT EXISTS enrolment bigint;
    ALTER TABLE participants ALTER COLUMN enrolment SET DEFAULT nextval('participant_enrolments');
    -- A cohort is small: numbering the participants enrolled before is one short UPDATE.
    UPDATE participants SET enrolment = nextval('participant_enrolments') WHERE enrolment IS NULL;
    ALTER TABLE participants ALTER COLUMN enrolment SET NOT NULL;
    ALTER TABLE ingest_runs ADD COLUMN IF NOT EXISTS stream_watermarks jsonb;
    INSERT INTO schema_migrations (version, name) VALUES (11, 'enrolment identity and stream watermarks');
END
$migration$;

-- migration 12: sleep
-- Sleep sessions and their stages, from every source that has them (docs/metrics.md,
-- "Sleep"). A session is keyed by its source and its start: the same night from two sources
-- is two rows, told apart by `source`. `processed` is false while Google still stages the
-- session; the run that reads it processed replaces it (db.store_sleep). Stages belong to
-- their session and go with it. No foreign key to participants, as raw_data has none:
-- removing a participant keeps their data, and only --purge deletes it (db.py). New tables
-- only: nothing a running night holds is locked.
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 12) THEN RETURN; END IF;
    CREATE TABLE IF NOT EXISTS sleep_sessions (
        participant_id  text        NOT NULL,
        source          text        NOT NULL,
        session_start   timestamptz NOT NULL,
        session_end     timestamptz NOT NULL,
        is_main_sleep   boolean     NOT NULL,
        minutes_asleep  integer     NOT NULL CHECK (minutes_asleep >= 0),
        minutes_awake   integer     NOT NULL CHECK (minutes_awake >= 0),
        kind            text        NOT NULL CHECK (kind IN ('stages', 'classic')),
        processed       boolean     NOT NULL DEFAULT true,
        device          text,
        loaded_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (participant_id, source, session_start),
        CHECK (session_end > session_start)
    );
    CREATE TABLE IF NOT EXISTS sleep_stages (
        participant_id  text        NOT NULL,
        source          text        NOT NULL,
        session_start   timestamptz NOT NULL,
        stage_start     timestamptz NOT NULL,
        stage_end       timestamptz NOT NULL,
        -- Staged nights: awake, light, deep, rem; classic ones: asleep, restless, awake.
        stage           text        NOT NULL
            CHECK (stage IN ('awake', 'light', 'deep', 'rem', 'asleep', 'restless')),
        PRIMARY KEY (participant_id, source, stage_start),
        FOREIGN KEY (participant_id, source, session_start)
            REFERENCES sleep_sessions ON DELETE CASCADE,
        CHECK (stage_end > stage_start)
    );
    -- A night's stages by their session (the key above serves the hypnogram's range).
    CREATE INDEX IF NOT EXISTS sleep_stages_session
        ON sleep_stages (participant_id, source, session_start);
    -- Migration 10 granted these only if they existed then.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dashboard_reader') THEN
        GRANT SELECT ON sleep_sessions, sleep_stages TO dashboard_reader;
    END IF;
    INSERT INTO schema_migrations (version, name) VALUES (12, 'sleep');
END
$migration$;

-- migration 13: provenance
-- Where every stored value came from (docs/metrics.md, "Where a value came from"): the source
-- that loaded it and the device that recorded it, where the source names one. A value carries
-- a smallint into data_origins rather than two text columns: 2 bytes a row, which
-- compression's segments hold as a run of one value, and COPY sends a short number.
-- raw_data.origin_id is added without a default and stays NULL for the rows stored before:
-- PostgreSQL then only writes the catalog (no table rewrite, no scan), and TimescaleDB
-- allows it on a compressed hypertable. No foreign key: on a hypertable it would cost every
-- COPY a lookup per row, and an origin is never deleted.
-- raw_data.origin_id is that of the load that stored the current value: a re-read that finds
-- the same value leaves it alone (the writer compares instants and values only).
-- google_credentials: when Google said a refresh token expires (refresh_token_expires_in),
-- and when the participant consented (a grant of an app in Testing mode lasts 7 days from
-- consent; updated_at also moves when a token is rotated).
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 13) THEN RETURN; END IF;
    CREATE TABLE IF NOT EXISTS data_origins (
        origin_id   smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source      text NOT NULL,
        device      text NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS data_origins_key
        ON data_origins (source, coalesce(device, ''));
    -- The origins every run of today's sources uses, so that they are found, not inserted,
    -- by concurrent slices (an insert waits for another slice's uncommitted one).
    INSERT INTO data_origins (source, device)
    VALUES ('synthetic', 'Charge 6'), ('google_health', 'google-wearables'),
           ('google_health', NULL)
    ON CONFLICT DO NOTHING;
    ALTER TABLE raw_data ADD COLUMN IF NOT EXISTS origin_id smallint;
    -- Rows stored before provenance (origin_id NULL) name their participant's source.
    CREATE OR REPLACE VIEW raw_data_sourced AS
    SELECT r.participant_id, r.metric_type, r."timestamp", r.value,
           COALESCE(o.source, p.source) AS source, o.device
    FROM raw_data r
    LEFT JOIN data_origins o ON o.origin_id = r.origin_id
    LEFT JOIN participants p ON o.origin_id IS NULL AND p.participant_id = r.participant_id;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dashboard_reader') THEN
        GRANT SELECT ON data_origins, raw_data_sourced TO dashboard_reader;
    END IF;
    ALTER TABLE google_credentials ADD COLUMN IF NOT EXISTS refresh_token_expires_at timestamptz;
    ALTER TABLE google_credentials ADD COLUMN IF NOT EXISTS granted_at timestamptz;
    -- The best guess for a grant stored before: its last change (a cohort is small).
    UPDATE google_credentials SET granted_at = updated_at WHERE granted_at IS NULL;
    ALTER TABLE google_credentials ALTER COLUMN granted_at SET DEFAULT now();
    ALTER TABLE google_credentials ALTER COLUMN granted_at SET NOT NULL;
    INSERT INTO schema_migrations (version, name) VALUES (13, 'provenance');
END
$migration$;

-- migration 14: takeout participants
-- participants.source gains 'takeout': a participant whose data comes from a donated Google
-- Takeout archive (`participant import-takeout`, docs/takeout.md), with no nightly pull.
-- The table holds a cohort, so re-checking its rows under the new constraint is instant.
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = 14) THEN RETURN; END IF;
    ALTER TABLE participants DROP CONSTRAINT IF EXISTS participants_source_check;
    ALTER TABLE participants ADD CONSTRAINT participants_source_check
        CHECK (source IN ('synthetic', 'google_health', 'takeout'));
    INSERT INTO schema_migrations (version, name) VALUES (14, 'takeout participants');
END
$migration$;
