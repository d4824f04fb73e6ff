-- depends: 0001.initial
-- Views for operations and settlement, and the back-office contract tables they read.

-- One line per agent: where its numbering stands, what is missing, what was dropped.
CREATE VIEW agent_overview AS
SELECT a.agent,
       a.site,
       a.status,
       a.current_epoch,
       s.last_seq,
       coalesce(g.missing, 0)      AS missing,       -- numbers in open gaps, every epoch
       coalesce(st.gaps_detected, 0) AS gaps_detected,
       coalesce(st.gaps_filled, 0) AS gaps_filled,
       coalesce(st.epochs, 0)      AS epochs,
       a.messages,
       a.duplicates,
       a.quarantined,
       a.other_kinds,
       a.reported_backlog,
       a.last_seen,
       a.last_ts,
       a.verification_status
FROM agents a
LEFT JOIN agent_streams s ON s.agent = a.agent AND s.epoch = a.current_epoch
LEFT JOIN (SELECT agent, sum(gaps_detected)::bigint AS gaps_detected,
                  sum(gaps_filled)::bigint AS gaps_filled,
                  count(*) AS epochs
           FROM agent_streams GROUP BY agent) st ON st.agent = a.agent
LEFT JOIN (SELECT agent, sum(last_seq - first_seq + 1)::bigint AS missing
           FROM seq_gaps GROUP BY agent) g ON g.agent = a.agent;

-- Telemetry snapshots as one row per tag value (samples form; aggregates stay in data).
CREATE VIEW telemetry_values AS
SELECT t.agent,
       t.device,
       to_timestamp((t.data ->> 't0')::bigint + (s.value ->> 0)::bigint / 1000.0) AS at,
       v.key   AS tag,
       v.value AS value,
       s.value -> 2 -> v.key AS quality   -- null = good; "bad", "stale" or [quality, reason]
FROM telemetry t
CROSS JOIN LATERAL jsonb_array_elements(t.data -> 'samples') AS s(value)
CROSS JOIN LATERAL jsonb_each(s.value -> 1) AS v(key, value)
WHERE t.data ? 'samples';

-- Availability per machine per month (kpi-spec 3.11): ratios of SUMS of the components of
-- the final day records (latest revision of each day; so-far records are left out), never
-- an average of daily ratios. The month is the local date of the day window's label.
CREATE VIEW availability_machine_month AS
WITH days AS (
    SELECT *, substring(window_name FROM '^day:([0-9]{4}-[0-9]{2})-[0-9]{2}$') AS month
    FROM kpi_records
    WHERE final AND window_kind = 'day'
)
SELECT agent,
       machine,
       month,
       count(*)                                   AS days,
       sum(calendar_time_s)                       AS calendar_time_s,
       sum(planned_time_s)                        AS planned_time_s,
       sum(unknown_time_s)                        AS unknown_time_s,
       sum(planned_time_s) - sum(unknown_time_s)  AS known_time_s,
       sum(operating_time_s)                      AS operating_time_s,
       sum(downtime_breakdown_s)                  AS downtime_breakdown_s,
       sum(downtime_other_s)                      AS downtime_other_s,
       sum(downtime_total_s)                      AS downtime_total_s,
       sum(downtime_customer_s)                   AS downtime_customer_s,
       sum(downtime_provider_s)                   AS downtime_provider_s,
       sum(stops)                                 AS stops,
       sum(failures)                              AS failures,
       round((sum(operating_time_s)
              / nullif(sum(planned_time_s) - sum(unknown_time_s), 0))::numeric, 6)::double precision AS availability,
       round((sum(operating_time_s) / nullif(sum(planned_time_s), 0))::numeric, 6)::double precision
                                                  AS availability_if_unknown_down,
       round(((sum(planned_time_s) - sum(unknown_time_s))
              / nullif(sum(planned_time_s), 0))::numeric, 6)::double precision AS data_coverage,
       -- SLA availability (3.10): (K - C - Bp) / (K - C); null when a day lacks C or Bp.
       CASE WHEN count(downtime_provider_s) = count(*) AND count(downtime_customer_s) = count(*)
                 AND sum(planned_time_s) > 0
                 AND sum(planned_time_s) - sum(unknown_time_s) - sum(downtime_customer_s) > 0
            THEN round(((sum(planned_time_s) - sum(unknown_time_s) - sum(downtime_customer_s)
                         - sum(downtime_provider_s))
                        / (sum(planned_time_s) - sum(unknown_time_s)
                           - sum(downtime_customer_s)))::numeric, 6)::double precision
       END                                        AS sla_availability,
       max(received_at)                           AS last_received
