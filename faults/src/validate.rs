//! Parse, then check what serde cannot: ramps only inside phases, probabilities in
//! range, unique names, globs that compile, known presets.
//!
//! A profile that fails here is never applied (and on hot reload the previous one stays
//! in force), so these checks are the last line between a typo and a drill that
//! silently tests nothing. They collect *every* problem, each with the position of the
//! value at fault, so one `brownout validate` run is enough to fix a file.

use std::collections::HashMap;
use std::path::Path;

use crate::check::{join, Cx};
use crate::fault::stale_results::STALE_DEPTH_RANGE;
use crate::profile::{
    ClientsMatch, FaultSpec, Match, Probability, Profile, Rule, Schedule, SchedulePer,
};
use crate::yaml::{parse_tree_lenient, recover, Diagnostic, FieldRange, Node, PathSeg, Step};

/// The most attempts of one call a `schedule: {per: call}` counts to.
pub const MAX_CALL_ATTEMPTS: u64 = 1000;

/// Load and fully validate a profile from text (YAML or JSON).
///
/// On success, rules without a `name` have their default names filled in (see
/// [`default_rule_names`]). On failure, every problem found is returned, sorted by
/// position.
pub fn load_profile(src: &str, file: &str) -> Result<Profile, Vec<Diagnostic>> {
    let c = check_profile(src, file);
    match c.profile {
        Some(p) => Ok(p),
        None => Err(c.diagnostics),
    }
}

/// What [`check_profile`] found.
#[derive(Debug, Clone)]
pub struct ProfileCheck {
    /// The profile, with default rule names; only when nothing is wrong with it.
    pub profile: Option<Profile>,
    /// Every problem, sorted by position: duplicate keys, type errors, then what
    /// the checks below find in the rest.
    pub diagnostics: Vec<Diagnostic>,
    /// The phase names as written, even in a profile with mistakes, so that a
    /// drill scenario's references to them can be checked in the same run; `None`
    /// when the file is not YAML at all.
    pub phase_names: Option<Vec<String>>,
}

