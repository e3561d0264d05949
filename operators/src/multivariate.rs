//! Multivariate anomaly detector over one asset's sensors.
//!
//! Input: for each tumbling window, the window means of all the asset's sensors (a vector in a
//! fixed sensor order). Output: the squared Mahalanobis distance of the vector from the asset's
//! exponentially weighted mean and covariance, and a finding when it exceeds the threshold after
//! warm-up, with each sensor's contribution (its standardised deviation) to explain it. Joint
//! behaviour matters here: sensors that move together as usual score low even when each moves,
//! and a pattern that breaks the usual relationship scores high even when each sensor is in range.
//! State: a mean vector and a covariance matrix of the asset's sensor count, and a counter.

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MultivariateConfig {
    /// Weight of a new window in the running mean and covariance.
    pub alpha: f64,
    /// Windows before scoring.
    pub warmup: u64,
    /// Threshold on the squared distance divided by the dimension.
    pub threshold: f64,
    /// Ridge added to the diagonal, relative to each variance.
    pub ridge: f64,
}

impl Default for MultivariateConfig {
    fn default() -> Self {
        MultivariateConfig { alpha: 0.05, warmup: 20, threshold: 12.0, ridge: 0.05 }
    }
}

/// A flagged asset window.
#[derive(Debug, Clone, PartialEq)]
pub struct MultivariateFinding {
    /// Squared distance divided by the dimension.
    pub score: f64,
    /// Per-sensor standardised deviation, in the input order.
    pub contributions: Vec<f64>,
}

/// Per-asset state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AssetMahalanobis {
    cfg: MultivariateConfig,
    mean: Vec<f64>,
    cov: Vec<f64>,
    seen: u64,
}

/// Solves `a x = b` for a symmetric positive definite `a` (n×n, row-major) by Cholesky.
/// Returns `None` if `a` is not positive definite.
pub fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    Some(x)
}

impl AssetMahalanobis {
    /// A fresh detector.
    pub fn new(cfg: MultivariateConfig) -> Self {
        AssetMahalanobis { cfg, mean: Vec::new(), cov: Vec::new(), seen: 0 }
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.mean.clear();
        self.cov.clear();
        self.seen = 0;
    }

    /// Scores one window's vector of means, then updates the running estimates.
    pub fn observe(&mut self, x: &[f64]) -> Option<MultivariateFinding> {
        let n = x.len();
        if n == 0 {
            return None;
        }
        if self.mean.len() != n {
            self.mean = x.to_vec();
            self.cov = vec![0.0; n * n];
            self.seen = 1;
            return None;
        }
        let d: Vec<f64> = x.iter().zip(&self.mean).map(|(a, b)| a - b).collect();
        let mut finding = None;
        if self.seen >= self.cfg.warmup {
            let mut a = self.cov.clone();
            for i in 0..n {
                let var = self.cov[i * n + i];
                let floor = 1e-6 * self.mean[i].abs().max(1.0);
                a[i * n + i] = var * (1.0 + self.cfg.ridge) + floor * floor;
            }
            if let Some(sol) = cholesky_solve(&a, &d) {
                let d2: f64 = d.iter().zip(&sol).map(|(a, b)| a * b).sum();
                let score = d2 / n as f64;
                if score >= self.cfg.threshold {
                    let contributions = (0..n).map(|i| d[i] / a[i * n + i].sqrt()).collect();
                    finding = Some(MultivariateFinding { score, contributions });
                }
            }
        }
        // Flagged windows are kept out of the estimates so an anomaly does not teach itself.
        if finding.is_none() {
            let alpha = if self.seen < self.cfg.warmup { 1.0 / (self.seen as f64 + 1.0) } else { self.cfg.alpha };
            for (m, di) in self.mean.iter_mut().zip(&d) {
                *m += alpha * di;
            }
            for i in 0..n {
                for j in 0..n {
                    let c = &mut self.cov[i * n + j];
                    *c = (1.0 - alpha) * (*c + alpha * d[i] * d[j]);
                }
            }
        }
        self.seen += 1;
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&a, &[2.0, 1.0]).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(cholesky_solve(&[0.0], &[1.0]).is_none());
    }

    #[test]
    fn broken_correlation_is_flagged_but_joint_moves_are_not() {
        let mut d = AssetMahalanobis::new(MultivariateConfig::default());
        // Two sensors that move together.
        for i in 0..200 {
            let t = ((i * 37) % 17) as f64 / 17.0 - 0.5;
            let u = ((i * 53) % 11) as f64 / 11.0 - 0.5;
            assert!(d.observe(&[10.0 + t, 20.0 + 2.0 * t + 0.05 * u]).is_none() || i < 30);
        }
        assert!(d.observe(&[10.4, 20.8]).is_none(), "a joint move in the usual direction");
        let f = d.observe(&[10.4, 19.2]).expect("the relationship broke");
        assert!(f.score > 12.0);
        assert_eq!(f.contributions.len(), 2);
    }
}
