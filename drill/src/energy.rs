//! Measuring power over a window (docs/capacity.md): from a real card's DCGM exporter
//! when the scenario names one (`energy.prometheus`), else from the GPU model's
//! busy time, else from load over capacity.
//!
//! [`EnergyMeter::start`] is called when a probe's measured time begins and
//! [`EnergyMeter::finish`] when it ends; the reading is the window's mean power,
//! with where it came from, for [`crate::cost::price`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use brownout_faults::gpu::Replica;

use crate::cost::{EnergySpec, PowerModel};

/// DCGM's instantaneous board power per GPU, watts (a gauge).
pub const DCGM_POWER: &str = "DCGM_FI_DEV_POWER_USAGE";
/// DCGM's energy since the driver loaded per GPU, millijoules (a counter): exact
/// over a window when the exporter is configured to serve it.
pub const DCGM_ENERGY: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
/// brownout's busy time per simulated replica (`/metrics` of the proxy).
pub const BUSY_SECONDS: &str = "brownout_gpu_busy_seconds_total";

/// Why power could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum EnergyError {
    /// The URL is not one a client can ask.
    #[error("`{0}` is not an http:// URL")]
    BadUrl(String),
    /// The endpoint could not be read.
    #[error("cannot read {url}: {why}")]
    Scrape {
        /// What was asked.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The endpoint answered without the series the meter needs.
    #[error("{url} serves no `{series}` series{hint}")]
    NoSeries {
        /// What was asked.
        url: String,
        /// The series looked for.
        series: &'static str,
        /// What that usually means.
        hint: &'static str,
    },
    /// The GPU model's busy time needs watts to scale.
    #[error("no power model: `energy` names no `gpu` preset and no `idle_w`/`max_w`")]
    NoPowerModel,
    /// Nothing to measure from.
    #[error("no power source: neither `energy.prometheus` nor a metrics endpoint nor replicas")]
    NoSource,
}

/// Where a reading came from, most trustworthy first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// DCGM's energy counter or power gauge on real cards.
    Dcgm,
    /// The GPU model's busy fraction scaled by the power model.
    GpuModel,
    /// Load over capacity scaled by the power model.
    Load,
}

/// A window's mean power.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerReading {
    /// Mean watts over the window, every card of every replica together.
    pub mean_w: f64,
    /// Where it came from.
    pub source: PowerSource,
    /// The busy fraction the model was scaled by (GPU model and load sources),
    /// averaged over replicas.
    pub utilisation: Option<f64>,
    /// How long the window lasted, seconds.
    pub duration_s: f64,
}

/// One sample of Prometheus text: name, labels in order, value.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The metric name (with `_bucket`, `_sum`... suffixes as written).
    pub name: String,
    /// Labels as written, unescaped.
    pub labels: Vec<(String, String)>,
    /// The value (`NaN`, `+Inf` and `-Inf` included).
    pub value: f64,
}

/// Why a line of Prometheus text is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct PromError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

fn metric_name_ok(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        v => v.parse().ok(),
    }
}

