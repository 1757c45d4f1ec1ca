//! The toolkit every check is written with: [`Cx`], which positions each problem
//! in the tree it was read from and collects them, and the checks that many
//! fields share (error presets, distributions, shares, near-miss names).
//!
//! It sits below everything it serves: each fault's own checks
//! ([`crate::fault::Fault::validate`]) and the whole-profile checks in
//! [`crate::validate`] both write into a [`Cx`], so it knows neither faults nor
//! profiles. The profile-level methods of [`Cx`] live in [`crate::validate`].

use crate::dist::Dist;
use crate::duration::format_duration;
use crate::yaml::{closest, Diagnostic, Node, PathSeg};

use PathSeg::Key as K;

/// What the checks write into: the tree for positions, and the diagnostics found.
pub(crate) struct Cx<'a> {
    pub(crate) tree: &'a Node,
    pub(crate) file: &'a str,
    pub(crate) diags: Vec<Diagnostic>,
}

/// `base` followed by `more`: the path of a field under a value already reached.
pub(crate) fn join<'p>(base: &[PathSeg<'p>], more: &[PathSeg<'p>]) -> Vec<PathSeg<'p>> {
    let mut p = base.to_vec();
    p.extend_from_slice(more);
    p
}

impl Cx<'_> {
    /// A problem at `path` (or, when the tree has no value there, at the nearest
    /// value above it).
    pub(crate) fn err(
        &mut self,
        path: &[PathSeg<'_>],
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let node = self.tree.nearest(path);
        self.diags
            .push(Diagnostic::at(self.file, node, message, hint.into()));
    }

    /// The line of the value at `path` (or the nearest above it).
    pub(crate) fn line_of(&self, path: &[PathSeg<'_>]) -> usize {
        self.tree.nearest(path).line
    }

    /// An error preset's name must be one brownout knows; otherwise say which it
    /// probably meant.
    pub(crate) fn preset(&mut self, path: &[PathSeg<'_>], name: &str) {
        if crate::presets::lookup(name).is_some() {
            return;
        }
        let names = crate::presets::names();
        let family = name.split('.').next().unwrap_or("");
        let same: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| n.split('.').next() == Some(family))
            .collect();
        let list = |v: &[&str]| {
            v.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let longer: Vec<&str> = same
            .iter()
            .copied()
            .filter(|n| n.starts_with(name))
            .collect();
        let hint = if !longer.is_empty() {
            format!("did you mean {}?", list(&longer).replace(", ", " or "))
        } else if let Some(c) = closest(name, &same).or_else(|| closest(name, &names)) {
            format!("did you mean `{c}`?")
        } else if !same.is_empty() {
            format!("known {family} presets: {}", list(&same))
        } else if !names.is_empty() {
            format!("known presets: {}", list(&names))
        } else {
            "presets are named `provider.error`, e.g. `openai.rate_limit_requests`".to_string()
        };
        self.err(path, format!("unknown error preset `{name}`"), Some(hint));
    }

    /// A distribution of durations that cannot be drawn from: reversed uniform
    /// bounds, a zero lognormal median, a p99 below the median.
    pub(crate) fn dist(&mut self, d: &Dist, base: &[PathSeg<'_>]) {
        match d {
            Dist::Uniform(lo, hi) if lo > hi => self.err(
                &join(base, &[K("uniform")]),
                format!(
                    "uniform bounds are reversed: {} is above {}",
                    format_duration(*lo),
                    format_duration(*hi)
                ),
                Some(format!(
                    "write the low bound first: [{}, {}]",
                    format_duration(*hi),
                    format_duration(*lo)
                )),
            ),
            Dist::LogNormal { median, p99 } => {
                if median.is_zero() {
                    self.err(
                        &join(base, &[K("lognormal"), K("median")]),
                        "a lognormal median must be longer than zero",
                        Some("e.g. `{lognormal: {median: 200ms, p99: 2s}}`".to_string()),
                    );
                } else if p99 < median {
                    self.err(
                        &join(base, &[K("lognormal"), K("p99")]),
                        format!(
                            "the p99 ({}) is below the median ({})",
                            format_duration(*p99),
                            format_duration(*median)
                        ),
                        Some(
                            "the p99 is the slow tail, so it must be at least the median"
                                .to_string(),
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    /// A share in (0, 1]: zero would make the fault a no-op that still shows as decided.
    pub(crate) fn share(&mut self, path: &[PathSeg<'_>], key: &str, v: f64, what: &str) {
        if !(v > 0.0 && v <= 1.0) {
            let hint = if (1.0..=100.0).contains(&v) {
                format!("`{key}` is a fraction: for {v}% write {}", v / 100.0)
            } else {
                format!("the share of {what}, above 0 and at most 1, e.g. 0.1")
            };
            self.err(
                path,
                format!("`{key}` {v} is not above 0 and at most 1"),
                Some(hint),
            );
        }
    }
}

/// A known name the user probably meant: one that starts with (or contains) what
/// they wrote, `h100` for `h100-80gb`, else the closest by edit distance.
pub(crate) fn suggest<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    names
        .iter()
        .copied()
        .find(|n| !w.is_empty() && (n.starts_with(&w) || n.contains(&w)))
        .or_else(|| closest(word, names))
}
