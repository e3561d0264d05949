//! The catalog reads a real history written by the connectors' writer.

use std::sync::Arc;

use vigil_connectors::history::{commit, TableWriter, WriterConfig};
use vigil_events::{SensorReading, SensorType, SourcePos, MS_PER_DAY};
use vigil_queries::Catalog;

#[test]
fn catalog_lists_tables_rows_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        data_dir: dir.path().into(),
        run: "r".into(),
        worker: 0,
        max_rows_per_file: 100,
        row_group_rows: 50,
        max_file_span_ms: i64::MAX,
        sources: Arc::new(vec![]),
    };
    let mut w = TableWriter::<SensorReading>::new(cfg);
    for i in 0..250i64 {
        w.push(SensorReading {
            id_hash: i as u64,
            sensor_id: Arc::from("s"),
            sensor_key: 1,
            asset_id: Arc::from("a"),
            sensor_type: SensorType::Vibration,
            value: i as f64,
            unit: Arc::from("mm/s"),
            ts: i * MS_PER_DAY / 100,
            extra: None,
            pos: SourcePos { source: 0, offset: i as u64 },
        })
        .unwrap();
    }
    let files = w.finish().unwrap();
    let cat = Catalog::read(dir.path()).unwrap();
    assert_eq!(cat.rows("readings"), 0, "nothing is visible before the commit");
    commit(dir.path(), "r", files, 0).unwrap();
    let cat = Catalog::read(dir.path()).unwrap();
    assert_eq!(cat.tables.keys().collect::<Vec<_>>(), vec!["readings"]);
    assert_eq!(cat.rows("readings"), 250);
    assert_eq!(cat.tables["readings"].partitions, vec!["1970-01-01", "1970-01-02", "1970-01-03"]);
    assert!(cat.tables["readings"].columns.contains(&"sensor_id".to_string()));
}

/// The documented schemas are the ones the writers write.
#[test]
fn documented_tables_match_the_writers_schemas() {
    use vigil_connectors::history::HistoryRow;
    use vigil_events::{
        AnomalyDetected, DriftDetected, HumanDecisionRequested, MaintenancePredicted, MaintenanceScheduled, RejectedReading,
        WindowFeatures,
    };
    fn check<R: HistoryRow>() {
        let doc = vigil_queries::tables::table_doc(R::TABLE).unwrap_or_else(|| panic!("{} is not documented", R::TABLE));
        assert_eq!(doc.schema(), R::schema(), "{}", R::TABLE);
    }
    check::<SensorReading>();
    check::<RejectedReading>();
    check::<WindowFeatures>();
    check::<AnomalyDetected>();
    check::<DriftDetected>();
    check::<MaintenancePredicted>();
    check::<MaintenanceScheduled>();
    check::<HumanDecisionRequested>();
}
