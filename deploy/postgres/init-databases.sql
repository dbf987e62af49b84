-- Runs once on the first start of the TimescaleDB container (docker-entrypoint-initdb.d):
-- the market database is POSTGRES_DB (hft); MLflow, Airflow and Optuna get their own.
CREATE DATABASE mlflow;
CREATE DATABASE airflow;
CREATE DATABASE optuna;
