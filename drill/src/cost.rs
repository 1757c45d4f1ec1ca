//! What serving costs (docs/capacity.md): the scenario's
//! `cost` and `energy` blocks, pricing a measured window, and the cost of chaos
//! in drill reports.
//!
//! Everything here is pure arithmetic over counts the caller measured, so the
//! figures in `capacity.json` and the drill reports can be reproduced by hand from
//! the records (`docs/metrics-definitions.md` states every formula):
//!
//! - GPU time: `gpu_hour × gpus_per_replica × replicas × duration_s / 3600`;
//! - tokens: `input × input_per_mtok / 1e6 + output × output_per_mtok / 1e6`, over
//!   the tokens the upstream billed only ([`billed_tokens`]: an injected 429, or any
//!   answer the upstream refused, costs nothing);
//! - energy: mean watts × `duration_s` / 3600 Wh, per 1k output tokens.
//!
//! A figure that cannot be computed (no requests, no tokens, no price given) is
//! `None` and shows as "no data", never as 0.

use serde::{Deserialize, Serialize};

use brownout_faults::gpu::{power_names, power_spec};
use brownout_faults::record::Record;
use brownout_faults::yaml::{Diagnostic, Node, PathSeg};

/// `cost:` in a scenario: what the deployment costs, per GPU-hour and/or per token.
/// Both may be given; both are then reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    /// Price of one GPU for an hour (any currency; reports print it as `$`).
    #[serde(default)]
    pub gpu_hour: Option<f64>,
    /// Replicas serving the target (default 1).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// GPUs in each replica (default 1): a tensor-parallel replica on two cards
    /// costs two GPU-hours an hour.
    #[serde(default)]
    pub gpus_per_replica: Option<u32>,
    /// A provider's per-token prices.
    #[serde(default)]
    pub tokens: Option<TokenPrices>,
}

/// Per-token prices, per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrices {
    /// Price of a million prompt tokens.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// Price of a million generated tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
}

impl TokenPrices {
    /// The price of `t`.
    pub fn of(&self, t: Tokens) -> f64 {
        t.input as f64 * self.input_per_mtok / 1e6 + t.output as f64 * self.output_per_mtok / 1e6
    }
}

impl CostSpec {
    /// GPU cost of the whole deployment per hour, when `gpu_hour` is given.
    pub fn per_hour(&self) -> Option<f64> {
        let gpus =
            f64::from(self.replicas.unwrap_or(1)) * f64::from(self.gpus_per_replica.unwrap_or(1));
        self.gpu_hour.map(|p| p * gpus)
    }
}

/// `energy:` in a scenario: a power model and, optionally, where to read real power.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergySpec {
    /// A power preset (`h100-80gb`, `h100-pcie-80gb`, `a100-40gb`, ...).
    #[serde(default)]
    pub gpu: Option<String>,
    /// Idle watts per card (overrides the preset's).
    #[serde(default)]
    pub idle_w: Option<f64>,
    /// Watts per card at full load (overrides the preset's).
    #[serde(default)]
    pub max_w: Option<f64>,
    /// A Prometheus endpoint serving DCGM's `DCGM_FI_DEV_POWER_USAGE` (the
    /// dcgm-exporter's `/metrics`): real power, preferred to the model.
    #[serde(default)]
    pub prometheus: Option<String>,
}

/// A resolved power model: `cards × (idle_w + (max_w − idle_w) × utilisation)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerModel {
    /// Cards in one replica (a `2x` preset has two).
    pub cards: u32,
    /// Idle watts per card.
    pub idle_w: f64,
    /// Maximum watts per card.
    pub max_w: f64,
}

impl PowerModel {
    /// Watts one replica draws at `utilisation` (clamped to 0..=1).
    pub fn watts(&self, utilisation: f64) -> f64 {
        let u = if utilisation.is_finite() {
            utilisation.clamp(0.0, 1.0)
        } else {
            0.0
        };
        f64::from(self.cards) * (self.idle_w + (self.max_w - self.idle_w) * u)
    }
}

impl EnergySpec {
    /// The power model, or `None` when the block gives neither a preset nor both
    /// watt figures (only `prometheus`), or names an unknown preset (which
    /// [`check`] reports).
    pub fn model(&self) -> Option<PowerModel> {
        let preset = self.gpu.as_deref().map(power_spec);
        let preset = match preset {
            Some(None) => return None,
            Some(Some(p)) => Some(p),
            None => None,
        };
        Some(PowerModel {
            cards: preset.map_or(1, |p| p.cards),
            idle_w: self.idle_w.or(preset.map(|p| p.idle_w))?,
            max_w: self.max_w.or(preset.map(|p| p.max_w))?,
        })
    }
}

