//! Deterministic orders CSV generator with a known share of malformed rows.
//!
//! Valid rows look like real traffic: order ids increase, timestamps advance over four days from
//! 2024-03-01 with jitter (written as `Z`, with milliseconds, or in a local `+hh:mm` offset),
//! 40 countries with a Zipf-like skew, each country's usual currency (sometimes USD), log-uniform
//! amounts with two decimals, and statuses placed 55 % / shipped 30 % / cancelled 10 % /
//! refunded 5 %. About 1 % of valid rows quote some fields (valid CSV quoting).
//!
//! The jitter is ±10 minutes, so the event times are out of order by at most 20 minutes: well
//! within the job's default one-hour bound, and a default file has no late row. For late data,
//! [`generate_orders_csv_disordered`] adds *stragglers*: rows whose event time lags their place
//! in the file by a fixed [`Disorder::lag_ms`] (never in the first 1 % of the rows, so each has
//! rows before it to be late against).
//!
//! About 0.5 % of rows are malformed, the kinds taken in turn so every kind appears once there
//! are six or more: wrong field count (a field missing, an extra field, or two fields merged into
//! one quoted field holding a comma), an unparseable number, an unparseable timestamp, a negative
//! amount, an unknown currency, an unknown status. Each malformed row breaks exactly one rule.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, SecondsFormat};

/// How a generated row is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MalformedKind {
    /// Not 7 fields.
    WrongFieldCount,
    /// `order_id`, `customer_id` or `amount` does not parse.
    BadNumber,
    /// `ts` is not RFC 3339.
    BadTimestamp,
    /// `amount` < 0.
    NegativeAmount,
    /// `currency` not in USD/EUR/GBP/JPY.
    UnknownCurrency,
    /// `status` not in placed/shipped/cancelled/refunded.
    UnknownStatus,
}

impl MalformedKind {
    /// Every kind, in generation order.
    pub const ALL: [MalformedKind; 6] = [
        MalformedKind::WrongFieldCount,
        MalformedKind::BadNumber,
        MalformedKind::BadTimestamp,
        MalformedKind::NegativeAmount,
        MalformedKind::UnknownCurrency,
        MalformedKind::UnknownStatus,
    ];
}

/// One malformed row written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedRow {
    /// Its 1-based line (the header is line 1).
    pub line: u64,
    /// What is wrong with it.
    pub kind: MalformedKind,
}

/// What [`generate_orders_csv`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Data rows (header excluded).
    pub rows: u64,
    /// Valid rows.
    pub valid: u64,
    /// Valid rows with status `cancelled`.
    pub cancelled: u64,
    /// Valid rows with quoted fields.
    pub quoted_valid: u64,
    /// The malformed rows in file order (about 0.5 % of `rows`).
    pub malformed: Vec<MalformedRow>,
    /// Rows (valid or not) whose event time lags by [`Disorder::lag_ms`].
    pub stragglers: u64,
}

/// Stragglers in a generated file: rows whose event time lags their place by `lag_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disorder {
    /// Stragglers per million rows (0: none).
    pub ppm: u64,
    /// How far a straggler's event time lags, ms.
    pub lag_ms: i64,
}

impl GenSummary {
    /// Malformed rows of `kind`.
    pub fn count(&self, kind: MalformedKind) -> u64 {
        self.malformed.iter().filter(|m| m.kind == kind).count() as u64
    }
}

