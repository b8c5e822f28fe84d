//! An opt-in profile of the fused layers: time and multiply-adds per layer kind and size,
//! switched on by `poisonscope bench train --profile` (off, it costs one atomic load per call).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

/// The totals of one layer kind and size.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub calls: u64,
    pub time: Duration,
    /// Multiply-adds of the matrix products (0 for elementwise layers).
    pub macs: u64,
}

/// Starts (or stops) recording; starting clears what was recorded.
pub fn enable(on: bool) {
    if on {
        TABLE.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    ON.store(on, Ordering::Relaxed);
}

/// Runs `f`, adding its time to `key` when recording.
pub fn time<T>(key: impl FnOnce() -> String, macs: usize, f: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    let mut table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    let entry = table.entry(key()).or_default();
    entry.calls += 1;
    entry.time += elapsed;
    entry.macs += macs as u64;
    out
}

/// What was recorded, by key.
pub fn entries() -> Vec<(String, Entry)> {
    let table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    table.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
