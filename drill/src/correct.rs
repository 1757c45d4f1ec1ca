//! Correctness scoring: `expect` checks from prompt files, answer match against
//! the baseline phase, cosine similarity of embeddings against the baseline's, and
//! recall@k and rank overlap of vector searches against the expected ids or the
//! baseline's results.
//!
//! Every score covers successful answers only; failed requests already count in
//! the error rate.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// What a prompt-file line's `expect` asks of the answer. Every given check must
/// hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The whole answer, after trimming surrounding whitespace.
    #[serde(default)]
    pub exact: Option<String>,
    /// Text (or every text of a list) the answer contains.
    #[serde(default)]
    pub contains: Option<OneOrMany>,
    /// The answer parses as JSON.
    #[serde(default)]
    pub json_valid: Option<bool>,
    /// A regular expression the answer matches somewhere (`^...$` for all of it).
    #[serde(default)]
    pub regex: Option<Pattern>,
    /// Ids (document ids, citations) that must all appear in the answer; for a
    /// search, the ids the results should hold, best first (the truth recall@k is
    /// measured against).
    #[serde(default)]
    pub ids: Option<Vec<String>>,
}

/// A compiled regular expression, compared by its source text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex_lite::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex_lite::Regex::new(&s)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex `{s}`: {e}")))
    }
}

/// One string or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Expect {
    /// Read a prompt-file line's `expect`, if it has one.
    pub fn from_line(line: &serde_json::Value) -> Result<Option<Self>, String> {
        match line.get("expect") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                format!(
                    "invalid `expect`: {e} (known checks: exact, contains, regex, json_valid, ids)"
                )
            }),
        }
    }

    /// Whether `answer` passes every check.
    pub fn check(&self, answer: &str) -> bool {
        if let Some(e) = &self.exact {
            if answer.trim() != e.trim() {
                return false;
            }
        }
        match &self.contains {
            Some(OneOrMany::One(s)) if !answer.contains(s.as_str()) => return false,
            Some(OneOrMany::Many(v)) if !v.iter().all(|s| answer.contains(s.as_str())) => {
                return false
            }
            _ => {}
        }
        if let Some(re) = &self.regex {
            if !re.0.is_match(answer) {
                return false;
            }
        }
        if self.json_valid == Some(true)
            && serde_json::from_str::<serde::de::IgnoredAny>(answer).is_err()
        {
            return false;
        }
        if let Some(ids) = &self.ids {
            if !ids.iter().all(|id| answer.contains(id.as_str())) {
                return false;
            }
        }
        true
    }

    /// Whether a search's result ids hold every expected id.
    pub fn check_ids(&self, ids: &[String]) -> bool {
        self.ids
            .as_ref()
            .is_none_or(|want| want.iter().all(|w| ids.contains(w)))
    }
}

/// recall@k: the share of the reference ids (the truth, or the baseline's top k)
/// that the results hold; `None` for an empty reference.
pub fn recall(results: &[String], reference: &[String]) -> Option<f64> {
    if reference.is_empty() {
        return None;
    }
    let k = reference.len();
    let found = reference
        .iter()
        .filter(|r| results.iter().take(k).any(|x| x == *r))
        .count();
    Some(found as f64 / k as f64)
}

/// Rank overlap (average overlap): the mean over depths d = 1..k of the share of
/// the reference's top d found in the results' top d. Unlike recall it falls
/// when the right ids come back in the wrong order; 1 means the same ranking.
pub fn rank_overlap(results: &[String], reference: &[String]) -> Option<f64> {
    let k = reference.len();
    if k == 0 {
        return None;
    }
    let mut sum = 0.0;
    for d in 1..=k {
        let top = &results[..d.min(results.len())];
        let shared = reference[..d].iter().filter(|r| top.contains(r)).count();
        sum += shared as f64 / d as f64;
    }
    Some(sum / k as f64)
}

/// Cosine similarity of two vectors; `None` for different lengths or a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    (na > 0.0 && nb > 0.0).then(|| dot / (na.sqrt() * nb.sqrt()))
}