/// Errors from [`generate_orders_csv`].
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The file could not be written.
    #[error("{path}: I/O error: {source}")]
    Io {
        /// The output file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// SplitMix64: small, fast, and deterministic per seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Countries by descending traffic, with their usual currency.
const COUNTRIES: [(&str, &str); 40] = [
    ("US", "USD"),
    ("DE", "EUR"),
    ("GB", "GBP"),
    ("FR", "EUR"),
    ("JP", "JPY"),
    ("CA", "USD"),
    ("IT", "EUR"),
    ("ES", "EUR"),
    ("NL", "EUR"),
    ("AU", "USD"),
    ("BR", "USD"),
    ("MX", "USD"),
    ("IN", "USD"),
    ("SE", "EUR"),
    ("CH", "EUR"),
    ("PL", "EUR"),
    ("BE", "EUR"),
    ("AT", "EUR"),
    ("DK", "EUR"),
    ("NO", "EUR"),
    ("FI", "EUR"),
    ("IE", "EUR"),
    ("PT", "EUR"),
    ("CZ", "EUR"),
    ("NZ", "USD"),
    ("SG", "USD"),
    ("KR", "USD"),
    ("ZA", "USD"),
    ("AR", "USD"),
    ("CL", "USD"),
    ("CO", "USD"),
    ("TR", "EUR"),
    ("IL", "USD"),
    ("AE", "USD"),
    ("SA", "USD"),
    ("HU", "EUR"),
    ("RO", "EUR"),
    ("GR", "EUR"),
    ("TH", "USD"),
    ("MY", "USD"),
];

/// Malformed rows per million in [`generate_orders_csv`].
pub const MALFORMED_PPM: u64 = 5_000;
/// Valid rows with quoted fields per million.
const QUOTED_PPM: u64 = 10_000;
/// 2024-03-01T00:00:00Z in milliseconds.
const START_MS: i64 = 1_709_251_200_000;
const SPAN_MS: i64 = 4 * 86_400_000;

fn pick_country(rng: &mut Rng) -> (&'static str, &'static str) {
    // Zipf-like: weight of rank r is 1/(r+1); total ≈ 4.28 for 40 ranks.
    let total: f64 = (1..=COUNTRIES.len()).map(|r| 1.0 / r as f64).sum();
    let mut x = rng.unit() * total;
    for (r, c) in COUNTRIES.iter().enumerate() {
        x -= 1.0 / (r + 1) as f64;
        if x <= 0.0 {
            return *c;
        }
    }
    COUNTRIES[COUNTRIES.len() - 1]
}

fn format_ts(rng: &mut Rng, ms: i64) -> String {
    let Some(t) = DateTime::from_timestamp_millis(ms) else {
        return "1970-01-01T00:00:00Z".into();
    };
    match rng.below(10) {
        0..=6 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        7 | 8 => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        _ => {
            let hours = rng.below(25) as i32 - 12;
            match FixedOffset::east_opt(hours * 3600) {
                Some(off) => t
                    .with_timezone(&off)
                    .to_rfc3339_opts(SecondsFormat::Millis, false),
                None => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            }
        }
    }
}

/// Writes `rows` orders (plus the header) to `path`, deterministically for `seed`. The file is
/// written as `.<name>.tmp` and renamed to `path` once complete.
///
/// # Errors
/// [`GenerateError::Io`] if the file cannot be written.
pub fn generate_orders_csv(
    path: impl AsRef<Path>,
    rows: u64,
    seed: u64,
) -> Result<GenSummary, GenerateError> {
    generate_orders_csv_with(path, rows, seed, MALFORMED_PPM)
}

/// [`generate_orders_csv`] with `malformed_ppm` malformed rows per million (0 for a clean file,
/// as a benchmark against a reader without bad-record handling needs).
///
/// # Errors
/// [`GenerateError::Io`] if the file cannot be written.
pub fn generate_orders_csv_with(
    path: impl AsRef<Path>,
    rows: u64,
    seed: u64,
    malformed_ppm: u64,
) -> Result<GenSummary, GenerateError> {
    write_file(
        path.as_ref(),
        rows,
        seed,
        malformed_ppm,
        Disorder::default(),
    )
}

/// [`generate_orders_csv`] with stragglers (see [`Disorder`]); with `Disorder::default()` the
/// file is the same as [`generate_orders_csv`]'s.
///
/// ```
/// use weir_workloads::etl::{generate_orders_csv_disordered, Disorder};
///
/// let dir = tempfile::tempdir()?;
/// let lag = Disorder { ppm: 20_000, lag_ms: 6 * 3_600_000 };
/// let summary = generate_orders_csv_disordered(dir.path().join("o.csv"), 2_000, 1, lag)?;
/// assert!(summary.stragglers > 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`GenerateError::Io`] if the file cannot be written.
pub fn generate_orders_csv_disordered(
    path: impl AsRef<Path>,
    rows: u64,
    seed: u64,
    disorder: Disorder,
) -> Result<GenSummary, GenerateError> {
    write_file(path.as_ref(), rows, seed, MALFORMED_PPM, disorder)
}

fn write_file(
    path: &Path,
    rows: u64,
    seed: u64,
    malformed_ppm: u64,
    disorder: Disorder,
) -> Result<GenSummary, GenerateError> {
    // Written under a hidden temporary name and renamed when complete, so an interrupted
    // generation never leaves a truncated file under the final name.
    let tmp = temporary_name(path);
    let summary = write_orders(&tmp, rows, seed, malformed_ppm, disorder).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, path).map_err(|source| GenerateError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(summary)
}

/// `.<name>.tmp` beside `path`.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "orders.csv".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.tmp"))
}

