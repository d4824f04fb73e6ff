DROP VIEW contract_compliance;
DROP TABLE contract_machines;
DROP TABLE contracts;
DROP TABLE customers;
DROP VIEW availability_machine_month;
DROP VIEW telemetry_values;
DROP VIEW agent_overview;
