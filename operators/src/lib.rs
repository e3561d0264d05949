//! Vigil's dataflow operators.
//!
//! Pure logic first: each detector, window and policy is a plain struct with `observe`-style
//! methods, unit-tested beside its code. The two stages compose them per sensor
//! ([`sensor_stage::SensorStage`]) and per asset ([`asset_stage::AssetStage`]); [`dataflow`]
//! wraps the stages as timely operators. This crate knows nothing of Kafka, files or Parquet.
//!
//! | module | input | output | state |
//! |---|---|---|---|
//! | [`decode`] | JSON bytes | loosely typed fields | none |
//! | [`validate`] | fields | reading or dead letter | string interner |
//! | [`dedupe`] | reading ids | duplicate or not | ids within the horizon, per sensor |
//! | [`limits`] | readings | hard-limit breaches | one flag per sensor |
//! | [`window`] | readings | tumbling and hopping window features | open panes per sensor |
//! | [`robust`] | window features | level, spread, excursion, stuck anomalies | baseline rings per sensor |
//! | [`drift`] | window means | Page-Hinkley and KS drift | reference and recent rings per sensor |
//! | [`novelty`] | window end, min, mean, max | novelty score in [0, 1] (range and sequence novelty, and the seasonal channel's) | range ring, two context bitsets, the seasonal channel per sensor |
//! | [`seasonal`] | window end, mean | seasonal novelty in [0, weight] (unusual for the hour of the week) | a mean per hour of the week, residual range ring per sensor |
//! | [`multivariate`] | an asset's window means | Mahalanobis anomalies | mean and covariance per asset |
//! | [`normal_model`] | an asset's rows (normal period, then each row) | T² per dimension, alarm with hysteresis, per-sensor contributions | the fitted model (serde, for the registry); a smoothed vector per asset |
//! | [`calibrate`] | a detector's scores over a normal period | its threshold (quantile × margin) | none |
//! | [`predictor`] | window means, anomalies | health, RUL | trend rings per sensor of the asset |
//! | [`rul_features`] | an asset's window means | RUL feature vector | a ring of means per input per asset |
//! | [`gbt`] | feature rows, targets | gradient-boosted regression trees | the trees (trained offline) |
//! | [`rul_model`] | RUL features | RUL from a registered model | none beyond the features |
//! | [`scheduler`] | predictions | proposals, decision requests | open proposal per asset |
//! | [`scoring`] | anomaly scores per row, label windows | NAB scores, the corpus threshold | none |
//! | [`test_datasets`] | a data set's path | its path, a skip, or a failure under CI | none |

pub mod asset_stage;
pub mod calibrate;
pub mod dataflow;
pub mod decode;
pub mod dedupe;
pub mod drift;
pub mod gbt;
pub mod incidents;
pub mod limits;
pub mod multivariate;
pub mod normal_model;
pub mod novelty;
pub mod predictor;
pub mod robust;
pub mod rul_features;
pub mod rul_model;
pub mod scheduler;
pub mod scoring;
pub mod seasonal;
pub mod sensor_stage;
pub mod test_datasets;
pub mod validate;
pub mod watermark;
pub mod window;
