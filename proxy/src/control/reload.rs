//! Hot reload: watch the profile's directory, not the file.
//!
//! Editors save by writing a temporary file and renaming it over the original, and
//! Kubernetes ConfigMaps swap a `..data` symlink; a watch on the file itself misses
//! both. So the directory is watched, and on any event the file is re-read; if its
//! text changed and it validates, it applies (unchanged rules keep their state). An
//! invalid change is logged and reported on the admin API, and the last good
//! profile stays in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use crate::control::state::{ProfileSource, Shared};

/// Keeps the OS watch alive.
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Start watching; `None` (with a warning) when the OS refuses.
pub fn watch(path: PathBuf, shared: Arc<Shared>) -> Option<Watcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut w = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the profile; hot reload is off");
            return None;
        }
    };
    if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the profile's directory; hot reload is off");
        return None;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of events (write, rename, chmod) settle into one reload.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while rx.try_recv().is_ok() {}
            let _ = reload_from_file(&path, &shared, false);
        }
    });
    Some(Watcher { _inner: w })
}

/// Re-read the profile file; apply it if it changed (or `force`) and is valid.
pub fn reload_from_file(
    path: &std::path::Path,
    shared: &Arc<Shared>,
    force: bool,
) -> Result<bool, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            // Mid-rename the file can be briefly absent; the next event retries.
            let msg = format!("cannot read profile {}: {e}", path.display());
            tracing::debug!("{msg}");
            return Err(msg);
        }
    };
    let unchanged = shared
        .meta
        .lock()
        .map(|m| m.file_text.as_deref() == Some(text.as_str()))
        .unwrap_or(false);
    if unchanged && !force {
        return Ok(false);
    }
    match brownout_faults::validate::load_profile(&text, &path.display().to_string()) {
        Ok(p) => {
            shared.apply(&p, Some(text), ProfileSource::File)?;
            tracing::info!(file = %path.display(), "profile reloaded");
            Ok(true)
        }
        Err(diags) => {
            // Remember the bad text so the same save is not re-reported on every event.
            if let Ok(mut m) = shared.meta.lock() {
                m.file_text = Some(text.clone());
            }
            let msg = diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            tracing::error!("profile change rejected; the previous profile stays in force:\n{msg}");
            shared.set_reload_error(Some(msg.clone()));
            Err(msg)
        }
    }
}
