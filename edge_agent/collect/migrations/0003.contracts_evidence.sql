-- depends: 0002.views
-- Version 3: the device's contract records in tables of their own, every signed message
-- kept as received (the source of evidence verification), verification detail per agent,
-- and "contract compliance per customer" from the DEVICE's figures.

-- Every numbered message that carries a proof (docs/evidence.md), exactly as received:
-- `edge-agent-collect verify` rebuilds each agent's chain from here. First copy wins.
CREATE TABLE signed_records (
    agent       text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    ts          timestamptz NOT NULL,
    chained     boolean NOT NULL,      -- the proof links to the previous record (has prev)
    raw         text NOT NULL,         -- the envelope with its proof, as received
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, epoch, seq)
);
CREATE INDEX signed_records_received ON signed_records (agent, received_at);

-- Signed messages stored before this migration: their raw envelope is in these tables.
INSERT INTO signed_records (agent, epoch, seq, kind, ts, chained, raw, received_at)
SELECT agent, epoch, seq, kind, ts, (raw::jsonb -> 'proof') ? 'prev', raw, received_at
FROM (
    SELECT agent, epoch, seq, 'kpi' AS kind, ts, raw, received_at FROM kpi_revisions
    UNION ALL
    SELECT agent, epoch, seq, 'kpi', ts, raw, received_at FROM kpi_records
    UNION ALL
    SELECT agent, epoch, seq, 'stop', ts, raw, received_at FROM stop_events
    UNION ALL
    SELECT agent, epoch, seq, kind, ts, raw, received_at FROM other_records
) AS stored
WHERE jsonb_typeof(raw::jsonb -> 'proof') = 'object'
ON CONFLICT DO NOTHING;

ALTER TABLE agents
    ADD COLUMN verification_detail text,      -- the problems found, one per line (bounded)
    ADD COLUMN verified_records bigint,       -- signed records checked by the last run
    ADD COLUMN verified_epoch text;           -- epoch of verified_through_seq

-- Contract status (kind contract, retained, every reporting interval): the latest per
-- agent and device contract (a later evaluation instant wins; same instant: later message).
CREATE TABLE device_contract_status (
    agent               text NOT NULL,
    contract            text NOT NULL,        -- the contract's name in the agent's config
    period              text NOT NULL,
    start_at            timestamptz NOT NULL,
    end_at              timestamptz NOT NULL,
    at                  timestamptz NOT NULL, -- evaluation instant
    remaining_service_s double precision NOT NULL,
    data_coverage       double precision,
    contract_hash       text NOT NULL,
    data                jsonb NOT NULL,
    raw                 text NOT NULL,
    epoch               text NOT NULL,
    seq                 bigint NOT NULL,
    ts                  timestamptz NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    updates             integer NOT NULL DEFAULT 1,
    PRIMARY KEY (agent, contract)
);

-- Closed periods (kind contract_period): the current revision of each agent + contract +
-- period (a higher revision replaces; same revision: the later message) ...
CREATE TABLE device_contract_periods (
    agent         text NOT NULL,
    contract      text NOT NULL,
    period        text NOT NULL,
    revision      integer NOT NULL,
    start_at      timestamptz NOT NULL,
    end_at        timestamptz NOT NULL,
    at            timestamptz NOT NULL,
    data_coverage double precision,
    contract_hash text NOT NULL,
    data          jsonb NOT NULL,
    raw           text NOT NULL,
    epoch         text NOT NULL,
    seq           bigint NOT NULL,
    ts            timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    updates       integer NOT NULL DEFAULT 1,
    PRIMARY KEY (agent, contract, period)
);
CREATE INDEX device_contract_periods_start ON device_contract_periods (start_at);

-- ... and every revision as received (first copy wins), like kpi_revisions.
CREATE TABLE device_contract_period_revisions (
    agent       text NOT NULL,
    contract    text NOT NULL,
    period      text NOT NULL,
    revision    integer NOT NULL,
    data        jsonb NOT NULL,
    raw         text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, contract, period, revision)
);

-- Alerts (kind contract_alert): alert_id is stable, a second copy is dropped.
CREATE TABLE device_contract_alerts (
    agent       text NOT NULL,
    alert_id    text NOT NULL,
    alert       text NOT NULL,          -- level_state | response_bound_crossed
    contract    text NOT NULL,
    period      text,
    term        text NOT NULL,
    kpi         text NOT NULL,
    level       text NOT NULL,
    threshold   double precision NOT NULL,
    at          timestamptz NOT NULL,
    state       text NOT NULL,          -- at_risk | breached
    previous    text,
    so_far      double precision,
    budget      double precision,
    budget_unit text,
    machine     text,
    event_id    text,
    data        jsonb NOT NULL,
    raw         text NOT NULL,
    epoch       text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, alert_id)
);
CREATE INDEX device_contract_alerts_at ON device_contract_alerts (contract, at);

-- Contract records stored before this migration went to other_records: copied here
-- (the rows stay in other_records too; rolling back drops only the copies).
INSERT INTO device_contract_status (agent, contract, period, start_at, end_at, at,
                                    remaining_service_s, data_coverage, contract_hash, data,
                                    raw, epoch, seq, ts, received_at)
SELECT DISTINCT ON (agent, data ->> 'contract')
       agent, data ->> 'contract', data ->> 'period', (data ->> 'start')::timestamptz,
       (data ->> 'end')::timestamptz, (data ->> 'at')::timestamptz,
       (data ->> 'remaining_service_s')::double precision,
       (data ->> 'data_coverage')::double precision, data ->> 'contract_hash', data, raw,
       epoch, seq, ts, received_at
