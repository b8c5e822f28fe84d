//! Range checks shared by the config's sections and the attacks' settings: each names the key
//! and the value it refuses.

/// Largest image side a config may ask for (resize, a patch).
pub const MAX_SIDE: u32 = 2048;

/// `key` must be a finite number in `low..high` (each end open or closed).
pub fn in_range(
    key: &str,
    v: f64,
    low: f64,
    low_open: bool,
    high: f64,
    high_open: bool,
) -> Result<(), String> {
    let above = if low_open { v > low } else { v >= low };
    let below = if high_open { v < high } else { v <= high };
    if v.is_finite() && above && below {
        return Ok(());
    }
    let (l, h) = (
        if low_open { "(" } else { "[" },
        if high_open { ")" } else { "]" },
    );
    Err(format!("{key} must be in {l}{low}, {high}{h}, got {v}"))
}

/// `key` must be a whole number in `low..=high`.
pub fn count_in(key: &str, v: usize, low: usize, high: usize) -> Result<(), String> {
    if (low..=high).contains(&v) {
        Ok(())
    } else {
        Err(format!("{key} must be in {low}..={high}, got {v}"))
    }
}
