//! Latency distributions (`Dist`), sampled from the seeded decision RNG.
//!
//! Real latency is rarely a constant: a fixed delay makes every retry and timeout
//! line up, which hides the bugs drills exist to find. The five forms below cover what
//! providers actually show, with parameters people can read off a dashboard (a median
//! and a p99 rather than a `mu` and a `sigma`).
//!
//! In files:
//! ```yaml
//! duration: 250ms
//! duration: {uniform: [100ms, 300ms]}
//! duration: {normal: {mean: 200ms, stddev: 50ms}}
//! duration: {lognormal: {median: 200ms, p99: 2s}}
//! duration: {exponential: {mean: 100ms}}
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use rand_distr::{Distribution, Exp, LogNormal, Normal, StandardUniform};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;

use crate::duration::{format_duration, DurationStr};

/// The standard normal quantile at 0.99, which turns a p99 into a lognormal sigma.
pub const Z_P99: f64 = 2.3263;

/// The names of the map forms, for error hints.
pub const DIST_FORMS: &[&str] = &["uniform", "normal", "lognormal", "exponential"];

/// One of the five forms of docs/profiles.md, "Durations and distributions".
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Always the same duration (`"250ms"`).
    Fixed(Duration),
    /// Evenly spread between the two bounds, inclusive (`{uniform: [lo, hi]}`).
    Uniform(Duration, Duration),
    /// A bell curve, clamped at zero (`{normal: {mean, stddev}}`).
    Normal { mean: Duration, stddev: Duration },
    /// The long-tailed shape of real model latency (`{lognormal: {median, p99}}`).
    LogNormal { median: Duration, p99: Duration },
    /// Memoryless waits, e.g. queueing (`{exponential: {mean}}`).
    Exponential { mean: Duration },
}

fn to_duration(secs: f64) -> Duration {
    // `max` also maps NaN to zero; overflow saturates instead of panicking.
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

impl Dist {
    /// Draw one duration; never negative.
    ///
    /// Takes the caller's RNG so that decisions stay reproducible from the seed.
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match *self {
            Dist::Fixed(d) => d,
            Dist::Uniform(lo, hi) => {
                let (lo, hi) = (lo.as_secs_f64(), hi.as_secs_f64());
                let u: f64 = StandardUniform.sample(rng);
                to_duration(lo + (hi - lo) * u)
            }
            Dist::Normal { mean, stddev } => {
                match Normal::new(mean.as_secs_f64(), stddev.as_secs_f64()) {
                    Ok(n) => to_duration(n.sample(rng)),
                    Err(_) => mean,
                }
            }
            Dist::LogNormal { median, p99 } => match lognormal_params(median, p99) {
                Some((mu, sigma)) => match LogNormal::new(mu, sigma) {
                    Ok(d) => to_duration(d.sample(rng)),
                    Err(_) => median,
                },
                None => median,
            },
            Dist::Exponential { mean } => {
                let m = mean.as_secs_f64();
                if m <= 0.0 {
                    return Duration::ZERO;
                }
                match Exp::new(1.0 / m) {
                    Ok(d) => to_duration(d.sample(rng)),
                    Err(_) => mean,
                }
            }
        }
    }

    /// The median duration, so `explain` can say what a typical request sees.
    pub fn median(&self) -> Duration {
        match *self {
            Dist::Fixed(d) => d,
            Dist::Uniform(lo, hi) => (lo + hi) / 2,
            // Clamping at zero leaves the median alone while the mean is positive.
            Dist::Normal { mean, .. } => mean,
            Dist::LogNormal { median, .. } => median,
            Dist::Exponential { mean } => to_duration(mean.as_secs_f64() * std::f64::consts::LN_2),
        }
    }

    /// The mean duration (before clamping at zero), for capacity estimates in `explain`.
    pub fn mean(&self) -> Duration {
        match *self {
            Dist::Fixed(d) => d,
            Dist::Uniform(lo, hi) => (lo + hi) / 2,
            Dist::Normal { mean, .. } => mean,
            Dist::LogNormal { median, p99 } => match lognormal_params(median, p99) {
                Some((mu, sigma)) => to_duration((mu + sigma * sigma / 2.0).exp()),
                None => median,
            },
            Dist::Exponential { mean } => mean,
        }
    }

    /// The largest value this distribution can return, when it is bounded.
    pub fn max(&self) -> Option<Duration> {
        match *self {
            Dist::Fixed(d) => Some(d),
            Dist::Uniform(lo, hi) => Some(lo.max(hi)),
            _ => None,
        }
    }
}