/// Input and output tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Prompt tokens.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
}

impl Tokens {
    fn add(&mut self, t: Tokens) {
        self.input += t.input;
        self.output += t.output;
    }
}

/// The tokens the upstream billed for one exchange: `None` when it billed nothing.
///
/// Billed means the upstream was called and answered with a success status: an
/// injected error or a GPU queue's overflow never reached it (`upstream` is null
/// in the record), and providers do not bill the errors they answer. A 2xx answer
/// that was cut off, reset or timed out was billed for the prompt and for the
/// tokens generated before it ended, which is what the record counts (usage, or
/// the content events that passed through).
pub fn billed_tokens(r: &Record) -> Option<Tokens> {
    let up = r.upstream.as_ref()?;
    if !up.status.is_some_and(|s| (200..300).contains(&s)) {
        return None;
    }
    Some(Tokens {
        input: r.input_tokens.unwrap_or(0),
        output: r.output_tokens.unwrap_or(0),
    })
}

/// The tokens the upstream billed over `records` (a probe window's records, say),
/// and how many exchanges it billed: [`Window::billed`] and a `requests` count
/// that leaves out what never reached the upstream.
pub fn billed_sum<'a>(records: impl IntoIterator<Item = &'a Record>) -> (u64, Tokens) {
    let mut n = 0;
    let mut t = Tokens::default();
    for b in records.into_iter().filter_map(billed_tokens) {
        n += 1;
        t.add(b);
    }
    (n, t)
}

/// One measured window, as the capacity command measures a probe.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// How long the window lasted, seconds.
    pub duration_s: f64,
    /// Requests answered in it (the "per 1k requests" denominator).
    pub requests: u64,
    /// Tokens the upstream billed in it ([`billed_tokens`] summed).
    pub billed: Tokens,
    /// The GPU model's busy fraction over the window, 0 to 1, when known.
    pub gpu_busy: Option<f64>,
    /// Mean power over the window from a meter ([`crate::energy::EnergyMeter`]),
    /// preferred to `gpu_busy`.
    pub power_w: Option<f64>,
}

/// One pricing's figures for a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// What the window cost.
    pub total: f64,
    /// Per 1,000 requests; `None` without requests.
    pub per_1k_requests: Option<f64>,
    /// Per 1,000,000 output tokens; `None` without output tokens.
    pub per_1m_output_tokens: Option<f64>,
}

impl Rates {
    fn of(total: f64, w: &Window) -> Rates {
        Rates {
            total,
            per_1k_requests: (w.requests > 0).then(|| total / w.requests as f64 * 1e3),
            per_1m_output_tokens: (w.billed.output > 0)
                .then(|| total / w.billed.output as f64 * 1e6),
        }
    }
}

/// A priced window. With both pricings given, both are here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Priced {
    /// From `gpu_hour`: the deployment's GPU time over the window.
    pub gpu_hour: Option<Rates>,
    /// From `tokens`: the billed tokens at the provider's prices.
    pub tokens: Option<Rates>,
    /// Mean power, watts.
    pub power_w: Option<f64>,
    /// Energy over the window, Wh.
    pub energy_wh: Option<f64>,
    /// Energy per 1,000 output tokens, Wh; `None` without output tokens.
    pub energy_wh_per_1k_tokens: Option<f64>,
}

impl Priced {
    /// `capacity.json`'s `cost_per_1k_requests`: the GPU-hour figure when given
    /// (what a self-hosted replica costs), else the per-token one.
    pub fn cost_per_1k_requests(&self) -> Option<f64> {
        self.gpu_hour
            .and_then(|r| r.per_1k_requests)
            .or_else(|| self.tokens.and_then(|r| r.per_1k_requests))
    }

    /// `capacity.json`'s `cost_per_1m_output_tokens`, chosen as
    /// [`Priced::cost_per_1k_requests`] is.
    pub fn cost_per_1m_output_tokens(&self) -> Option<f64> {
        self.gpu_hour
            .and_then(|r| r.per_1m_output_tokens)
            .or_else(|| self.tokens.and_then(|r| r.per_1m_output_tokens))
    }
}