/// One phase's correctness numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Correctness {
    /// Successful answers to prompts with an `expect`.
    pub expect_checked: u64,
    /// Those that passed every check.
    pub expect_passed: u64,
    /// `expect_passed / expect_checked`; `None` when nothing was checked.
    pub expect_pass_rate: Option<f64>,
    /// Successful answers to prompts the baseline phase also answered.
    pub answer_compared: u64,
    /// Share of those identical to the baseline's answer to the same prompt.
    pub answer_match: Option<f64>,
    /// Embeddings compared with the baseline's for the same input.
    pub embeddings_compared: u64,
    /// Mean cosine similarity to the baseline's embedding of the same input.
    pub cosine_similarity: Option<f64>,
    /// Searches scored (against `expect.ids`, or the baseline's results for the
    /// same query).
    #[serde(default)]
    pub searches_compared: u64,
    /// Mean recall@k of those searches.
    #[serde(default)]
    pub recall_at_k: Option<f64>,
    /// Mean rank overlap of those searches.
    #[serde(default)]
    pub rank_overlap: Option<f64>,
}

/// What one successful request answered, for scoring.
#[derive(Debug, Default)]
pub struct Answer<'a> {
    /// The answer's text.
    pub text: Option<&'a str>,
    /// The (first) embedding.
    pub embedding: Option<Vec<f32>>,
    /// A search's result ids, best first.
    pub ids: Option<Vec<String>>,
}

#[derive(Default, Clone)]
struct Acc {
    checked: u64,
    passed: u64,
    compared: u64,
    same: u64,
    cos_n: u64,
    cos_sum: f64,
    search_n: u64,
    recall_sum: f64,
    overlap_sum: f64,
}

impl Acc {
    fn add_search(&mut self, results: &[String], reference: &[String]) {
        if let (Some(r), Some(o)) = (recall(results, reference), rank_overlap(results, reference)) {
            self.search_n += 1;
            self.recall_sum += r;
            self.overlap_sum += o;
        }
    }
}

/// Key of a prompt: (workload index, prompt index).
pub type PromptKey = (usize, usize);