/// `mu` and `sigma` of the underlying normal, from a median and a p99 in seconds.
fn lognormal_params(median: Duration, p99: Duration) -> Option<(f64, f64)> {
    let (m, p) = (median.as_secs_f64(), p99.as_secs_f64());
    if m <= 0.0 || p < m {
        return None;
    }
    Some((m.ln(), (p / m).ln() / Z_P99))
}

/// Plain words, as `explain` prints them.
impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: &Duration| format_duration(*d);
        match self {
            Dist::Fixed(x) => write!(f, "{}", d(x)),
            Dist::Uniform(lo, hi) => write!(f, "between {} and {} (uniform)", d(lo), d(hi)),
            Dist::Normal { mean, stddev } => {
                write!(f, "about {} ± {} (normal)", d(mean), d(stddev))
            }
            Dist::LogNormal { median, p99 } => {
                write!(f, "median {}, p99 {} (lognormal)", d(median), d(p99))
            }
            Dist::Exponential { mean } => write!(f, "mean {} (exponential)", d(mean)),
        }
    }
}

/// The key of a map form, as its own enum so that an unknown form is reported at
/// the key with a "did you mean" hint.
#[derive(Deserialize)]
#[serde(rename = "DistForm", rename_all = "lowercase")]
enum DistForm {
    Uniform,
    Normal,
    #[serde(alias = "log_normal")]
    Lognormal,
    Exponential,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NormalParams {
    mean: DurationStr,
    stddev: DurationStr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogNormalParams {
    median: DurationStr,
    p99: DurationStr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExponentialParams {
    mean: DurationStr,
}

impl<'de> Deserialize<'de> for Dist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DistVisitor)
    }
}

struct DistVisitor;