/// Price a measured window. Power is the window's metered mean (`power_w`), else
/// the power model at the GPU model's busy fraction (`gpu_busy`); without either
/// the energy figures are `None`.
pub fn price(cost: Option<&CostSpec>, energy: Option<&EnergySpec>, w: &Window) -> Priced {
    let valid = w.duration_s.is_finite() && w.duration_s > 0.0;
    let gpu_hour = cost
        .and_then(CostSpec::per_hour)
        .filter(|_| valid)
        .map(|h| Rates::of(h * w.duration_s / 3600.0, w));
    let tokens = cost
        .and_then(|c| c.tokens)
        .map(|p| Rates::of(p.of(w.billed), w));
    let power_w = w.power_w.or_else(|| {
        let m = energy?.model()?;
        Some(m.watts(w.gpu_busy?))
    });
    let energy_wh = power_w.filter(|_| valid).map(|p| p * w.duration_s / 3600.0);
    Priced {
        gpu_hour,
        tokens,
        power_w,
        energy_wh,
        energy_wh_per_1k_tokens: energy_wh
            .filter(|_| w.billed.output > 0)
            .map(|e| e / w.billed.output as f64 * 1e3),
    }
}

/// Check a scenario's `cost` and `energy` blocks: prices and watts are finite and
/// not negative, counts at least 1, at least one pricing given, presets known,
/// idle below max. Every problem comes with its position.
pub fn check(
    cost: Option<&CostSpec>,
    energy: Option<&EnergySpec>,
    tree: &Node,
    file: &str,
) -> Vec<Diagnostic> {
    use PathSeg::Key;
    let mut out = Vec::new();
    let mut at = |path: &[PathSeg<'_>], msg: String, hint: &str| {
        out.push(Diagnostic::at(
            file,
            tree.nearest(path),
            msg,
            Some(hint.to_owned()),
        ));
    };
    let money = |v: f64| v.is_finite() && v >= 0.0;
    if let Some(c) = cost {
        if c.gpu_hour.is_none() && c.tokens.is_none() {
            at(
                &[Key("cost")],
                "`cost` gives no price".into(),
                "write `{gpu_hour: 2.50}` (per GPU) or `{tokens: {input_per_mtok: 0.15, output_per_mtok: 0.60}}`, or both",
            );
        }
        if let Some(p) = c.gpu_hour.filter(|p| !money(*p)) {
            at(
                &[Key("cost"), Key("gpu_hour")],
                format!("`gpu_hour` must be 0 or more, not {p}"),
                "it is the price of one GPU for an hour, e.g. `gpu_hour: 2.50`",
            );
        }
        for (key, v) in [
            ("replicas", c.replicas),
            ("gpus_per_replica", c.gpus_per_replica),
        ] {
            if v == Some(0) {
                at(
                    &[Key("cost"), Key(key)],
                    format!("`{key}` must be at least 1"),
                    "the default is 1",
                );
            }
        }
        if c.gpu_hour.is_none() && (c.replicas.is_some() || c.gpus_per_replica.is_some()) {
            at(
                &[Key("cost")],
                "`replicas` and `gpus_per_replica` multiply `gpu_hour`, which is not given".into(),
                "add `gpu_hour: PRICE` (per GPU)",
            );
        }
        if let Some(t) = &c.tokens {
            for (key, v) in [
                ("input_per_mtok", t.input_per_mtok),
                ("output_per_mtok", t.output_per_mtok),
            ] {
                if !money(v) {
                    at(
                        &[Key("cost"), Key("tokens"), Key(key)],
                        format!("`{key}` must be 0 or more, not {v}"),
                        "prices are per million tokens, e.g. `output_per_mtok: 0.60`",
                    );
                }
            }
        }
    }
    if let Some(e) = energy {
        let preset = e.gpu.as_deref().map(|g| (g, power_spec(g)));
        if let Some((g, None)) = preset {
            at(
                &[Key("energy"), Key("gpu")],
                format!("unknown GPU power preset `{g}`"),
                &format!("known: {}", power_names()),
            );
        }
        for (key, v) in [("idle_w", e.idle_w), ("max_w", e.max_w)] {
            if let Some(v) = v.filter(|v| !money(*v)) {
                at(
                    &[Key("energy"), Key(key)],
                    format!("`{key}` must be 0 or more, not {v}"),
                    "watts per card, e.g. `{idle_w: 70, max_w: 700}` for an H100 SXM",
                );
            }
        }
        if e.gpu.is_none() && (e.idle_w.is_none() != e.max_w.is_none()) {
            at(
                &[Key("energy")],
                "`energy` needs both `idle_w` and `max_w` without a `gpu` preset".into(),
                &format!("or name a preset: {}", power_names()),
            );
        }
        if e.gpu.is_none() && e.idle_w.is_none() && e.max_w.is_none() && e.prometheus.is_none() {
            at(
                &[Key("energy")],
                "`energy` gives no power model and no `prometheus` endpoint".into(),
                &format!(
                    "write `{{gpu: h100-80gb}}` or `{{idle_w, max_w}}`; presets: {}",
                    power_names()
                ),
            );
        }
        if let Some(m) = e.model() {
            if m.idle_w > m.max_w {
                at(
                    &[Key("energy")],
                    format!(
                        "idle power ({} W) is above maximum power ({} W)",
                        m.idle_w, m.max_w
                    ),
                    "`idle_w` is what a card draws with nothing running",
                );
            }
        }
        if let Some(u) = &e.prometheus {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.parse::<http::Uri>().is_err()
            {
                at(
                    &[Key("energy"), Key("prometheus")],
                    format!("`prometheus` must be an http:// URL, not `{u}`"),
                    "the dcgm-exporter serves `http://HOST:9400/metrics`",
                );
            }
        }
    }
    out
}

