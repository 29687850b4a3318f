//! Byte sizes as go-humanize prints them, which is how etcd's tools show database sizes.

/// go-humanize's `Bytes`: SI units, one decimal below 10 (`20 kB`, `1.2 MB`, `9 B`).
pub fn humanize_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exponent = ((size as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = ((size as f64) / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{} {}", round_half_even(value, 1), UNITS[exponent])
    } else {
        format!("{} {}", round_half_even(value, 0), UNITS[exponent])
    }
}

/// Go's `%.Nf`, which rounds exact ties to even.
fn round_half_even(value: f64, decimals: usize) -> String {
    let scale = 10f64.powi(decimals as i32);
    let scaled = value * scale;
    let floor = scaled.floor();
    let rounded = if scaled - floor == 0.5 && floor % 2.0 == 0.0 {
        floor
    } else {
        scaled.round()
    };
    format!("{:.*}", decimals, rounded / scale)
}
