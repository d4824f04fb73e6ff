-- edge-agent-collect schema, version 1: ledger, per-agent bookkeeping, records, quarantine.
-- Applied by yoyo-migrations (edge-agent-collect migrate); never edit an applied migration,
-- add a new one.

-- One row per agent id. Row-locked at the start of every batch that touches the agent, so
-- several collector instances never interleave one agent's bookkeeping.
CREATE TABLE agents (
    agent               text PRIMARY KEY,
    first_seen          timestamptz NOT NULL DEFAULT now(),
    last_seen           timestamptz NOT NULL DEFAULT now(),  -- last message received (collector clock)
    last_ts             timestamptz,                         -- newest envelope ts (agent clock)
    current_epoch       text,                                -- epoch of the newest numbered message
    site                text,
    status              text,                                -- online / offline (retained status)
    status_at           timestamptz,
    messages            bigint NOT NULL DEFAULT 0,           -- distinct numbered messages
    duplicates          bigint NOT NULL DEFAULT 0,           -- re-deliveries recognised and dropped
    quarantined         bigint NOT NULL DEFAULT 0,           -- messages that failed validation
    other_kinds         bigint NOT NULL DEFAULT 0,           -- kinds without their own table
    reported_backlog    bigint,                              -- agent's own outbox backlog (health)
    reported_backlog_at timestamptz,
    -- Evidence chain (issue 16, not built yet): 'not_checked' until a verifier fills these.
    verification_status text NOT NULL DEFAULT 'not_checked',
    verified_through_seq bigint,
    verified_at         timestamptz
);

-- One row per (agent, epoch): the sequence-numbering stream. Envelope v1 has epoch ''.
CREATE TABLE agent_streams (
    agent         text NOT NULL,
    epoch         text NOT NULL,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    last_ts       timestamptz,
    last_seq      bigint NOT NULL DEFAULT 0,   -- highest sequence number received
    messages      bigint NOT NULL DEFAULT 0,
    duplicates    bigint NOT NULL DEFAULT 0,
    gaps_detected bigint NOT NULL DEFAULT 0,   -- numbers ever found missing
    gaps_filled   bigint NOT NULL DEFAULT 0,   -- of those, numbers that arrived later
    PRIMARY KEY (agent, epoch)
);

-- Ranges of sequence numbers below last_seq that have not arrived (inclusive bounds).
CREATE TABLE seq_gaps (
    agent       text NOT NULL,
    epoch       text NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, epoch, first_seq),
    CHECK (first_seq <= last_seq)
);

-- Every numbered message ever received, once: the de-duplication key of the collector.
CREATE TABLE ledger (
    agent       text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    ts          timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    quarantined boolean NOT NULL DEFAULT false,
    PRIMARY KEY (agent, epoch, seq)
);

-- KPI records (kpi-spec 3.12): the current record of each (agent, machine, window).
-- A record replaces the stored one only when it ranks higher: final over so-far, then a
-- higher revision, then (same final and revision) the later message.
CREATE TABLE kpi_records (
    agent                    text NOT NULL,
    machine                  text NOT NULL,
    window_name              text NOT NULL,       -- e.g. day:2026-11-26, shift:2026-11-26:A
    window_kind              text NOT NULL,
    start_at                 timestamptz NOT NULL,
    end_at                   timestamptz NOT NULL,
    revision                 integer NOT NULL,
    final                    boolean NOT NULL,
    calendar_time_s          double precision NOT NULL,
    planned_time_s           double precision NOT NULL,
    excluded_time_s          double precision NOT NULL,
    non_scheduled_time_s     double precision NOT NULL,
    unknown_time_s           double precision NOT NULL,
    running_time_s           double precision NOT NULL,
    micro_stop_time_s        double precision NOT NULL,
    operating_time_s         double precision NOT NULL,
    downtime_breakdown_s     double precision NOT NULL,
    downtime_other_s         double precision NOT NULL,
    downtime_total_s         double precision NOT NULL,
    downtime_customer_s      double precision,    -- SLA components (3.10) when the agent sends them
    downtime_provider_s      double precision,
    ttr_sum_s                double precision,
    stops                    bigint NOT NULL,
    micro_stops              bigint NOT NULL,
    failures                 bigint NOT NULL,
    total_count              double precision NOT NULL,
    good_count               double precision NOT NULL,
    availability             double precision,    -- as computed by the agent for this window
    sla_availability         double precision,
    oee                      double precision,
    data                     jsonb NOT NULL,      -- the record as validated (upgraded if old shape)
    raw                      text NOT NULL,       -- the message as received (evidence, issue 16)
    upgraded                 boolean NOT NULL DEFAULT false,
    epoch                    text NOT NULL,
    seq                      bigint NOT NULL,
    ts                       timestamptz NOT NULL,
    received_at              timestamptz NOT NULL DEFAULT now(),
    updates                  integer NOT NULL DEFAULT 1,
    PRIMARY KEY (agent, machine, window_name)
);
CREATE INDEX kpi_records_kind_start ON kpi_records (window_kind, start_at);