FROM days
WHERE month IS NOT NULL
GROUP BY agent, machine, month;

-- Contracts as the back office records them. PLACEHOLDER until the device computes contract
-- compliance itself (issue 15): its contract records are stored meanwhile in other_records
-- (kind 'contract'), and a later migration gives them a table and points this view at them.
CREATE TABLE customers (
    customer text PRIMARY KEY,
    name     text NOT NULL DEFAULT ''
);
CREATE TABLE contracts (
    contract     text PRIMARY KEY,
    customer     text NOT NULL REFERENCES customers,
    term         text NOT NULL DEFAULT 'sla_availability'
                 CHECK (term IN ('sla_availability', 'availability')),
    target       double precision NOT NULL CHECK (target > 0 AND target <= 1),
    minimum      double precision CHECK (minimum > 0 AND minimum <= target),
    min_coverage double precision NOT NULL DEFAULT 0.95 CHECK (min_coverage BETWEEN 0 AND 1),
    valid_from   date,
    valid_to     date
);
CREATE TABLE contract_machines (
    contract text NOT NULL REFERENCES contracts ON DELETE CASCADE,
    agent    text NOT NULL,
    machine  text NOT NULL,
    PRIMARY KEY (contract, agent, machine)
);

-- Contract compliance per customer, per contract and month, from sums of the components of
-- the final day records received so far (3.11, 3.13 "so far" with R unknown to the back
-- office: no best/worst/forecast here). state: no_data, not_measurable (coverage below the
-- contract's min_coverage), target_met, minimum_met, missed. provider_budget_s: provider
-- downtime still allowed at the target over the time measured so far (negative = over).
CREATE VIEW contract_compliance AS
WITH per AS (
    SELECT c.customer, c.contract, c.term, c.target, c.minimum, c.min_coverage, a.month,
           count(DISTINCT (a.agent, a.machine)) AS machines,
           sum(a.days)                  AS machine_days,
           sum(a.planned_time_s)        AS p,
           sum(a.known_time_s)          AS k,
           sum(a.operating_time_s)      AS o,
           sum(a.downtime_customer_s)   AS c_s,
           sum(a.downtime_provider_s)   AS bp
    FROM contracts c
    JOIN contract_machines cm ON cm.contract = c.contract
    JOIN availability_machine_month a ON a.agent = cm.agent AND a.machine = cm.machine
    WHERE (c.valid_from IS NULL OR a.month >= to_char(c.valid_from, 'YYYY-MM'))
      AND (c.valid_to IS NULL OR a.month <= to_char(c.valid_to, 'YYYY-MM'))
    GROUP BY c.customer, c.contract, c.term, c.target, c.minimum, c.min_coverage, a.month
), valued AS (
    SELECT per.*,
           CASE WHEN p > 0 THEN k / p END AS coverage,
           CASE term
               WHEN 'sla_availability' THEN CASE WHEN p > 0 AND k - c_s > 0
                                                 THEN (k - c_s - bp) / (k - c_s) END
               WHEN 'availability' THEN CASE WHEN k > 0 THEN o / k END
           END AS value,
           CASE term
               WHEN 'sla_availability' THEN (1 - target) * (k - c_s) - bp
               WHEN 'availability' THEN (1 - target) * k - (k - o)
           END AS provider_budget_s
    FROM per
)
SELECT customer, contract, term, month, machines, machine_days,
       round(coverage::numeric, 6)::double precision AS data_coverage,
       round(value::numeric, 6)::double precision    AS value,
       target, minimum,
       CASE WHEN value IS NULL THEN 'no_data'
            WHEN coverage < min_coverage THEN 'not_measurable'
            WHEN value >= target THEN 'target_met'
            WHEN minimum IS NOT NULL AND value >= minimum THEN 'minimum_met'
            ELSE 'missed'
       END AS state,
       round(provider_budget_s::numeric, 3)::double precision AS provider_budget_s
FROM valued;