/// Parse the Prometheus text exposition format (version 0.0.4): comments and
/// blank lines skipped, label values unescaped, an optional timestamp allowed.
/// Strict about the rest, so a page that is not Prometheus text is an error, not
/// an empty reading.
pub fn parse_prometheus(text: &str) -> Result<Vec<PromSample>, PromError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let err = |why: &str| PromError {
            line: i + 1,
            why: why.to_owned(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        if !metric_name_ok(name) {
            return Err(err(&format!("bad metric name `{name}`")));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            loop {
                while chars
                    .peek()
                    .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
                {
                    chars.next();
                }
                match chars.peek() {
                    Some((j, '}')) => {
                        end = Some(*j);
                        break;
                    }
                    None => break,
                    _ => {}
                }
                let mut key = String::new();
                while let Some((_, c)) = chars.peek() {
                    if *c == '=' || c.is_whitespace() {
                        break;
                    }
                    key.push(*c);
                    chars.next();
                }
                if !metric_name_ok(&key) || key.contains(':') {
                    return Err(err(&format!("bad label name `{key}`")));
                }
                if chars.next().map(|(_, c)| c) != Some('=')
                    || chars.next().map(|(_, c)| c) != Some('"')
                {
                    return Err(err("a label value must be quoted"));
                }
                let mut value = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            _ => return Err(err("bad escape in a label value")),
                        },
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(err("unterminated label value"));
                }
                labels.push((key, value));
            }
            let end = end.ok_or_else(|| err("unterminated label set"))?;
            rest = &r[end + 1..];
        }
        let mut fields = rest.split_whitespace();
        let v = fields.next().ok_or_else(|| err("no value"))?;
        let value = parse_value(v).ok_or_else(|| err(&format!("bad value `{v}`")))?;
        if let Some(ts) = fields.next() {
            if ts.parse::<i64>().is_err() {
                return Err(err(&format!("bad timestamp `{ts}`")));
            }
        }
        if fields.next().is_some() {
            return Err(err("text after the timestamp"));
        }
        out.push(PromSample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// GET `url` and parse it as Prometheus text.
pub async fn scrape(url: &str) -> Result<Vec<PromSample>, EnergyError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| EnergyError::BadUrl(url.to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(EnergyError::BadUrl(url.to_owned()));
    }
    let fail = |why: String| EnergyError::Scrape {
        url: url.to_owned(),
        why,
    };
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = http::Request::get(uri)
        .header("accept", "text/plain")
        .body(Empty::new())
        .map_err(|e| fail(e.to_string()))?;
    let get = async {
        let resp = client.request(req).await.map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("status {}", resp.status())));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        Ok(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(10), get)
        .await
        .map_err(|_| fail("no answer within 10 s".into()))??;
    let text = String::from_utf8_lossy(&body);
    parse_prometheus(&text).map_err(|e| fail(format!("not Prometheus text: {e}")))
}

/// Per series (labels), the value of every sample named `name`.
fn series(samples: &[PromSample], name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    samples
        .iter()
        .filter(|s| s.name == name && s.value.is_finite())
        .map(|s| (s.labels.clone(), s.value))
        .collect()
}

/// What a meter reads.
enum Source {
    /// DCGM: energy counters at the ends when served, power gauges sampled always.
    Dcgm { url: String },
    /// brownout's `/metrics`: busy seconds per rule at the ends.
    Busy { url: String, model: PowerModel },
    /// In-process replicas: busy time at the ends.
    Replicas {
        replicas: Vec<Arc<Replica>>,
        model: PowerModel,
    },
}

/// What the sampling task hands back.
type Sampled = Result<Vec<f64>, EnergyError>;

/// Measures mean power between [`EnergyMeter::start`] and [`EnergyMeter::finish`].
pub struct EnergyMeter {
    source: Source,
    started: Instant,
    /// Counter values at the start (DCGM energy in mJ, or busy seconds), by series.
    first: BTreeMap<Vec<(String, String)>, f64>,
    /// DCGM power sampling (sums of every card's watts).
    sampler: Option<(oneshot::Sender<()>, JoinHandle<Sampled>)>,
}

impl std::fmt::Debug for EnergyMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnergyMeter")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// How often DCGM's power gauge is sampled when there is no energy counter.
pub const DCGM_INTERVAL: Duration = Duration::from_secs(1);

impl EnergyMeter {
    /// Start measuring. `energy.prometheus` (DCGM) is read when given; otherwise
    /// `metrics_url`, a brownout proxy's `/metrics` (its `gpu_saturation` replicas'
    /// busy seconds), scaled by the power model. Errors when the source cannot be
    /// read or lacks its series, so a window is never priced with made-up power.
    pub async fn start(
        spec: &EnergySpec,
        metrics_url: Option<&str>,
    ) -> Result<EnergyMeter, EnergyError> {
        Self::start_every(spec, metrics_url, DCGM_INTERVAL).await
    }

