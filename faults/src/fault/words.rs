//! The words faults explain themselves in (`Fault::explain`), shared with
//! `brownout explain`'s sentences about rules ([`crate::explain`], which uses
//! them from here: the faults sit below the profile and its explanation).

/// A share as a percentage: `0.25` is "25%", `0.125` "12.5%".
pub(crate) fn percent(p: f64) -> String {
    let v = format!("{:.2}", p * 100.0);
    format!("{}%", v.trim_end_matches('0').trim_end_matches('.'))
}

/// A byte count in the largest whole unit: "2 MiB", "64 KiB", "1000 bytes".
pub(crate) fn bytes(n: u64) -> String {
    const K: u64 = 1024;
    if n >= K * K && n.trailing_zeros() >= 20 {
        format!("{} MiB", n / (K * K))
    } else if n >= K && n.trailing_zeros() >= 10 {
        format!("{} KiB", n / K)
    } else {
        format!("{n} bytes")
    }
}

/// A number with at most two decimals and no trailing zeros: "1.5", "30".
pub(crate) fn trim_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// An error preset by name, with its status when brownout knows it.
pub(crate) fn preset_words(name: &str) -> String {
    match crate::presets::lookup(name) {
        Some(p) => format!("preset {name} ({})", p.status),
        None => format!("preset {name}"),
    }
}

/// "3 tokens", "1 token", "0 tokens (before the first)".
pub(crate) fn tokens(n: u64) -> String {
    match n {
        0 => "0 tokens (before the first)".to_string(),
        1 => "1 token".to_string(),
        n => format!("{n} tokens"),
    }
}