/// Scores answers as they complete. The reference for a prompt is the first
/// successful baseline answer to it; answers that complete before the reference
/// exists wait until [`Scorer::finish`].
pub struct Scorer {
    baseline: usize,
    phases: Vec<Acc>,
    answers: HashMap<PromptKey, u64>,
    vectors: HashMap<PromptKey, Vec<f32>>,
    results: HashMap<PromptKey, Vec<String>>,
    pending_answers: Vec<(usize, PromptKey, u64)>,
    pending_vectors: Vec<(usize, PromptKey, Vec<f32>)>,
    pending_results: Vec<(usize, PromptKey, Vec<String>)>,
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl Scorer {
    /// A scorer for `phases` phases comparing with phase `baseline`.
    pub fn new(phases: usize, baseline: usize) -> Self {
        Self {
            baseline,
            phases: vec![Acc::default(); phases],
            answers: HashMap::new(),
            vectors: HashMap::new(),
            results: HashMap::new(),
            pending_answers: Vec::new(),
            pending_vectors: Vec::new(),
            pending_results: Vec::new(),
        }
    }

    /// Score one successful request of `phase` to prompt `key`.
    pub fn record(
        &mut self,
        phase: usize,
        key: PromptKey,
        expect: Option<&Expect>,
        answer: Answer<'_>,
    ) {
        let Some(acc) = self.phases.get_mut(phase) else {
            return;
        };
        let Answer {
            text,
            embedding,
            ids,
        } = answer;
        if let (Some(e), Some(a)) = (expect, text) {
            acc.checked += 1;
            acc.passed += u64::from(e.check(a));
        }
        if let Some(ids) = ids {
            if let Some(e) = expect {
                acc.checked += 1;
                acc.passed += u64::from(e.check_ids(&ids));
            }
            // The truth, when the prompt file gives it; else the baseline's results.
            if let Some(want) = expect.and_then(|e| e.ids.as_ref()) {
                acc.add_search(&ids, want);
            } else {
                if phase == self.baseline {
                    self.results.entry(key).or_insert_with(|| ids.clone());
                }
                match self.results.get(&key) {
                    Some(r) => acc.add_search(&ids, r),
                    None => self.pending_results.push((phase, key, ids)),
                }
            }
        }
        if let Some(a) = text {
            let h = hash(a);
            if phase == self.baseline {
                self.answers.entry(key).or_insert(h);
            }
            match self.answers.get(&key) {
                Some(r) => {
                    acc.compared += 1;
                    acc.same += u64::from(*r == h);
                }
                None => self.pending_answers.push((phase, key, h)),
            }
        }
        if let Some(v) = embedding {
            if phase == self.baseline && !self.vectors.contains_key(&key) {
                self.vectors.insert(key, v.clone());
            }
            match self.vectors.get(&key) {
                Some(r) => {
                    if let Some(c) = cosine(r, &v) {
                        acc.cos_n += 1;
                        acc.cos_sum += c;
                    }
                }
                None => self.pending_vectors.push((phase, key, v)),
            }
        }
    }

    /// Per-phase numbers, in phase order, and the whole drill's.
    pub fn finish(mut self) -> (Vec<Correctness>, Correctness) {
        for (phase, key, h) in std::mem::take(&mut self.pending_answers) {
            if let Some(r) = self.answers.get(&key) {
                let acc = &mut self.phases[phase];
                acc.compared += 1;
                acc.same += u64::from(*r == h);
            }
        }
        for (phase, key, v) in std::mem::take(&mut self.pending_vectors) {
            if let Some(c) = self.vectors.get(&key).and_then(|r| cosine(r, &v)) {
                let acc = &mut self.phases[phase];
                acc.cos_n += 1;
                acc.cos_sum += c;
            }
        }
        for (phase, key, ids) in std::mem::take(&mut self.pending_results) {
            if let Some(r) = self.results.get(&key) {
                self.phases[phase].add_search(&ids, r);
            }
        }
        let mut all = Acc::default();
        for a in &self.phases {
            all.checked += a.checked;
            all.passed += a.passed;
            all.compared += a.compared;
            all.same += a.same;
            all.cos_n += a.cos_n;
            all.cos_sum += a.cos_sum;
            all.search_n += a.search_n;
            all.recall_sum += a.recall_sum;
            all.overlap_sum += a.overlap_sum;
        }
        let out = |a: &Acc| {
            let frac = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
            Correctness {
                expect_checked: a.checked,
                expect_passed: a.passed,
                expect_pass_rate: frac(a.passed, a.checked),
                answer_compared: a.compared,
                answer_match: frac(a.same, a.compared),
                embeddings_compared: a.cos_n,
                cosine_similarity: (a.cos_n > 0).then(|| a.cos_sum / a.cos_n as f64),
                searches_compared: a.search_n,
                recall_at_k: (a.search_n > 0).then(|| a.recall_sum / a.search_n as f64),
                rank_overlap: (a.search_n > 0).then(|| a.overlap_sum / a.search_n as f64),
            }
        };
        (self.phases.iter().map(out).collect(), out(&all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expect_checks() {
        let e = |v| Expect::from_line(&json!({ "expect": v })).unwrap().unwrap();
        assert!(e(json!({"exact": "Paris"})).check(" Paris\n"));
        assert!(!e(json!({"exact": "Paris"})).check("Paris."));
        assert!(e(json!({"contains": "ar"})).check("Paris"));
        assert!(!e(json!({"contains": ["ar", "x"]})).check("Paris"));
        assert!(e(json!({"json_valid": true})).check("{\"a\": 1}"));
        assert!(!e(json!({"json_valid": true})).check("{\"a\": "));
        assert!(e(json!({"ids": ["d1", "d7"]})).check("see [d7] and [d1]"));
        assert!(!e(json!({"ids": ["d1", "d7"]})).check("see [d7]"));
        assert!(e(json!({"regex": "^Par[a-z]+$"})).check("Paris"));
        assert!(!e(json!({"regex": "^Par[a-z]+$"})).check("Paris!"));
        assert!(e(json!({"regex": "\\d{3}"})).check("code 404 here"));
        let bad = Expect::from_line(&json!({"expect": {"regex": "a("}})).unwrap_err();
        assert!(bad.contains("invalid regex `a(`"), "{bad}");
        assert!(Expect::from_line(&json!({"expect": {"fuzzy": "a"}})).is_err());
        assert_eq!(Expect::from_line(&json!({"prompt": "x"})).unwrap(), None);
    }

    #[test]
    fn cosine_values() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).unwrap().abs() < 1e-12);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn scorer_compares_with_the_baseline() {
        let mut s = Scorer::new(2, 0);
        let ex = Expect {
            contains: Some(OneOrMany::One("hi".into())),
            ..Default::default()
        };
        // Phase 1 answers before the baseline has one: scored at the end.
        let a = |text, embedding| Answer {
            text: Some(text),
            embedding,
            ids: None,
        };
        s.record(1, (0, 0), Some(&ex), a("oops", None));
        s.record(0, (0, 0), Some(&ex), a("hi there", Some(vec![1.0, 0.0])));
        s.record(0, (0, 0), Some(&ex), a("hi there", Some(vec![1.0, 0.0])));
        s.record(1, (0, 0), Some(&ex), a("hi there", Some(vec![0.0, 1.0])));
        // A prompt the baseline never answered is not compared.
        s.record(1, (0, 1), None, a("x", None));
        let (p, all) = s.finish();
        assert_eq!(p[0].answer_match, Some(1.0));
        assert_eq!(p[0].expect_pass_rate, Some(1.0));
        assert_eq!(p[0].cosine_similarity, Some(1.0));
        assert_eq!(p[1].answer_compared, 2);
        assert_eq!(p[1].answer_match, Some(0.5));
        assert_eq!(p[1].expect_pass_rate, Some(0.5));
        assert_eq!(p[1].cosine_similarity, Some(0.0));
        assert_eq!(all.expect_checked, 4);
        assert_eq!(all.answer_match, Some(0.75));
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn recall_and_rank_overlap_by_hand() {
        let truth = ids(&["a", "b", "c", "d"]);
        assert_eq!(recall(&truth, &truth), Some(1.0));
        assert_eq!(rank_overlap(&truth, &truth), Some(1.0));
        // Two of four dropped: recall 0.5.
        assert_eq!(recall(&ids(&["a", "c"]), &truth), Some(0.5));
        // Same ids, first two swapped: recall 1, overlap (0 + 1 + 1 + 1) / 4.
        let swapped = ids(&["b", "a", "c", "d"]);
        assert_eq!(recall(&swapped, &truth), Some(1.0));
        assert_eq!(rank_overlap(&swapped, &truth), Some(0.75));
        // Only the first k results count for recall@k.
        assert_eq!(recall(&ids(&["x", "y", "z", "w", "a"]), &truth), Some(0.0));
        assert_eq!(recall(&truth, &[]), None);
    }

    #[test]
    fn searches_score_against_the_truth_or_the_baseline() {
        let mut s = Scorer::new(2, 0);
        let search = |v: &[&str]| Answer {
            ids: Some(ids(v)),
            ..Answer::default()
        };
        // Against the baseline's results for the same query (key (0, 0)); phase 1's
        // answer arrives first and is scored at the end.
        s.record(1, (0, 0), None, search(&["a", "x"]));
        s.record(0, (0, 0), None, search(&["a", "b"]));
        s.record(1, (0, 0), None, search(&["b", "a"]));
        // Against expect.ids: the truth wins over the baseline.
        let truth = Expect {
            ids: Some(ids(&["p", "q"])),
            ..Default::default()
        };
        s.record(0, (0, 1), Some(&truth), search(&["p", "q", "r"]));
        s.record(1, (0, 1), Some(&truth), search(&["r", "s"]));
        let (p, all) = s.finish();
        assert_eq!(p[0].searches_compared, 2);
        assert_eq!(p[0].recall_at_k, Some(1.0));
        assert_eq!(p[0].expect_pass_rate, Some(1.0));
        assert_eq!(p[1].searches_compared, 3);
        // (0.5 + 1 + 0) / 3
        assert!((p[1].recall_at_k.unwrap() - 0.5).abs() < 1e-12);
        // overlaps: [a,x] vs [a,b] = (1 + 0.5)/2; [b,a] vs [a,b] = (0 + 1)/2; 0
        assert!((p[1].rank_overlap.unwrap() - (0.75 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(p[1].expect_pass_rate, Some(0.0));
        assert_eq!(all.searches_compared, 5);
    }
}