impl<'de> Visitor<'de> for DistVisitor {
    type Value = Dist;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration like \"250ms\" or one of {uniform: [100ms, 300ms]}, \
             {normal: {mean: 200ms, stddev: 50ms}}, {lognormal: {median: 200ms, p99: 2s}}, \
             {exponential: {mean: 100ms}}",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dist, E> {
        crate::duration::parse_duration(v)
            .map(Dist::Fixed)
            .map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dist, E> {
        Err(E::custom(format!(
            "`{v}` has no unit{}{}",
            crate::yaml::HINT_SEPARATOR,
            crate::duration::DURATION_HINT
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dist, E> {
        self.visit_u64(v.unsigned_abs())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dist, E> {
        Err(E::custom(format!(
            "`{v}` has no unit{}{}",
            crate::yaml::HINT_SEPARATOR,
            crate::duration::DURATION_HINT
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dist, A::Error> {
        let Some(form) = map.next_key::<DistForm>()? else {
            return Err(de::Error::custom(format!(
                "an empty mapping is not a distribution{}write a duration like 250ms, or one of {}",
                crate::yaml::HINT_SEPARATOR,
                DIST_FORMS.join(", ")
            )));
        };
        let (dist, form) = match form {
            DistForm::Uniform => {
                let (lo, hi): (DurationStr, DurationStr) = map.next_value()?;
                (Dist::Uniform(lo.0, hi.0), "uniform")
            }
            DistForm::Normal => {
                let p: NormalParams = map.next_value()?;
                (
                    Dist::Normal {
                        mean: p.mean.0,
                        stddev: p.stddev.0,
                    },
                    "normal",
                )
            }
            DistForm::Lognormal => {
                let p: LogNormalParams = map.next_value()?;
                (
                    Dist::LogNormal {
                        median: p.median.0,
                        p99: p.p99.0,
                    },
                    "lognormal",
                )
            }
            DistForm::Exponential => {
                let p: ExponentialParams = map.next_value()?;
                (Dist::Exponential { mean: p.mean.0 }, "exponential")
            }
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a distribution has exactly one form, but `{extra}` follows `{form}`{}keep only one of them",
                crate::yaml::HINT_SEPARATOR
            )));
        }
        Ok(dist)
    }
}

impl JsonSchema for Dist {
    fn schema_name() -> Cow<'static, str> {
        "Dist".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let dur = generator.subschema_for::<DurationStr>();
        json_schema!({
            "description": "A latency distribution: a fixed duration, or one of uniform, normal, lognormal, exponential.",
            "oneOf": [
                dur,
                {
                    "type": "object",
                    "properties": {
                        "uniform": {"type": "array", "items": dur, "minItems": 2, "maxItems": 2}
                    },
                    "required": ["uniform"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": {
                        "normal": {
                            "type": "object",
                            "properties": {"mean": dur, "stddev": dur},
                            "required": ["mean", "stddev"],
                            "additionalProperties": false
                        }
                    },
                    "required": ["normal"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": {
                        "lognormal": {
                            "type": "object",
                            "properties": {"median": dur, "p99": dur},
                            "required": ["median", "p99"],
                            "additionalProperties": false
                        }
                    },
                    "required": ["lognormal"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": {
                        "exponential": {
                            "type": "object",
                            "properties": {"mean": dur},
                            "required": ["mean"],
                            "additionalProperties": false
                        }
                    },
                    "required": ["exponential"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const N: usize = 20_000;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Sorted samples in milliseconds.
    fn draw(d: &Dist) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut v: Vec<f64> = (0..N)
            .map(|_| d.sample(&mut rng).as_secs_f64() * 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn pct(v: &[f64], p: f64) -> f64 {
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= want.abs() * rel,
            "got {got:.2}, want {want:.2} ± {:.0}%",
            rel * 100.0
        );
    }

    #[test]
    fn fixed_is_constant() {
        let v = draw(&Dist::Fixed(ms(250)));
        assert_eq!(v[0], 250.0);
        assert_eq!(v[N - 1], 250.0);
    }

    #[test]
    fn uniform_spreads_evenly() {
        let v = draw(&Dist::Uniform(ms(100), ms(300)));
        assert!(v[0] >= 100.0 && v[N - 1] <= 300.0);
        close(pct(&v, 0.5), 200.0, 0.02);
        close(pct(&v, 0.25), 150.0, 0.03);
        close(pct(&v, 0.9), 280.0, 0.02);
    }

    #[test]
    fn normal_centres_on_mean() {
        let v = draw(&Dist::Normal {
            mean: ms(200),
            stddev: ms(50),
        });
        close(pct(&v, 0.5), 200.0, 0.02);
        // mean + 1.2816 sd at p90
        close(pct(&v, 0.9), 264.08, 0.03);
        let mean = v.iter().sum::<f64>() / N as f64;
        close(mean, 200.0, 0.02);
    }

    #[test]
    fn normal_clamps_at_zero() {
        let v = draw(&Dist::Normal {
            mean: ms(10),
            stddev: ms(100),
        });
        assert_eq!(v[0], 0.0);
        assert!(v.iter().all(|x| *x >= 0.0));
    }

    #[test]
    fn lognormal_hits_median_and_p99() {
        let v = draw(&Dist::LogNormal {
            median: ms(200),
            p99: ms(2000),
        });
        close(pct(&v, 0.5), 200.0, 0.04);
        close(pct(&v, 0.99), 2000.0, 0.12);
        assert!(v[0] > 0.0);
    }

    #[test]
    fn exponential_has_its_mean() {
        let v = draw(&Dist::Exponential { mean: ms(100) });
        close(pct(&v, 0.5), 100.0 * std::f64::consts::LN_2, 0.04);
        let mean = v.iter().sum::<f64>() / N as f64;
        close(mean, 100.0, 0.03);
        close(pct(&v, 0.99), 100.0 * 100f64.ln(), 0.1);
    }

    #[test]
    fn degenerate_parameters_do_not_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            Dist::Exponential {
                mean: Duration::ZERO
            }
            .sample(&mut rng),
            Duration::ZERO
        );
        assert_eq!(
            Dist::LogNormal {
                median: Duration::ZERO,
                p99: ms(1)
            }
            .sample(&mut rng),
            Duration::ZERO
        );
        assert_eq!(
            Dist::LogNormal {
                median: ms(5),
                p99: ms(1)
            }
            .sample(&mut rng),
            ms(5)
        );
        assert_eq!(Dist::Uniform(ms(5), ms(5)).sample(&mut rng), ms(5));
        assert_eq!(
            Dist::Normal {
                mean: ms(5),
                stddev: Duration::ZERO
            }
            .sample(&mut rng),
            ms(5)
        );
    }

    #[test]
    fn same_seed_same_draws() {
        let d = Dist::LogNormal {
            median: ms(200),
            p99: ms(2000),
        };
        assert_eq!(draw(&d), draw(&d));
    }

    #[test]
    fn summaries() {
        assert_eq!(Dist::Uniform(ms(100), ms(300)).median(), ms(200));
        assert_eq!(Dist::Exponential { mean: ms(100) }.mean(), ms(100));
        let ln = Dist::LogNormal {
            median: ms(200),
            p99: ms(2000),
        };
        assert_eq!(ln.median(), ms(200));
        assert!(ln.mean() > ms(200));
        assert_eq!(ln.to_string(), "median 200ms, p99 2s (lognormal)");
    }
}