/// Check a profile from text (YAML or JSON), finding every problem at once: a
/// value of the wrong type is reported and worked around so that the rest of the
/// file is still read and checked.
pub fn check_profile(src: &str, file: &str) -> ProfileCheck {
    let (tree, mut diags) = match parse_tree_lenient(src, file) {
        Ok(t) => t,
        Err(d) => {
            return ProfileCheck {
                profile: None,
                diagnostics: vec![d],
                phase_names: None,
            }
        }
    };
    let phase_names = match tree.get("phases").map(|n| &n.kind) {
        Some(crate::yaml::NodeKind::Seq(items)) => items
            .iter()
            .filter_map(|p| p.get("name").and_then(Node::as_str).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let read = recover::<Profile>(&tree, file, Some(&profile_range));
    diags.extend(read.diagnostics());
    if let Some(p) = &read.value {
        diags.extend(
            validate_profile(p, &read.tree, file)
                .into_iter()
                .filter(|d| !read.follows_from_repair(d)),
        );
    }
    diags.sort_by_key(|d| (d.line, d.column));
    let profile = match read.value {
        Some(mut p) if diags.is_empty() => {
            default_rule_names(&mut p);
            Some(p)
        }
        _ => None,
    };
    ProfileCheck {
        profile,
        diagnostics: diags,
        phase_names: Some(phase_names),
    }
}

/// The allowed range of a profile's number fields, in the words of the checks
/// below, so that `max_active: -3` and `max_active: 0` are refused alike.
fn profile_range(path: &[Step], tree: &Node) -> Option<FieldRange> {
    const AT_LEAST_1: FieldRange = FieldRange::at_least("at least 1");
    const ABOVE_ZERO: FieldRange = FieldRange::at_least("above zero");
    const SHARE: FieldRange = FieldRange::between("above 0 and at most 1");
    let (last, parent) = path.split_last()?;
    let key = last.key()?;
    let parent_key = parent.last().and_then(Step::key);
    // The fault the field belongs to: its mapping's `type`, or the only key of
    // `{bandwidth: {...}}`.
    let fault = tree
        .at_steps(parent)
        .and_then(|n| n.get("type"))
        .and_then(Node::as_str)
        .or(parent_key);
    Some(match (fault, key) {
        (Some("schedule"), "first") => AT_LEAST_1.named("schedule.first"),
        (Some("schedule"), "every") => AT_LEAST_1.named("schedule.every"),
        (Some("clients"), "percent") => FieldRange::between("between 0 and 100"),
        (_, "max_active") => AT_LEAST_1.hint(MAX_ACTIVE_HINT),
        (Some("bandwidth"), "bytes_per_second")
        | (Some("concurrency_limit"), "max")
        | (Some("rate_limit"), "requests_per_minute" | "tokens_per_minute")
        | (Some("gpu_saturation"), "slots" | "max_batched_tokens" | "kv_cache_tokens")
        | (Some("embedding_truncate"), "dims") => AT_LEAST_1,
        (Some("gpu_saturation"), "slowdown") => FieldRange::at_least("1 or more"),
        (Some("gpu_saturation"), "prefill_ms_per_token") => FieldRange::at_least("0 or more"),
        (Some("stale_results"), "depth") => FieldRange::between(STALE_DEPTH_RANGE),
        (Some("token_rate"), "tokens_per_second")
        | (Some("score_noise" | "embedding_noise"), "stddev") => ABOVE_ZERO,
        (Some("corrupt"), "rate") | (Some("garble" | "drop_results"), "fraction") => SHARE,
        (Some("fit"), "a_ms") => ABOVE_ZERO,
        (Some("fit"), "b_ms" | "c_ms") => FieldRange::at_least("0 or more"),
        (Some("roofline"), "bandwidth_efficiency" | "flops_efficiency") => SHARE,
        (Some("roofline"), _) => ABOVE_ZERO,
        _ => return None,
    })
}

const MAX_ACTIVE_HINT: &str =
    "it caps how many requests this rule harms at once; remove it for no cap";

/// Load and fully validate a profile file.
pub fn load_profile_file(path: &Path) -> Result<Profile, Vec<Diagnostic>> {
    let (src, file) = crate::yaml::read_file(path, "profile").map_err(|d| vec![d])?;
    load_profile(&src, &file)
}

/// Fill in missing rule names: `rule-N` at top level, `<phase>-N` inside a phase
/// (1-based, counting every rule in that list).
///
/// Names key rule state across hot reloads and label metrics, so every rule needs one
/// even when the author did not bother.
pub fn default_rule_names(profile: &mut Profile) {
    for (i, rule) in profile.rules.iter_mut().enumerate() {
        if rule.name.is_none() {
            rule.name = Some(format!("rule-{}", i + 1));
        }
    }
    for phase in &mut profile.phases {
        for (i, rule) in phase.rules.iter_mut().enumerate() {
            if rule.name.is_none() {
                rule.name = Some(format!("{}-{}", phase.name, i + 1));
            }
        }
    }
}

/// The name a rule has after [`default_rule_names`].
fn effective_name(rule: &Rule, index: usize, phase: Option<&str>) -> String {
    match (&rule.name, phase) {
        (Some(n), _) => n.clone(),
        (None, None) => format!("rule-{}", index + 1),
        (None, Some(p)) => format!("{p}-{}", index + 1),
    }
}

/// Every semantic problem in an already deserialized profile, positioned using the
/// tree it was read from.
pub fn validate_profile(profile: &Profile, tree: &Node, file: &str) -> Vec<Diagnostic> {
    let mut cx = Cx {
        tree,
        file,
        diags: Vec::new(),
    };
    cx.profile(profile);
    cx.diags.sort_by_key(|d| (d.line, d.column));
    cx.diags
}

use PathSeg::{Index as I, Key as K};

impl Cx<'_> {
    fn profile(&mut self, p: &Profile) {
        if p.version != 1 {
            self.err(
                &[K("version")],
                format!("unsupported profile version {}", p.version),
                Some("only version 1 exists; write `version: 1`".to_string()),
            );
        }
        if p.name.trim().is_empty() {
            self.err(
                &[K("name")],
                "the profile name is empty",
                Some("name it after the scenario, e.g. `name: openai-429-storm`".to_string()),
            );
        }
        if let Some(start) = &p.start_at {
            if let Err(e) =
                time::OffsetDateTime::parse(start, &time::format_description::well_known::Rfc3339)
            {
                self.err(
                    &[K("start_at")],
                    format!("`start_at` is not an RFC 3339 time: {e}"),
                    Some("write a full UTC or offset time, e.g. 2026-12-01T10:00:00Z".to_string()),
                );
            }
        }
        if let Some(exp) = p.expires_after {
            if exp.0.is_zero() {
                self.err(
                    &[K("expires_after")],
                    "`expires_after` must be longer than zero",
                    Some(
                        "give the dead-man switch time to run, e.g. `expires_after: 30m`"
                            .to_string(),
                    ),
                );
            }
        }

        // Rule names, effective ones included, must be unique across the profile:
        // they key state across reloads and label metrics.
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, rule) in p.rules.iter().enumerate() {
            let base = [K("rules"), I(i)];
            self.rule(rule, &base, false);
            self.unique_rule(&mut names, rule, effective_name(rule, i, None), &base);
        }
        let mut phases: HashMap<&str, usize> = HashMap::new();
        for (pi, phase) in p.phases.iter().enumerate() {
            let base = [K("phases"), I(pi)];
            let name_path = join(&base, &[K("name")]);
            if phase.name.trim().is_empty() {
                self.err(
                    &name_path,
                    "the phase name is empty",
                    Some(
                        "name phases for what happens in them, e.g. `baseline`, `storm`"
                            .to_string(),
                    ),
                );
            } else if let Some(first) = phases.get(phase.name.as_str()) {
                let first = *first;
                self.err(
                    &name_path,
                    format!("phase name `{}` is used twice", phase.name),
                    Some(format!(
                        "it is already used at line {first}; phase names must be unique"
                    )),
                );
            } else {
                let line = self.line_of(&name_path);
                phases.insert(&phase.name, line);
            }
            if phase.duration.0.is_zero() {
                self.err(
                    &join(&base, &[K("duration")]),
                    "a phase must last longer than zero",
                    Some("e.g. `duration: 30s`".to_string()),
                );
            }
            for (ri, rule) in phase.rules.iter().enumerate() {
                let rbase = join(&base, &[K("rules"), I(ri)]);
                self.rule(rule, &rbase, true);
                self.unique_rule(
                    &mut names,
                    rule,
                    effective_name(rule, ri, Some(&phase.name)),
                    &rbase,
                );
            }
        }
    }

    fn unique_rule(
        &mut self,
        names: &mut HashMap<String, usize>,
        rule: &Rule,
        name: String,
        base: &[PathSeg<'_>],
    ) {
        let explicit = rule.name.is_some();
        let path = if explicit {
            join(base, &[K("name")])
        } else {
            base.to_vec()
        };
        if let Some(first) = names.get(&name) {
            let first = *first;
            let hint = format!(
                "rule names must be unique across the profile (they label metrics and keep state across reloads); `{name}` is already used at line {first}"
            );
            if explicit {
                self.err(
                    &path,
                    format!("rule name `{name}` is used twice"),
                    Some(hint),
                );
            } else {
                self.err(
                    &path,
                    format!("this rule's default name `{name}` is already taken"),
                    Some(format!("give this rule its own `name:`; {hint}")),
                );
            }
        } else {
            let line = self.line_of(&path);
            names.insert(name, line);
        }
    }

    fn rule(&mut self, rule: &Rule, base: &[PathSeg<'_>], in_phase: bool) {
        if let Some(name) = &rule.name {
            if name.trim().is_empty() {
                self.err(
                    &join(base, &[K("name")]),
                    "the rule name is empty",
                    Some("e.g. `name: throttle-chat`".to_string()),
                );
            }
        }
        let prob = join(base, &[K("probability")]);
        match rule.probability {
            Probability::Fixed(p) => self.probability(&prob, p),
            Probability::Ramp { from, to } => {
                if in_phase {
                    self.probability(&join(&prob, &[K("from")]), from);
                    self.probability(&join(&prob, &[K("to")]), to);
                } else {
                    self.err(
                        &prob,
                        "a probability ramp `{from, to}` is only allowed inside a phase",
                        Some(format!(
                            "a ramp runs over its phase's duration, and top-level rules have none; use a fixed probability such as `probability: {to}`, or move this rule into a phase"
                        )),
                    );
                }
            }
        }
        if let Some(schedule) = &rule.schedule {
            self.schedule(schedule, base);
        }
        if rule.max_active == Some(0) {
            self.err(
                &join(base, &[K("max_active")]),
                "`max_active` must be at least 1",
                Some(MAX_ACTIVE_HINT.to_string()),
            );
        }
        self.matches(&rule.matches, &join(base, &[K("match")]));
        if rule.faults.is_empty() {
            self.err(
                &join(base, &[K("faults")]),
                "this rule has no faults, so it would do nothing",
                Some(
                    "add at least one, e.g. `faults: [{type: delay, duration: 250ms}]`".to_string(),
                ),
            );
        }
        for (i, fault) in rule.faults.iter().enumerate() {
            self.fault(fault, &join(base, &[K("faults"), I(i)]));
        }
    }

    fn schedule(&mut self, schedule: &Schedule, base: &[PathSeg<'_>]) {
        let path = join(base, &[K("schedule")]);
        let prob = join(base, &[K("probability")]);
        if self.tree.at_path(&prob).is_some() {
            self.err(
                &prob,
                "`probability` and `schedule` cannot both be given",
                Some(
                    "a schedule decides by count which requests the rule fires for, in place of the random draw; remove `probability` (or remove `schedule` to fail a random share)"
                        .to_string(),
                ),
            );
        }
        let per_call = schedule.per == SchedulePer::Call;
        match (schedule.first, schedule.every) {
            (None, None) => self.err(
                &path,
                "a schedule needs `first` or `every`",
                Some(
                    "`{first: 2}` fires for the first 2 matching requests, then never; `{every: 3}` for every 3rd; add `per: call` to count each call's attempts instead"
                        .to_string(),
                ),
            ),
            (Some(_), Some(_)) => self.err(
                &join(&path, &[K("every")]),
                "a schedule takes `first` or `every`, not both",
                Some(
                    "keep `first: N` to fail the first N and then let everything through, or `every: N` to fail every Nth; for both patterns write two rules"
                        .to_string(),
                ),
            ),
            (first, every) => {
                let (key, n) = match (first, every) {
                    (Some(n), _) => ("first", n),
                    (_, Some(n)) => ("every", n),
                    _ => unreachable!("one of them is given"),
                };
                let at = join(&path, &[K(key)]);
                if n == 0 {
                    let hint = if key == "first" {
                        "`first: 0` would never fire; write `first: 1` or more, or remove the rule"
                    } else {
                        "`every: 1` fires for every request, `every: 2` for every other one"
                    };
                    self.err(
                        &at,
                        format!("`schedule.{key}` must be at least 1"),
                        Some(hint.to_string()),
                    );
                } else if per_call && n > MAX_CALL_ATTEMPTS {
                    self.err(
                        &at,
                        format!(
                            "`schedule.{key}` must be at most {MAX_CALL_ATTEMPTS} with `per: call`"
                        ),
                        Some(format!(
                            "a call's attempts are counted up to {MAX_CALL_ATTEMPTS} (openai-python retries twice by default); to count the rule's requests instead write `per: rule`"
                        )),
                    );
                }
            }
        }
    }

    fn probability(&mut self, path: &[PathSeg<'_>], p: f64) {
        if !(0.0..=1.0).contains(&p) {
            let hint = if (1.0..=100.0).contains(&p) {
                format!("probabilities are fractions: for {p}% write {}", p / 100.0)
            } else {
                "write a number from 0 (never) to 1 (always), e.g. 0.25".to_string()
            };
            self.err(
                path,
                format!("probability {p} is not between 0 and 1"),
                Some(hint),
            );
        }
    }

    fn glob(&mut self, path: &[PathSeg<'_>], what: &str, pattern: &str) {
        if let Err(e) = crate::glob::Glob::new(pattern) {
            self.err(
                path,
                format!("invalid {what} glob `{pattern}`: {e}"),
                Some(
                    "globs use `*` (within a path segment), `**` (across segments) and `?`"
                        .to_string(),
                ),
            );
        }
    }

    fn matches(&mut self, m: &Match, base: &[PathSeg<'_>]) {
        if let Some(path) = &m.path {
            self.glob(&join(base, &[K("path")]), "path", path);
        }
        if let Some(model) = &m.model {
            self.glob(&join(base, &[K("model")]), "model", model);
        }
        for (name, value) in &m.headers {
            let p = join(base, &[K("headers"), K(name.as_str())]);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.err(
                    &p,
                    format!("`{name}` is not a valid header name"),
                    Some("header names are letters, digits and `-`, e.g. `x-tenant`".to_string()),
                );
            }
            self.glob(&p, "header", value);
        }
        if let Some(method) = &m.method {
            if method.is_empty() || http::Method::from_bytes(method.as_bytes()).is_err() {
                self.err(
                    &join(base, &[K("method")]),
                    format!("`{method}` is not an HTTP method"),
                    Some("e.g. `method: POST`".to_string()),
                );
            }
        }
        if let Some(range) = &m.prompt_tokens {
            if let (Some(min), Some(max)) = (range.min, range.max) {
                if min > max {
                    self.err(
                        &join(base, &[K("prompt_tokens"), K("max")]),
                        format!("`prompt_tokens.max` ({max}) is below `min` ({min})"),
                        Some("swap them, or drop one bound".to_string()),
                    );
                }
            }
        }
        if let Some(clients) = &m.clients {
            self.clients(clients, &join(base, &[K("clients")]));
        }
    }

    fn clients(&mut self, c: &ClientsMatch, base: &[PathSeg<'_>]) {
        if !(0.0..=100.0).contains(&c.percent) {
            self.err(
                &join(base, &[K("percent")]),
                format!("`percent` {} is not between 0 and 100", c.percent),
                Some("it is the share of clients picked, e.g. `percent: 20`".to_string()),
            );
        }
        if let Some(by) = &c.by {
            let ok = match by.strip_prefix("header:") {
                Some(name) => {
                    !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                }
                None => by == "client_ip",
            };
            if !ok {
                self.err(
                    &join(base, &[K("by")]),
                    format!("`by: {by}` is not a way to tell clients apart"),
                    Some(
                        "use `client_ip` or `header:NAME`, e.g. `by: header:authorization`"
                            .to_string(),
                    ),
                );
            }
        }
    }

    fn fault(&mut self, f: &FaultSpec, base: &[PathSeg<'_>]) {
        f.as_fault().validate(self, base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stall_of(fault: &str) -> Result<FaultSpec, Vec<Diagnostic>> {
        let src = format!(
            "version: 1\nname: t\nrules:\n  - match: {{endpoint: chat}}\n    faults: [{fault}]\n"
        );
        load_profile(&src, "t.yaml").map(|p| p.rules[0].faults[0].clone())
    }

    #[test]
    fn stall_duration_forever_is_forever_true() {
        let alias = stall_of("{type: stall, after_tokens: 3, duration: forever}").unwrap();
        let flag = stall_of("{type: stall, after_tokens: 3, forever: true}").unwrap();
        assert_eq!(alias, flag);
        assert_eq!(
            alias,
            FaultSpec::Stall(crate::fault::Stall {
                after_tokens: 3,
                duration: None,
                forever: true
            })
        );
        // Saying it twice is not a contradiction.
        let both =
            stall_of("{type: stall, after_tokens: 3, duration: forever, forever: true}").unwrap();
        assert_eq!(both, flag);
        // A length still resumes.
        assert_eq!(
            stall_of("{type: stall, after_tokens: 3, duration: 10s}").unwrap(),
            FaultSpec::Stall(crate::fault::Stall {
                after_tokens: 3,
                duration: Some(crate::dist::Dist::Fixed(std::time::Duration::from_secs(10))),
                forever: false
            })
        );
        // Distributions go through unchanged.
        let d = stall_of("{type: stall, after_tokens: 1, duration: {uniform: [1s, 2s]}}").unwrap();
        assert!(matches!(
            d,
            FaultSpec::Stall(crate::fault::Stall {
                duration: Some(crate::dist::Dist::Uniform(..)),
                forever: false,
                ..
            })
        ));
    }

    #[test]
    fn a_bad_stall_duration_points_at_forever() {
        for (fault, message) in [
            (
                "{type: stall, after_tokens: 3, duration: never}",
                "`never` is not a duration",
            ),
            (
                "{type: stall, after_tokens: 3, duration: 10}",
                "`10` has no unit",
            ),
            (
                "{type: stall, after_tokens: 3, duration: true}",
                "not `true`",
            ),
        ] {
            let d = stall_of(fault).unwrap_err();
            assert_eq!(d.len(), 1, "{fault}: {d:?}");
            assert!(d[0].message.contains(message), "{fault}: {}", d[0].message);
            let hint = d[0].hint.as_deref().unwrap_or("");
            assert!(hint.contains("forever"), "{fault}: {hint}");
            // At the value, where the mistake is.
            assert_eq!(d[0].line, 5, "{fault}: {d:?}");
        }
        let d = stall_of("{type: stall, after_tokens: 3, duration: forever, forever: false}")
            .unwrap_err();
        assert!(d[0].message.contains("contradict"), "{d:?}");
        let d = stall_of("{type: stall, after_tokens: 3}").unwrap_err();
        assert!(
            d[0].hint
                .as_deref()
                .unwrap_or("")
                .contains("duration: forever"),
            "{d:?}"
        );
        // Unknown keys are still refused, with the field list.
        let d = stall_of("{type: stall, after_tokens: 3, durration: 1s}").unwrap_err();
        assert!(d[0].message.contains("durration"), "{d:?}");
    }

    #[test]
    fn default_names() {
        let src = "version: 1\nname: t\nrules:\n  - faults: [{type: reset}]\n  - name: x\n    faults: [{type: reset}]\nphases:\n  - name: storm\n    duration: 1s\n    rules:\n      - faults: [{type: reset}]\n";
        let p = load_profile(src, "t.yaml").unwrap();
        assert_eq!(p.rules[0].name.as_deref(), Some("rule-1"));
        assert_eq!(p.rules[1].name.as_deref(), Some("x"));
        assert_eq!(p.phases[0].rules[0].name.as_deref(), Some("storm-1"));
    }

    #[test]
    fn collects_every_error() {
        let src = "\
version: 2
name: t
start_at: yesterday
rules:
  - name: a
    probability: 1.5
    max_active: 0
    faults: []
  - name: a
    faults:
      - type: error
      - type: bandwidth
        bytes_per_second: 0
      - type: delay
        duration: {uniform: [2s, 1s]}
phases:
  - name: p
    duration: 0s
    rules:
      - probability: {from: 0.1, to: 2}
        match: {clients: {percent: 120, by: cookie}}
        faults:
          - type: delay
            duration: {lognormal: {median: 2s, p99: 1s}}
          - type: concurrency_limit
            max: 0
  - name: p
    duration: 1s
";
        let errs = load_profile(src, "t.yaml").unwrap_err();
        let got: Vec<String> = errs
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        let want = [
            "1:10 unsupported profile version 2",
            "3:11 `start_at` is not an RFC 3339 time",
            "6:18 probability 1.5 is not between 0 and 1",
            "7:17 `max_active` must be at least 1",
            "8:13 this rule has no faults",
            "9:11 rule name `a` is used twice",
            "11:9 an `error` fault needs a `status`, a `preset` or a `grpc_status`",
            "13:27 `bytes_per_second` must be at least 1",
            "15:29 uniform bounds are reversed",
            "18:15 a phase must last longer than zero",
            "20:38 probability 2 is not between 0 and 1",
            "21:36 `percent` 120 is not between 0 and 100",
            "21:45 `by: cookie`",
            "24:53 the p99 (1s) is below the median (2s)",
            "26:18 `max` must be at least 1",
            "27:11 phase name `p` is used twice",
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for (g, w) in got.iter().zip(want) {
            assert!(g.starts_with(w), "got `{g}`, want `{w}…`");
        }
        assert!(errs.iter().all(|d| d.hint.is_some()), "{errs:#?}");
    }

    /// Type errors (negative, text, a misspelt key or fault type) and range errors
    /// come in one run, and a range is stated alike whichever way it is broken.
    #[test]
    fn type_and_range_errors_come_together_in_the_same_words() {
        let src = "\
version: 1
name: t
rules:
  - name: a
    max_active: -3
    faults: [{type: reset}]
  - name: b
    max_active: 0
    faults: [{type: reset}]
  - name: c
    max_active: lots
    probability: 2
    faults:
      - type: bandwidth
        bytes_per_second: -1
      - type: delay
        duration: 250
      - type: dealy
        duration: 1s
  - name: d
    matc: {path: /v1/*}
    schedule: {every: -2}
    faults:
      - {type: concurrency_limit, max: 0}
      - {type: stale_results, depth: 99}
      - {type: stale_results, depth: -1}
      - {type: embedding_truncate, dims: 5000000000000000000000}
    name: again
";
        let errs = load_profile(src, "t.yaml").unwrap_err();
        let got: Vec<String> = errs
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(
            got,
            [
                "5:17 `max_active` must be at least 1, not -3",
                "8:17 `max_active` must be at least 1",
                "11:17 expected a whole number, found the text \"lots\"",
                "12:18 probability 2 is not between 0 and 1",
                "15:27 `bytes_per_second` must be at least 1, not -1",
                "17:19 `250` has no unit",
                "18:15 unknown fault type `dealy`",
                "21:5 unknown field `matc`",
                "22:23 `schedule.every` must be at least 1, not -2",
                "24:40 `max` must be at least 1",
                "25:38 `depth` must be between 1 and 16, not 99",
                "26:38 `depth` must be between 1 and 16, not -1",
                "27:42 expected a whole number, found the number 5000000000000000000000",
                "28:5 duplicate key `name`",
            ],
            "{errs:#?}"
        );
        assert!(errs.iter().all(|d| d.hint.is_some()), "{errs:#?}");
        // Text where a number goes is told the range in its hint.
        assert!(
            errs[2]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("`max_active` must be at least 1")),
            "{:?}",
            errs[2].hint
        );
        assert_eq!(errs[0].hint, errs[1].hint);
    }

    #[test]
    fn schedules_load_and_their_mistakes_are_positioned() {
        let ok = "version: 1\nname: t\nrules:\n  - name: a\n    schedule: {first: 2, per: call}\n    faults: [{type: reset}]\n  - name: b\n    schedule: {every: 3}\n    faults: [{type: reset}]\n";
        let p = load_profile(ok, "t.yaml").unwrap();
        assert_eq!(
            p.rules[0].schedule,
            Some(Schedule {
                first: Some(2),
                every: None,
                per: SchedulePer::Call
            })
        );
        assert_eq!(
            p.rules[1].schedule,
            Some(Schedule {
                first: None,
                every: Some(3),
                per: SchedulePer::Rule
            })
        );

        let src = "\
version: 1
name: t
rules:
  - name: both
    probability: 0.5
    schedule: {first: 2}
    faults: [{type: reset}]
  - name: neither
    schedule: {per: call}
    faults: [{type: reset}]
  - name: two
    schedule: {first: 2, every: 3}
    faults: [{type: reset}]
  - name: zero
    schedule: {every: 0}
    faults: [{type: reset}]
  - name: many
    schedule: {first: 5000, per: call}
    faults: [{type: reset}]
";
        let errs = load_profile(src, "t.yaml").unwrap_err();
        let got: Vec<String> = errs
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(
            got,
            [
                "5:18 `probability` and `schedule` cannot both be given",
                "9:15 a schedule needs `first` or `every`",
                "12:33 a schedule takes `first` or `every`, not both",
                "15:23 `schedule.every` must be at least 1",
                "18:23 `schedule.first` must be at most 1000 with `per: call`",
            ],
            "{errs:#?}"
        );
        assert!(errs.iter().all(|d| d.hint.is_some()), "{errs:#?}");
        let unknown = load_profile(
            "version: 1\nname: t\nrules:\n  - schedule: {frist: 2}\n    faults: [{type: reset}]\n",
            "t.yaml",
        )
        .unwrap_err();
        assert!(
            unknown[0].message.contains("frist"),
            "unknown fields are errors: {unknown:#?}"
        );
    }
}