-- Every final revision of every window, as received (first copy wins).
CREATE TABLE kpi_revisions (
    agent       text NOT NULL,
    machine     text NOT NULL,
    window_name text NOT NULL,
    revision    integer NOT NULL,
    data        jsonb NOT NULL,
    raw         text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, machine, window_name, revision)
);

-- Stop events by their stable id; a later update of the same event replaces it (closed over
-- open, then the later message).
CREATE TABLE stop_events (
    agent       text NOT NULL,
    event_id    text NOT NULL,
    machine     text NOT NULL,
    start_at    timestamptz NOT NULL,
    end_at      timestamptz,
    duration_s  double precision,
    category    text,
    code        text,
    fault_name  text,
    planned     boolean,
    data        jsonb NOT NULL,
    raw         text NOT NULL,
    upgraded    boolean NOT NULL DEFAULT false,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    updates     integer NOT NULL DEFAULT 1,
    PRIMARY KEY (agent, event_id)
);
CREATE INDEX stop_events_machine_start ON stop_events (agent, machine, start_at);

CREATE TABLE telemetry (
    agent       text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    device      text NOT NULL,
    data        jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, epoch, seq)
);
CREATE INDEX telemetry_device_ts ON telemetry (agent, device, ts);

CREATE TABLE health (
    agent        text NOT NULL,
    epoch        text NOT NULL,
    seq          bigint NOT NULL,
    ts           timestamptz NOT NULL,
    uptime_s     double precision,
    cpu_percent  double precision,
    rss_bytes    bigint,
    backlog      bigint,
    clock_synced boolean,
    data         jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, epoch, seq)
);
CREATE INDEX health_agent_ts ON health (agent, ts);

-- Every numbered message of a kind without its own table (contract, evidence, gap, ...,
-- whatever a newer agent sends): stored raw, counted in agents.other_kinds, never dropped.
CREATE TABLE other_records (
    agent       text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    ts          timestamptz NOT NULL,
    topic       text NOT NULL,
    validated   boolean NOT NULL,      -- a schema for this kind existed and passed
    data        jsonb NOT NULL,
    raw         text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, epoch, seq)
);
CREATE INDEX other_records_kind ON other_records (kind, agent, ts);

-- Messages that failed decoding, the envelope check or their schema: raw bytes and reason.
-- A re-delivered copy (same topic and payload) is counted, not stored twice.
CREATE TABLE quarantine (
    id          bigserial PRIMARY KEY,
    digest      bytea NOT NULL UNIQUE,  -- sha256(topic NUL payload)
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    agent       text,
    kind        text,
    epoch       text,
    seq         bigint,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    times_seen  integer NOT NULL DEFAULT 1
);
CREATE INDEX quarantine_agent ON quarantine (agent, first_seen);

-- One row per collector instance (MQTT client id), refreshed every heartbeat.
CREATE TABLE collector_instances (
    client_id     text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    version       text NOT NULL,
    subscriptions text NOT NULL,
    started_at    timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL,
    batches       bigint NOT NULL DEFAULT 0,
    messages      bigint NOT NULL DEFAULT 0,
    stored        bigint NOT NULL DEFAULT 0,
    duplicates    bigint NOT NULL DEFAULT 0,
    quarantined   bigint NOT NULL DEFAULT 0,
    db_retries    bigint NOT NULL DEFAULT 0,
    last_error    text,
    last_error_at timestamptz
);
