//! A trained remaining-useful-life model, as the asset stage runs it.
//!
//! Input: per asset, after each window end, the tumbling-window mean of each of the model's
//! inputs (a sensor is the input its name within the asset names: sensor `unit-007-s2` of asset
//! `unit-007` is input `s2`; a sensor whose name is no input is ignored; a missing input carries
//! its last value). Output: the RUL in windows, in `[0, clip]`, from the gradient-boosted trees
//! ([`crate::gbt`]) over the features ([`crate::rul_features`]) of those means. State: the
//! features' rings per asset ([`RulFeatures`], fixed size).
//!
//! The model is trained offline (`vigil train cmapss`) on exactly these features, fed with one
//! window mean per input per step, and kept in the model registry; the pipeline loads a pinned
//! or the latest version at start.

use serde::{Deserialize, Serialize};

use crate::gbt::GbtModel;
use crate::rul_features::{RulFeatureConfig, RulFeatures};

/// The registry kind of these models: which code can load the artifact.
pub const RUL_MODEL_KIND: &str = "gbt-rul";

/// The artifact: inputs, feature settings, trees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RulModel {
    /// Input names, in the order the features take them.
    pub inputs: Vec<String>,
    /// Feature settings.
    pub features: RulFeatureConfig,
    /// The trees.
    pub gbt: GbtModel,
    /// Predictions are clipped to `[0, clip]` windows (the training targets were).
    pub clip: f64,
}

impl RulModel {
    /// A fresh per-asset feature state for this model.
    pub fn new_state(&self) -> RulFeatures {
        RulFeatures::new(&self.features, self.inputs.len())
    }

    /// The RUL, in windows, for a feature vector.
    pub fn predict_vector(&self, v: &[f64]) -> f64 {
        let p = self.gbt.predict(v);
        if p.is_finite() {
            p.clamp(0.0, self.clip)
        } else {
            self.clip
        }
    }

    /// The RUL, in windows, for an asset's feature state.
    pub fn predict(&self, state: &RulFeatures) -> f64 {
        self.predict_vector(&state.vector())
    }

    /// The input a sensor of `asset` feeds: its name within the asset.
    pub fn input_of(&self, asset: &str, sensor_id: &str) -> Option<usize> {
        let name = sensor_id.strip_prefix(asset).and_then(|s| s.strip_prefix('-')).unwrap_or(sensor_id);
        self.inputs.iter().position(|i| i == name)
    }
}

/// A model loaded from the registry, with its name and version.
#[derive(Debug, Clone)]
pub struct LoadedRul {
    /// Registry name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// The model.
    pub model: RulModel,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gbt::GbtParams;

    fn model() -> RulModel {
        let cfg = RulFeatureConfig::default();
        let inputs = vec!["s1".to_string(), "s2".to_string()];
        // Life left falls as s1 rises.
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for unit in 0..20 {
            let len = 100 + unit * 5;
            let mut f = RulFeatures::new(&cfg, 2);
            for c in 0..len {
                f.observe(&[Some(c as f64 / len as f64), Some(1.0)]);
                x.push(f.vector());
                y.push(((len - c - 1) as f64).min(125.0));
            }
        }
        let gbt = GbtModel::fit(&x, &y, &GbtParams::default()).unwrap();
        RulModel { inputs, features: cfg, gbt, clip: 125.0 }
    }

    #[test]
    fn sensors_map_to_inputs_by_their_name_within_the_asset() {
        let m = model();
        assert_eq!(m.input_of("unit-007", "unit-007-s2"), Some(1));
        assert_eq!(m.input_of("unit-007", "s1"), Some(0));
        assert_eq!(m.input_of("unit-007", "unit-007-s3"), None);
    }

    #[test]
    fn predictions_are_clipped_and_fall_with_wear() {
        let m = model();
        let mut f = m.new_state();
        let mut early = None;
        for c in 0..110 {
            f.observe(&[Some(c as f64 / 110.0), Some(1.0)]);
            if c == 20 {
                early = Some(m.predict(&f));
            }
        }
        let late = m.predict(&f);
        let early = early.unwrap();
        assert!((0.0..=125.0).contains(&early) && (0.0..=125.0).contains(&late));
        assert!(late + 30.0 < early, "{early} then {late}");
        let back: RulModel = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.predict(&f).to_bits(), late.to_bits());
    }
}