    /// [`EnergyMeter::start`] sampling DCGM's power gauge every `interval`.
    pub async fn start_every(
        spec: &EnergySpec,
        metrics_url: Option<&str>,
        interval: Duration,
    ) -> Result<EnergyMeter, EnergyError> {
        let source = match (&spec.prometheus, metrics_url) {
            (Some(url), _) => Source::Dcgm { url: url.clone() },
            (None, Some(url)) => Source::Busy {
                url: url.to_owned(),
                model: spec.model().ok_or(EnergyError::NoPowerModel)?,
            },
            (None, None) => return Err(EnergyError::NoSource),
        };
        let started = Instant::now();
        let mut meter = EnergyMeter {
            source,
            started,
            first: BTreeMap::new(),
            sampler: None,
        };
        match &meter.source {
            Source::Dcgm { url } => {
                let s = scrape(url).await?;
                meter.first = series(&s, DCGM_ENERGY);
                let now = series(&s, DCGM_POWER);
                if now.is_empty() && meter.first.is_empty() {
                    return Err(EnergyError::NoSeries {
                        url: url.clone(),
                        series: DCGM_POWER,
                        hint: " (is it the dcgm-exporter's /metrics?)",
                    });
                }
                let (stop, mut stopped) = oneshot::channel::<()>();
                let url = url.clone();
                let first: f64 = now.values().sum();
                let task = tokio::spawn(async move {
                    let mut sums = vec![first];
                    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            _ = tick.tick() => {
                                let s = scrape(&url).await?;
                                sums.push(series(&s, DCGM_POWER).values().sum());
                            }
                        }
                    }
                    Ok(sums)
                });
                meter.sampler = Some((stop, task));
            }
            Source::Busy { url, .. } => {
                let s = scrape(url).await?;
                meter.first = series(&s, BUSY_SECONDS);
                if meter.first.is_empty() {
                    return Err(EnergyError::NoSeries {
                        url: url.clone(),
                        series: BUSY_SECONDS,
                        hint: " (no gpu_saturation fault has run on it)",
                    });
                }
            }
            Source::Replicas { .. } => {}
        }
        Ok(meter)
    }

    /// Start measuring in-process replicas (a drill's `target: {upstream: sim,
    /// gpu: ...}`) by their busy time, scaled by the power model.
    pub fn start_replicas(
        spec: &EnergySpec,
        replicas: Vec<Arc<Replica>>,
    ) -> Result<EnergyMeter, EnergyError> {
        if replicas.is_empty() {
            return Err(EnergyError::NoSource);
        }
        let model = spec.model().ok_or(EnergyError::NoPowerModel)?;
        let first = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    vec![("replica".to_owned(), i.to_string())],
                    r.busy_time().as_secs_f64(),
                )
            })
            .collect();
        Ok(EnergyMeter {
            source: Source::Replicas { replicas, model },
            started: Instant::now(),
            first,
            sampler: None,
        })
    }

    /// Stop and read the window's mean power.
    pub async fn finish(self) -> Result<PowerReading, EnergyError> {
        let elapsed = self.started.elapsed().as_secs_f64();
        let from_busy = |last: &BTreeMap<Vec<(String, String)>, f64>, model: &PowerModel| {
            // Each series is one replica: its busy fraction over the window.
            let busy: Vec<f64> = self
                .first
                .iter()
                .map(|(k, a)| {
                    let b = last.get(k).copied().unwrap_or(*a);
                    if elapsed > 0.0 {
                        ((b - a) / elapsed).clamp(0.0, 1.0)
                    } else {
                        0.0
                    }
                })
                .collect();
            let n = busy.len().max(1) as f64;
            PowerReading {
                mean_w: busy.iter().map(|u| model.watts(*u)).sum(),
                source: PowerSource::GpuModel,
                utilisation: Some(busy.iter().sum::<f64>() / n),
                duration_s: elapsed,
            }
        };
        match &self.source {
            Source::Dcgm { url } => {
                let Some((stop, task)) = self.sampler else {
                    return Err(EnergyError::NoSource);
                };
                let _ = stop.send(());
                let sums = task.await.map_err(|e| EnergyError::Scrape {
                    url: url.clone(),
                    why: e.to_string(),
                })??;
                let last = scrape(url).await?;
                let elapsed = self.started.elapsed().as_secs_f64();
                let energy = series(&last, DCGM_ENERGY);
                let mean_w = if !self.first.is_empty() && elapsed > 0.0 {
                    // The counter is exact between the two ends (mJ).
                    let mj: f64 = self
                        .first
                        .iter()
                        .map(|(k, a)| energy.get(k).map_or(0.0, |b| (b - a).max(0.0)))
                        .sum();
                    mj / 1e3 / elapsed
                } else {
                    let mut sums = sums;
                    sums.push(series(&last, DCGM_POWER).values().sum());
                    sums.iter().sum::<f64>() / sums.len() as f64
                };
                Ok(PowerReading {
                    mean_w,
                    source: PowerSource::Dcgm,
                    utilisation: None,
                    duration_s: elapsed,
                })
            }
            Source::Busy { url, model } => {
                let last = series(&scrape(url).await?, BUSY_SECONDS);
                Ok(from_busy(&last, model))
            }
            Source::Replicas { replicas, model } => {
                let last = replicas
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        (
                            vec![("replica".to_owned(), i.to_string())],
                            r.busy_time().as_secs_f64(),
                        )
                    })
                    .collect();
                Ok(from_busy(&last, model))
            }
        }
    }
}