fn write_orders(
    path: &Path,
    rows: u64,
    seed: u64,
    malformed_ppm: u64,
    disorder: Disorder,
) -> Result<GenSummary, GenerateError> {
    let io = |source| GenerateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    out.write_all(b"order_id,ts,customer_id,country,amount,currency,status\n")
        .map_err(io)?;
    let mut rng = Rng(seed);
    let mut summary = GenSummary {
        rows,
        ..GenSummary::default()
    };
    for i in 0..rows {
        let order_id = (10_000_000 + i).to_string();
        let jitter = rng.below(1_200_000) as i64 - 600_000;
        let mut ms = (START_MS + SPAN_MS * i as i64 / rows.max(1) as i64 + jitter).max(START_MS);
        // Drawn only for a disordered file, so a default file stays as it always was.
        if disorder.ppm > 0 && i >= rows / 100 && rng.below(1_000_000) < disorder.ppm {
            summary.stragglers += 1;
            ms = ms.saturating_sub(disorder.lag_ms);
        }
        let mut ts = format_ts(&mut rng, ms);
        let mut customer = (1 + rng.below(50_000)).to_string();
        let (country, home) = pick_country(&mut rng);
        let mut country = country.to_owned();
        let mut currency = if rng.below(10) == 0 { "USD" } else { home }.to_owned();
        let yen = if currency == "JPY" { 150.0 } else { 1.0 };
        let cents = ((1.0 + rng.unit() * 7.6).exp() * 100.0 * yen).round() as u64;
        let mut amount = format!("{}.{:02}", cents / 100, cents % 100);
        let mut status = match rng.below(100) {
            0..=54 => "placed",
            55..=84 => "shipped",
            85..=94 => "cancelled",
            _ => "refunded",
        }
        .to_owned();
        let line = i + 2;
        let mut fields_override: Option<String> = None;
        if rng.below(1_000_000) < malformed_ppm {
            let kind = MalformedKind::ALL[summary.malformed.len() % MalformedKind::ALL.len()];
            summary.malformed.push(MalformedRow { line, kind });
            match kind {
                MalformedKind::WrongFieldCount => {
                    fields_override = Some(match rng.below(3) {
                        0 => format!("{order_id},{ts},{customer},{country},{amount},{currency}"),
                        1 => format!("{order_id},{ts},{customer},{country},{amount},{currency},{status},gift"),
                        _ => format!("{order_id},{ts},{customer},\"{country},{currency}\",{amount},{status}"),
                    });
                }
                MalformedKind::BadNumber => match rng.below(3) {
                    0 => customer = format!("{customer}x"),
                    1 => amount = rng.pick(&["12.3.4", "abc", "", "1e"]).to_owned(),
                    _ => {
                        fields_override = Some(format!(
                            "A{order_id},{ts},{customer},{country},{amount},{currency},{status}"
                        ))
                    }
                },
                MalformedKind::BadTimestamp => {
                    ts = rng
                        .pick(&[
                            "2024-02-30T10:00:00Z",
                            "2024/03/01 10:00:00",
                            "yesterday",
                            "",
                            "2024-03-01T25:00:00Z",
                        ])
                        .to_owned();
                }
                MalformedKind::NegativeAmount => amount = format!("-{amount}"),
                MalformedKind::UnknownCurrency => {
                    currency = rng.pick(&["CHF", "usd", "XXX", "EURO"]).to_owned();
                }
                MalformedKind::UnknownStatus => {
                    status = rng
                        .pick(&["lost", "PLACED", "pending", "returned"])
                        .to_owned();
                }
            }
        } else {
            summary.valid += 1;
            if status == "cancelled" {
                summary.cancelled += 1;
            }
            if rng.below(1_000_000) < QUOTED_PPM {
                summary.quoted_valid += 1;
                country = format!("\"{country}\"");
                status = format!("\"{status}\"");
                ts = format!("\"{ts}\"");
            }
        }
        let row = fields_override.unwrap_or_else(|| {
            format!("{order_id},{ts},{customer},{country},{amount},{currency},{status}")
        });
        out.write_all(row.as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(summary)
}