FROM other_records
WHERE kind = 'contract' AND validated
ORDER BY agent, data ->> 'contract', (data ->> 'at')::timestamptz DESC, ts DESC;

INSERT INTO device_contract_period_revisions (agent, contract, period, revision, data, raw,
                                              epoch, seq, ts, received_at)
SELECT DISTINCT ON (agent, data ->> 'contract', data ->> 'period', (data ->> 'revision')::integer)
       agent, data ->> 'contract', data ->> 'period', (data ->> 'revision')::integer, data,
       raw, epoch, seq, ts, received_at
FROM other_records
WHERE kind = 'contract_period' AND validated
ORDER BY agent, data ->> 'contract', data ->> 'period', (data ->> 'revision')::integer,
         received_at;

INSERT INTO device_contract_periods (agent, contract, period, revision, start_at, end_at, at,
                                     data_coverage, contract_hash, data, raw, epoch, seq, ts,
                                     received_at)
SELECT DISTINCT ON (agent, data ->> 'contract', data ->> 'period')
       agent, data ->> 'contract', data ->> 'period', (data ->> 'revision')::integer,
       (data ->> 'start')::timestamptz, (data ->> 'end')::timestamptz,
       (data ->> 'at')::timestamptz, (data ->> 'data_coverage')::double precision,
       data ->> 'contract_hash', data, raw, epoch, seq, ts, received_at
FROM other_records
WHERE kind = 'contract_period' AND validated
ORDER BY agent, data ->> 'contract', data ->> 'period', (data ->> 'revision')::integer DESC,
         ts DESC;

INSERT INTO device_contract_alerts (agent, alert_id, alert, contract, period, term, kpi, level,
                                    threshold, at, state, previous, so_far, budget,
                                    budget_unit, machine, event_id, data, raw, epoch, seq, ts,
                                    received_at)
SELECT DISTINCT ON (agent, data ->> 'alert_id')
       agent, data ->> 'alert_id', data ->> 'alert', data ->> 'contract', data ->> 'period',
       data ->> 'term', data ->> 'kpi', data ->> 'level',
       (data ->> 'threshold')::double precision, (data ->> 'at')::timestamptz,
       data ->> 'state', data ->> 'previous', (data ->> 'so_far')::double precision,
       (data ->> 'budget')::double precision, data ->> 'budget_unit', data ->> 'machine',
       data ->> 'event_id', data, raw, epoch, seq, ts, received_at
FROM other_records
WHERE kind = 'contract_alert' AND validated
ORDER BY agent, data ->> 'alert_id', received_at;

-- The back office's own computation from day records (version 2) stays available under
-- this name: a cross-check of the device's figures, and the only source for agents
-- that do not compute contracts.
ALTER VIEW contract_compliance RENAME TO contract_compliance_from_days;

-- Contract compliance per customer, from the DEVICE's contract records: one row per
-- back-office contract, device contract, period, term and level. A closed period shows its
-- final record (current revision); the running period its latest status (final = false).
-- A device contract belongs to a back-office contract when one of its machines (the keys
-- of profile_hashes) is listed for that agent in contract_machines. evidence: the agent's
-- verification status (edge-agent-collect verify).
CREATE VIEW contract_compliance AS
WITH device AS (
    SELECT agent, contract, period, start_at, end_at, at, true AS final, revision,
           data_coverage, contract_hash, data, received_at
    FROM device_contract_periods
    UNION ALL
    SELECT s.agent, s.contract, s.period, s.start_at, s.end_at, s.at, false, NULL,
           s.data_coverage, s.contract_hash, s.data, s.received_at
    FROM device_contract_status s
    WHERE NOT EXISTS (SELECT 1 FROM device_contract_periods p
                      WHERE p.agent = s.agent AND p.contract = s.contract
                        AND p.period = s.period)
)
SELECT c.customer,
       c.contract,
       d.agent,
       d.contract                               AS device_contract,
       d.period,
       d.start_at,
       d.end_at,
       d.at,
       d.final,
       d.revision,
       d.data_coverage,
       (d.data ->> 'remaining_service_s')::double precision AS remaining_service_s,
       t ->> 'term'                             AS term,
       t ->> 'kpi'                              AS kpi,
       t ->> 'direction'                        AS direction,
       t ->> 'unit'                             AS unit,
       t ->> 'state'                            AS term_state,
       (t ->> 'so_far')::double precision       AS so_far,
       (t ->> 'best')::double precision         AS best,
       (t ->> 'worst')::double precision        AS worst,
       (t ->> 'forecast')::double precision     AS forecast,
       l ->> 'level'                            AS level,
       (l ->> 'threshold')::double precision    AS threshold,
       l ->> 'state'                            AS state,
       (l ->> 'budget')::double precision       AS budget,
       t ->> 'budget_unit'                      AS budget_unit,
       d.contract_hash,
       d.data -> 'flags'                        AS flags,
       a.verification_status                    AS evidence,
       d.received_at
FROM device d
JOIN contracts c
  ON EXISTS (SELECT 1 FROM contract_machines cm
             WHERE cm.contract = c.contract AND cm.agent = d.agent
               AND d.data -> 'profile_hashes' ? cm.machine)
 AND (c.valid_from IS NULL OR d.end_at > c.valid_from::timestamptz)
 AND (c.valid_to IS NULL OR d.start_at < (c.valid_to + 1)::timestamptz)
LEFT JOIN agents a ON a.agent = d.agent
CROSS JOIN LATERAL jsonb_array_elements(d.data -> 'terms') AS t
CROSS JOIN LATERAL jsonb_array_elements(t -> 'levels') AS l;