/// The last resort: utilisation as load over capacity (a probe at half the
/// highest passing load reads as half busy), scaled by the power model, for
/// `replicas` replicas. `None` without a power model or a capacity.
pub fn power_from_load(
    spec: &EnergySpec,
    load: f64,
    capacity: f64,
    replicas: u32,
    duration_s: f64,
) -> Option<PowerReading> {
    let model = spec.model()?;
    if !(capacity.is_finite() && capacity > 0.0 && load.is_finite() && load >= 0.0) {
        return None;
    }
    let u = (load / capacity).min(1.0);
    Some(PowerReading {
        mean_w: model.watts(u) * f64::from(replicas.max(1)),
        source: PowerSource::Load,
        utilisation: Some(u),
        duration_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What dcgm-exporter 3.x serves with its default counters (two cards; the
    /// energy counter is in its default set, `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`).
    pub(crate) fn dcgm(power: [f64; 2], energy_mj: Option<[u64; 2]>) -> String {
        let mut s = String::from(
            "# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).\n\
             # TYPE DCGM_FI_DEV_SM_CLOCK gauge\n\
             DCGM_FI_DEV_SM_CLOCK{gpu=\"0\",UUID=\"GPU-5c1a5a0e-6b1e-8c4d-1d3c-0e0c8f2c6b7a\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-a\",DCGM_FI_DRIVER_VERSION=\"550.54.15\"} 1980\n\
             # HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n\
             # TYPE DCGM_FI_DEV_POWER_USAGE gauge\n",
        );
        for (i, p) in power.iter().enumerate() {
            s.push_str(&format!(
                "DCGM_FI_DEV_POWER_USAGE{{gpu=\"{i}\",UUID=\"GPU-000{i}\",pci_bus_id=\"00000000:1{i}:00.0\",device=\"nvidia{i}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-a\"}} {p:.3}\n"
            ));
        }
        if let Some(e) = energy_mj {
            s.push_str("# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n");
            for (i, e) in e.iter().enumerate() {
                s.push_str(&format!(
                    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"{i}\",UUID=\"GPU-000{i}\",pci_bus_id=\"00000000:1{i}:00.0\",device=\"nvidia{i}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-a\"}} {e}\n"
                ));
            }
        }
        s
    }

    #[test]
    fn parses_dcgm_exporter_text() {
        let s = parse_prometheus(&dcgm([312.5, 87.25], Some([1_000, 2_000]))).unwrap();
        let p = series(&s, DCGM_POWER);
        assert_eq!(p.len(), 2);
        assert_eq!(p.values().sum::<f64>(), 399.75);
        let first = &s.iter().find(|x| x.name == DCGM_POWER).unwrap().labels;
        assert_eq!(
            first[4],
            ("modelName".into(), "NVIDIA H100 80GB HBM3".into())
        );
        assert_eq!(series(&s, DCGM_ENERGY).values().sum::<f64>(), 3000.0);
    }

    #[test]
    fn parses_escapes_specials_and_timestamps_and_refuses_other_text() {
        let s = parse_prometheus(
            "a_total{rule=\"x \\\"q\\\" \\\\ y\\n\"} 1.5 1700000000000\nb +Inf\nc{} NaN\n",
        )
        .unwrap();
        assert_eq!(s[0].labels[0].1, "x \"q\" \\ y\n");
        assert_eq!(s[0].value, 1.5);
        assert!(s[1].value.is_infinite() && s[2].value.is_nan());
        for bad in [
            "<html>oops</html>",
            "a{rule=x} 1",
            "a{rule=\"x\" 1",
            "a one",
            "9a 1",
        ] {
            assert!(parse_prometheus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_over_capacity_is_the_last_resort() {
        let e = EnergySpec {
            gpu: Some("a100-40gb".into()),
            ..EnergySpec::default()
        };
        let r = power_from_load(&e, 8.0, 16.0, 2, 20.0).unwrap();
        // Half busy: 50 + 350 × 0.5 = 225 W per replica, two replicas.
        assert_eq!(r.mean_w, 450.0);
        assert_eq!(r.source, PowerSource::Load);
        assert_eq!(power_from_load(&e, 8.0, 0.0, 1, 20.0), None);
        assert_eq!(
            power_from_load(&EnergySpec::default(), 8.0, 16.0, 1, 20.0),
            None
        );
    }
}
