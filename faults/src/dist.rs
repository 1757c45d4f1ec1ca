//! Latency distributions (`Dist`), sampled from the seeded decision RNG.
//! (stub: to be implemented)

use std::time::Duration;

use schemars::JsonSchema;

/// One of the five forms of DESIGN §4.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum Dist {
    Fixed(#[schemars(with = "String")] Duration),
    Uniform(#[schemars(with = "String")] Duration, #[schemars(with = "String")] Duration),
    Normal {
        #[schemars(with = "String")]
        mean: Duration,
        #[schemars(with = "String")]
        stddev: Duration,
    },
    LogNormal {
        #[schemars(with = "String")]
        median: Duration,
        #[schemars(with = "String")]
        p99: Duration,
    },
    Exponential {
        #[schemars(with = "String")]
        mean: Duration,
    },
}

impl Dist {
    /// Draw one duration; never negative.
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let _ = rng;
        match self {
            Dist::Fixed(d) => *d,
            _ => Duration::ZERO,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Dist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse_duration(&s).map(Dist::Fixed).map_err(serde::de::Error::custom)
    }
}