/// One exchange as the chaos pricing sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exchange<'a> {
    /// Its phase, `None` outside any.
    pub phase: Option<&'a str>,
    /// A later attempt of a call (the SDK's retry count, or a repeated fingerprint).
    pub retry: bool,
    /// The answer did not arrive whole and successful.
    pub failed: bool,
    /// What the upstream billed for it ([`billed_tokens`]).
    pub billed: Option<Tokens>,
    /// Billed, but the record has no input token count.
    pub input_unknown: bool,
}

/// One phase's cost of chaos.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseCost {
    /// The phase (`all` for the whole drill).
    pub name: String,
    /// How long it lasted, seconds, when known (for the GPU-hour figures).
    pub duration_s: Option<f64>,
    /// Exchanges the upstream billed.
    pub billed_exchanges: u64,
    /// Billed exchanges whose record has no input token count (the proxy read no
    /// body and no usage came back, as for a stream cut before its usage chunk):
    /// their prompts are not priced.
    #[serde(default)]
    pub input_unknown: u64,
    /// Everything billed.
    pub billed: Tokens,
    /// Billed on extra attempts (retries), however they ended.
    pub retries: Tokens,
    /// Billed on answers that failed or were cut off, whichever attempt.
    pub failed: Tokens,
    /// Billed on exchanges that were retries or failed, each counted once: the
    /// tokens the chaos cost.
    pub wasted: Tokens,
    /// The same at the per-token prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_price: Option<ChaosPrice>,
    /// The phase's GPU time, and the share of it spent on wasted output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_price: Option<ChaosPrice>,
}

/// Prices of a phase's token groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosPrice {
    /// Everything billed (for GPU time: the phase's GPU time).
    pub billed: f64,
    /// Retries' tokens.
    pub retries: f64,
    /// Failed or cut-off answers' tokens.
    pub failed: f64,
    /// Retried or failed, once each.
    pub wasted: f64,
}

/// The cost of chaos in a drill report, per phase and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosCost {
    /// The scenario's prices.
    pub cost: CostSpec,
    /// Per phase, in order.
    pub phases: Vec<PhaseCost>,
    /// The whole drill.
    pub total: PhaseCost,
}

