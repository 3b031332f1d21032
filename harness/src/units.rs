//! Sizes and durations as users write them (docs/design.md).

/// Parse a size: plain bytes, or a number with `k`/`m`/`g` or `KiB`/`MiB`/`GiB` (powers of
/// 1024), or `KB`/`MB`/`GB` (powers of 1000). Fractions are allowed when the result is whole.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 4096, 64k, 8MiB, 1GB)"))?;
    let mult: f64 = match unit.trim() {
        "" | "b" | "B" => 1.0,
        "k" | "K" | "KiB" | "kib" => 1024.0,
        "m" | "M" | "MiB" | "mib" => 1024.0 * 1024.0,
        "g" | "G" | "GiB" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`: use k/m/g or KiB/MiB/GiB (1024) or KB/MB/GB (1000)"
            ))
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes.fract() != 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parse a duration in seconds: plain seconds, or a number with `ms`, `s` or `m` (minutes).
pub fn parse_duration_s(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 30, 30s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{text}` is not a non-negative duration"));
    }
    Ok(v * mult)
}

/// Render a byte count compactly with binary units (for messages).
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{name}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("8m").unwrap(), 8 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("2KB").unwrap(), 2000);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert!(parse_size("1.3").is_err());
        assert!(parse_size("12 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("-4k").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("30").unwrap(), 30.0);
        assert_eq!(parse_duration_s("30s").unwrap(), 30.0);
        assert_eq!(parse_duration_s("500ms").unwrap(), 0.5);
        assert_eq!(parse_duration_s("2m").unwrap(), 120.0);
        assert!(parse_duration_s("soon").is_err());
        assert!(parse_duration_s("-1").is_err());
    }

    #[test]
    fn bytes_fmt() {
        assert_eq!(fmt_bytes(65536), "64KiB");
        assert_eq!(fmt_bytes(3 << 30), "3GiB");
        assert_eq!(fmt_bytes(1000), "1000B");
    }
}
