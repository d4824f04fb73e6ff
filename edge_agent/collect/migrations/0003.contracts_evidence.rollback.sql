DROP VIEW contract_compliance;
ALTER VIEW contract_compliance_from_days RENAME TO contract_compliance;
DROP TABLE device_contract_alerts;
DROP TABLE device_contract_period_revisions;
DROP TABLE device_contract_periods;
DROP TABLE device_contract_status;
ALTER TABLE agents
    DROP COLUMN verified_epoch,
    DROP COLUMN verified_records,
    DROP COLUMN verification_detail;
DROP TABLE signed_records;