/// Price the chaos of `exchanges`, phase by phase (`phases`: names and durations
/// in order; exchanges of other phases are counted in the total only).
///
/// Per-token prices apply to each group's tokens. A GPU-hour price buys time, not
/// tokens: the phase's GPU time is apportioned by output tokens, so the wasted
/// share is `wasted.output / billed.output` of it (decode time dominates serving).
pub fn chaos_cost(
    exchanges: &[Exchange<'_>],
    phases: &[(String, Option<f64>)],
    cost: &CostSpec,
) -> ChaosCost {
    let mut rows: Vec<PhaseCost> = phases
        .iter()
        .map(|(name, d)| PhaseCost {
            name: name.clone(),
            duration_s: *d,
            ..PhaseCost::default()
        })
        .collect();
    let total_s = phases.iter().map(|(_, d)| *d).sum::<Option<f64>>();
    let mut total = PhaseCost {
        name: "all".into(),
        duration_s: total_s,
        ..PhaseCost::default()
    };
    for e in exchanges {
        let Some(t) = e.billed else { continue };
        let row = e.phase.and_then(|p| rows.iter_mut().find(|r| r.name == p));
        for r in row.into_iter().chain(std::iter::once(&mut total)) {
            r.billed_exchanges += 1;
            r.input_unknown += u64::from(e.input_unknown);
            r.billed.add(t);
            if e.retry {
                r.retries.add(t);
            }
            if e.failed {
                r.failed.add(t);
            }
            if e.retry || e.failed {
                r.wasted.add(t);
            }
        }
    }
    for r in rows.iter_mut().chain(std::iter::once(&mut total)) {
        r.tokens_price = cost.tokens.map(|p| ChaosPrice {
            billed: p.of(r.billed),
            retries: p.of(r.retries),
            failed: p.of(r.failed),
            wasted: p.of(r.wasted),
        });
        r.gpu_price = match (cost.per_hour(), r.duration_s) {
            (Some(h), Some(d)) if d > 0.0 => {
                let phase = h * d / 3600.0;
                let share = |t: Tokens| {
                    if r.billed.output == 0 {
                        0.0
                    } else {
                        phase * t.output as f64 / r.billed.output as f64
                    }
                };
                Some(ChaosPrice {
                    billed: phase,
                    retries: share(r.retries),
                    failed: share(r.failed),
                    wasted: share(r.wasted),
                })
            }
            _ => None,
        };
    }
    ChaosCost {
        cost: cost.clone(),
        phases: rows,
        total,
    }
}

/// A price for people: `$0.0123`, `$1.23`, `$1,234`.
pub fn fmt_money(v: f64) -> String {
    if v == 0.0 {
        "$0".into()
    } else if v.abs() < 0.01 {
        format!("${v:.6}")
    } else if v.abs() < 100.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

impl ChaosCost {
    /// The table's header and rows: phase, billed tokens, retries', failed
    /// answers', the wasted tokens and their price at each pricing given.
    pub fn rows(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut head: Vec<String> = [
            "phase",
            "billed in/out",
            "retries in/out",
            "failed in/out",
            "wasted in/out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let by_tokens = self.cost.tokens.is_some();
        let by_gpu = self.cost.gpu_hour.is_some();
        if by_tokens {
            head.push("wasted (tokens)".into());
            head.push("of billed".into());
        }
        if by_gpu {
            head.push("wasted (GPU time)".into());
            head.push("of GPU time".into());
        }
        let t = |t: Tokens| format!("{}/{}", t.input, t.output);
        let share = |p: &ChaosPrice| {
            if p.billed > 0.0 {
                format!("{:.1}%", p.wasted / p.billed * 100.0)
            } else {
                "no data".into()
            }
        };
        let mut rows = Vec::new();
        for r in self.phases.iter().chain(std::iter::once(&self.total)) {
            let mut row = vec![
                r.name.clone(),
                t(r.billed),
                t(r.retries),
                t(r.failed),
                t(r.wasted),
            ];
            if by_tokens {
                match &r.tokens_price {
                    Some(p) => {
                        row.push(fmt_money(p.wasted));
                        row.push(share(p));
                    }
                    None => row.extend(["no data".into(), "no data".into()]),
                }
            }
            if by_gpu {
                match &r.gpu_price {
                    Some(p) => {
                        row.push(fmt_money(p.wasted));
                        row.push(share(p));
                    }
                    None => row.extend(["no data".into(), "no data".into()]),
                }
            }
            rows.push(row);
        }
        (head, rows)
    }

    /// What the figures leave out, when they leave something out.
    pub fn note(&self) -> Option<String> {
        let n = self.total.input_unknown;
        (n > 0).then(|| {
            format!("{n} billed exchange(s) carried no input token count (the proxy read no body and no usage came back), so their prompts are not priced")
        })
    }

    /// For the terminal: the table and what it means.
    pub fn table(&self) -> String {
        let (head, rows) = self.rows();
        let mut out = String::from("cost of chaos (tokens the upstream billed; wasted = on retries or on failed/cut-off answers):\n");
        out.push_str(&crate::report::align(&head, &rows, |i| i >= 1, true));
        if let Some(n) = self.note() {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }

    /// For `summary.md`.
    pub fn markdown(&self) -> String {
        let (head, rows) = self.rows();
        let mut out = String::from("### Cost of chaos\n\nTokens the upstream billed (input/output); *wasted* = billed on retries or on answers that failed or were cut off, each exchange once.\n\n");
        out.push_str(&format!(
            "| {} |\n|{}|\n",
            head.join(" | "),
            head.iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { "---" } else { "---:" })
                .collect::<Vec<_>>()
                .join("|")
        ));
        for r in rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        if let Some(n) = self.note() {
            out.push_str(&format!("\nNote: {n}.\n"));
        }
        out
    }
}

/// Read a record as [`chaos_cost`] does: whether it failed, and what was billed.
pub fn exchange_of(r: &Record, retry: bool) -> Exchange<'_> {
    Exchange {
        phase: r.phase.as_deref(),
        retry,
        failed: r.outcome != brownout_faults::record::Outcome::Ok,
        billed: billed_tokens(r),
        input_unknown: r.input_tokens.is_none() && billed_tokens(r).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(duration_s: f64, requests: u64, input: u64, output: u64) -> Window {
        Window {
            duration_s,
            requests,
            billed: Tokens { input, output },
            ..Window::default()
        }
    }

    #[test]
    fn gpu_hour_is_per_gpu_times_gpus_and_replicas() {
        let c = CostSpec {
            gpu_hour: Some(2.5),
            replicas: Some(3),
            gpus_per_replica: Some(2),
            ..CostSpec::default()
        };
        // One hour of 6 GPUs at $2.50: $15, over 10,000 requests and 2M tokens.
        let p = price(Some(&c), None, &w(3600.0, 10_000, 5_000_000, 2_000_000));
        let g = p.gpu_hour.unwrap();
        assert!((g.total - 15.0).abs() < 1e-9);
        assert!((g.per_1k_requests.unwrap() - 1.5).abs() < 1e-9);
        assert!((g.per_1m_output_tokens.unwrap() - 7.5).abs() < 1e-9);
        assert_eq!(p.tokens, None);
        assert_eq!(p.cost_per_1k_requests(), g.per_1k_requests);
    }

    #[test]
    fn both_pricings_are_reported_and_missing_data_is_none() {
        let c = CostSpec {
            gpu_hour: Some(2.0),
            tokens: Some(TokenPrices {
                input_per_mtok: 0.15,
                output_per_mtok: 0.60,
            }),
            ..CostSpec::default()
        };
        let p = price(Some(&c), None, &w(1800.0, 2000, 1_000_000, 500_000));
        assert!((p.gpu_hour.unwrap().total - 1.0).abs() < 1e-9);
        let t = p.tokens.unwrap();
        assert!((t.total - (0.15 + 0.30)).abs() < 1e-9);
        assert!((t.per_1k_requests.unwrap() - 0.225).abs() < 1e-9);
        // Without requests or tokens there is no per-unit figure, never a 0.
        let empty = price(Some(&c), None, &w(60.0, 0, 0, 0));
        assert_eq!(empty.cost_per_1k_requests(), None);
        assert_eq!(empty.cost_per_1m_output_tokens(), None);
        assert_eq!(empty.tokens.unwrap().total, 0.0);
        assert_eq!(price(None, None, &w(60.0, 10, 1, 1)), Priced::default());
    }

    #[test]
    fn energy_from_the_meter_or_the_busy_fraction() {
        let e = EnergySpec {
            gpu: Some("h100-80gb".into()),
            ..EnergySpec::default()
        };
        let mut win = w(3600.0, 1000, 0, 1_000_000);
        win.gpu_busy = Some(0.5);
        // 70 + 630 × 0.5 = 385 W for an hour over 1M tokens: 0.385 Wh per 1k.
        let p = price(None, Some(&e), &win);
        assert_eq!(p.power_w, Some(385.0));
        assert!((p.energy_wh.unwrap() - 385.0).abs() < 1e-9);
        assert!((p.energy_wh_per_1k_tokens.unwrap() - 0.385).abs() < 1e-12);
        // A metered reading wins over the model.
        win.power_w = Some(500.0);
        assert_eq!(price(None, Some(&e), &win).power_w, Some(500.0));
        // Nothing to go on: no figure.
        let bare = w(3600.0, 1000, 0, 1_000_000);
        assert_eq!(price(None, Some(&e), &bare).energy_wh, None);
        let two = EnergySpec {
            gpu: Some("2xh100-80gb".into()),
            idle_w: Some(100.0),
            ..EnergySpec::default()
        };
        assert_eq!(two.model().unwrap().watts(1.0), 1400.0);
        assert_eq!(two.model().unwrap().watts(0.0), 200.0);
    }

    #[test]
    fn chaos_cost_prices_retries_and_failures_once_each() {
        let t = |i, o| {
            Some(Tokens {
                input: i,
                output: o,
            })
        };
        let ex = [
            // calm: one whole answer.
            Exchange {
                phase: Some("calm"),
                retry: false,
                failed: false,
                billed: t(100, 50),
                input_unknown: false,
            },
            // storm: a free injected 429 and its retry answered whole; a stream
            // cut off (its record has no prompt count) and its retry cut off too.
            Exchange {
                phase: Some("storm"),
                retry: false,
                failed: true,
                billed: None,
                input_unknown: false,
            },
            Exchange {
                phase: Some("storm"),
                retry: true,
                failed: false,
                billed: t(100, 50),
                input_unknown: false,
            },
            Exchange {
                phase: Some("storm"),
                retry: false,
                failed: true,
                billed: t(100, 20),
                input_unknown: true,
            },
            Exchange {
                phase: Some("storm"),
                retry: true,
                failed: true,
                billed: t(100, 10),
                input_unknown: false,
            },
        ];
        let c = CostSpec {
            gpu_hour: Some(3.6),
            tokens: Some(TokenPrices {
                input_per_mtok: 1.0,
                output_per_mtok: 10.0,
            }),
            ..CostSpec::default()
        };
        let phases = [
            ("calm".to_owned(), Some(10.0)),
            ("storm".to_owned(), Some(10.0)),
        ];
        let cc = chaos_cost(&ex, &phases, &c);
        let calm = &cc.phases[0];
        assert_eq!(calm.wasted, Tokens::default());
        assert_eq!(calm.tokens_price.unwrap().wasted, 0.0);
        let storm = &cc.phases[1];
        assert_eq!(storm.billed_exchanges, 3);
        assert_eq!(storm.input_unknown, 1);
        assert!(cc
            .note()
            .unwrap()
            .starts_with("1 billed exchange(s) carried no input token count"));
        assert_eq!(
            storm.billed,
            Tokens {
                input: 300,
                output: 80
            }
        );
        assert_eq!(
            storm.retries,
            Tokens {
                input: 200,
                output: 60
            }
        );
        assert_eq!(
            storm.failed,
            Tokens {
                input: 200,
                output: 30
            }
        );
        assert_eq!(
            storm.wasted,
            Tokens {
                input: 300,
                output: 80
            }
        );
        let p = storm.tokens_price.unwrap();
        assert!((p.wasted - (300.0 * 1.0 + 80.0 * 10.0) / 1e6).abs() < 1e-12);
        // 10 s at $3.60/h is $0.01; all its output tokens were wasted.
        let g = storm.gpu_price.unwrap();
        assert!((g.billed - 0.01).abs() < 1e-12);
        assert!((g.wasted - 0.01).abs() < 1e-12);
        assert!((g.failed - 0.01 * 30.0 / 80.0).abs() < 1e-12);
        assert_eq!(
            cc.total.billed,
            Tokens {
                input: 400,
                output: 130
            }
        );
        assert_eq!(cc.total.duration_s, Some(20.0));
        let (head, rows) = cc.rows();
        assert_eq!(head.len(), 9);
        assert_eq!(rows[1][4], "300/80");
        assert_eq!(rows[1][6], "100.0%");
        assert_eq!(rows[0][6], "0.0%");
        // Without a price, the figures are absent, never 0.
        let none = chaos_cost(&ex, &phases, &CostSpec::default());
        assert_eq!(none.phases[1].tokens_price, None);
        assert_eq!(none.phases[1].gpu_price, None);
    }

    #[test]
    fn only_what_the_upstream_answered_2xx_is_billed() {
        use brownout_faults::record::{Outcome, UpstreamTiming};
        let rec = |upstream: Option<u16>, outcome: Outcome| {
            let mut r = Record::new(1, "llm".into());
            r.input_tokens = Some(10);
            r.output_tokens = Some(4);
            r.outcome = outcome;
            r.upstream = upstream.map(|s| UpstreamTiming {
                status: Some(s),
                ttfb_ms: Some(1.0),
                e2e_ms: Some(2.0),
                retried: false,
            });
            r
        };
        let recs = [
            // An injected 429: the upstream was never called.
            rec(None, Outcome::InjectedError),
            // The upstream's own 500: providers do not bill it.
            rec(Some(500), Outcome::UpstreamError),
            // A 2xx stream cut off by a fault: billed for what it produced.
            rec(Some(200), Outcome::InjectedError),
            rec(Some(200), Outcome::Ok),
        ];
        assert_eq!(billed_tokens(&recs[0]), None);
        assert_eq!(billed_tokens(&recs[1]), None);
        let (n, t) = billed_sum(&recs);
        assert_eq!(
            (n, t),
            (
                2,
                Tokens {
                    input: 20,
                    output: 8
                }
            )
        );
        let e = exchange_of(&recs[2], false);
        assert!(e.failed && !e.input_unknown && e.billed.is_some());
    }

    #[test]
    fn scenarios_carry_cost_and_energy_and_report_their_errors_with_the_rest() {
        let base = "version: 1\nname: t\ntarget: {upstream: sim}\nprofile: p.yaml\nworkload: {name: chat, arrival: {rate: 5/s}}\n";
        let ok =
            format!("{base}cost: {{gpu_hour: 2.5, replicas: 2}}\nenergy: {{gpu: a100-40gb}}\n");
        let s = crate::scenario::load_scenario(&ok, "s.yaml").unwrap();
        assert_eq!(s.cost.unwrap().per_hour(), Some(5.0));
        assert_eq!(s.energy.unwrap().model().unwrap().max_w, 400.0);
        let bad = format!("{base}cost: {{gpu_hour: -1, tokns: {{}}}}\nenergy: {{gpu: b200}}\n");
        let e = crate::scenario::load_scenario(&bad, "s.yaml").unwrap_err();
        let msgs: Vec<String> = e
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("6:22 unknown field `tokns`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("6:18 `gpu_hour` must be 0 or more")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("7:15 unknown GPU power preset `b200`")),
            "{msgs:?}"
        );
    }

    fn diags(src: &str) -> Vec<String> {
        #[derive(Deserialize)]
        struct Doc {
            cost: Option<CostSpec>,
            energy: Option<EnergySpec>,
        }
        let tree = brownout_faults::yaml::parse_tree_lenient(src, "s.yaml")
            .unwrap()
            .0;
        let doc: Doc = brownout_faults::yaml::recover::<Doc>(&tree, "s.yaml", None)
            .value
            .unwrap();
        check(doc.cost.as_ref(), doc.energy.as_ref(), &tree, "s.yaml")
            .into_iter()
            .map(|d| {
                format!(
                    "{}:{} {} ({})",
                    d.line,
                    d.column,
                    d.message,
                    d.hint.unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn bad_blocks_are_told_where_and_why() {
        let d = diags("cost: {gpu_hour: -2.5}\nenergy: {gpu: h100}\n");
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].starts_with("1:18 `gpu_hour` must be 0 or more, not -2.5"),
            "{d:?}"
        );
        assert!(
            d[1].starts_with("2:15 unknown GPU power preset `h100`"),
            "{d:?}"
        );
        assert!(
            d[1].contains("h100-80gb, 2xh100-80gb, a100-40gb, h100-pcie-80gb"),
            "{d:?}"
        );
        let d = diags("cost: {tokens: {input_per_mtok: 0.1, output_per_mtok: -1}}\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].contains("`output_per_mtok` must be 0 or more"),
            "{d:?}"
        );
        let d = diags("cost: {replicas: 0}\nenergy: {idle_w: 900, max_w: 700}\n");
        assert!(d.iter().any(|m| m.contains("gives no price")), "{d:?}");
        assert!(
            d.iter()
                .any(|m| m.contains("`replicas` must be at least 1")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|m| m.contains("idle power (900 W) is above")),
            "{d:?}"
        );
        let d = diags("energy: {max_w: 700, prometheus: dcgm:9400}\n");
        assert!(
            d.iter()
                .any(|m| m.contains("needs both `idle_w` and `max_w`")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|m| m.contains("must be an http:// URL")),
            "{d:?}"
        );
        assert!(diags("cost: {gpu_hour: 2.5, replicas: 2, gpus_per_replica: 8, tokens: {input_per_mtok: 0, output_per_mtok: 0.6}}\nenergy: {gpu: h100-pcie-80gb, prometheus: \"http://dcgm:9400/metrics\"}\n").is_empty());
    }
}
