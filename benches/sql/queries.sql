-- The four queries of the SQL benchmark (benches/sql.sh), one per line after its name.
-- $SENSOR, $ASSET, $DAY and $WEEK are filled in by the harness.
-- a_one_sensor_one_day
SELECT sensor_id, asset_id, sensor_type, value, unit, ts FROM readings WHERE sensor_id = '$SENSOR' AND ts >= TIMESTAMP '$DAY 00:00:00+00:00' AND ts < TIMESTAMP '$DAY 00:00:00+00:00' + INTERVAL '1 day' ORDER BY ts
-- b_hourly_mean_one_asset_one_week
SELECT sensor_id, date_trunc('hour', ts) AS hour, avg(value) AS mean FROM readings WHERE asset_id = '$ASSET' AND ts >= TIMESTAMP '$WEEK 00:00:00+00:00' AND ts < TIMESTAMP '$WEEK 00:00:00+00:00' + INTERVAL '7 days' GROUP BY 1, 2 ORDER BY 1, 2
-- c_anomalies_per_asset
SELECT asset_id, count(*) AS anomalies FROM anomalies GROUP BY asset_id ORDER BY asset_id
-- d_readings_per_sensor_type
SELECT sensor_type, count(*) AS readings FROM readings GROUP BY sensor_type ORDER BY sensor_type
