//! Results of the keyed-skew benchmark and their chart.
//!
//! The benchmark runs a keyed aggregation over Zipf-distributed keys for each routing strategy
//! (`hash`, `pkg`, `split`) and exponent, and records one [`SkewRow`] per run. [`write_skew_svg`]
//! draws them as two side-by-side panels over the Zipf exponent: throughput (rows/s) and load
//! imbalance (max/mean rows per instance), one line per strategy — per strategy and partition
//! count when the rows mix partition counts. Runs whose result was wrong are marked with a red
//! cross, so a fast but incorrect strategy cannot hide in the chart.
//!
//! ```no_run
//! use weir_workloads::bench::skew_plot::{write_skew_svg, SkewRow};
//!
//! let rows: Vec<SkewRow> = serde_json::from_str(&std::fs::read_to_string("skew.json")?)?;
//! write_skew_svg("skew.svg", &rows)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// One benchmark run: a strategy over a key stream with one Zipf exponent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkewRow {
    /// Zipf exponent of the key stream (0 = uniform).
    pub zipf: f64,
    /// Routing strategy name (`hash`, `pkg`, `split`, ...).
    pub strategy: String,
    /// Parallel instances of the keyed operator.
    pub partitions: usize,
    /// Records processed.
    pub records: u64,
    /// End-to-end throughput in records per second.
    pub rows_per_s: f64,
    /// Max / mean records per keyed instance (1.0 = perfectly balanced).
    pub imbalance: f64,
    /// Records sent across the partitioned edge.
    pub shuffled_rows: u64,
    /// Peak resident set size of the run, in bytes.
    pub peak_rss_bytes: u64,
    /// Share of wall time the source spent waiting for credit (0..=1).
    pub source_backpressured_ratio: f64,
    /// Whether the run's output matched the reference result.
    pub correct: bool,
}

/// Why [`write_skew_svg`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// There was nothing to draw.
    #[error("no skew rows to plot: run the skew benchmark first")]
    NoRows,
    /// A row holds a value that cannot be placed on the chart.
    #[error(
        "row {index} ({strategy} at zipf {zipf}) has an invalid {field} {value}: \
         need a finite, non-negative number"
    )]
    InvalidValue {
        /// Position of the row in the input.
        index: usize,
        /// The row's strategy.
        strategy: String,
        /// The row's Zipf exponent.
        zipf: f64,
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// Drawing or writing the file failed (for example, its directory does not exist).
    #[error("cannot draw {path}: {source}")]
    Draw {
        /// The output path.
        path: PathBuf,
        /// The plotting backend's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// One line of the chart.
struct Series {
    label: String,
    /// `(zipf, rows_per_s, imbalance, correct)`, sorted by zipf.
    points: Vec<(f64, f64, f64, bool)>,
}

/// Writes the two-panel skew chart of `rows` to `path` as SVG (see the [module docs](self)).
///
/// # Errors
///
/// [`PlotError::NoRows`] for an empty slice, [`PlotError::InvalidValue`] for a NaN, infinite or
/// negative exponent, throughput or imbalance, and [`PlotError::Draw`] if the file cannot be
/// written.
pub fn write_skew_svg(path: impl AsRef<Path>, rows: &[SkewRow]) -> Result<(), PlotError> {
    let path = path.as_ref();
    validate(rows)?;
    let series = group(rows);
    draw(path, &series).map_err(|source| PlotError::Draw {
        path: path.to_path_buf(),
        source,
    })
}

fn validate(rows: &[SkewRow]) -> Result<(), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::NoRows);
    }
    for (index, row) in rows.iter().enumerate() {
        for (field, value) in [
            ("zipf", row.zipf),
            ("rows_per_s", row.rows_per_s),
            ("imbalance", row.imbalance),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(PlotError::InvalidValue {
                    index,
                    strategy: row.strategy.clone(),
                    zipf: row.zipf,
                    field,
                    value,
                });
            }
        }
    }
    Ok(())
}

/// Groups rows into lines by strategy — and partition count, if the rows mix several — in
/// order of first appearance.
fn group(rows: &[SkewRow]) -> Vec<Series> {
    let mixed_partitions = rows.iter().any(|r| r.partitions != rows[0].partitions);
    let mut series: Vec<Series> = Vec::new();
    for row in rows {
        let label = if mixed_partitions {
            format!("{} (p={})", row.strategy, row.partitions)
        } else {
            row.strategy.clone()
        };
        let point = (row.zipf, row.rows_per_s, row.imbalance, row.correct);
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                label,
                points: vec![point],
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

/// Which value of a point a panel plots.
#[derive(Clone, Copy)]
enum Panel {
    Throughput,
    Imbalance,
}

impl Panel {
    fn value(self, point: &(f64, f64, f64, bool)) -> f64 {
        match self {
            Panel::Throughput => point.1,
            Panel::Imbalance => point.2,
        }
    }
}

type DrawResult = Result<(), Box<dyn StdError + Send + Sync>>;

fn draw(path: &Path, series: &[Series]) -> DrawResult {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    draw_panel(&left, series, Panel::Throughput)?;
    draw_panel(&right, series, Panel::Imbalance)?;
    root.present()?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    series: &[Series],
    panel: Panel,
) -> DrawResult {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max) = points().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    if x_max - x_min < 1e-9 {
        (x_min, x_max) = (x_min - 0.25, x_max + 0.25);
    }
    let x_pad = (x_max - x_min) * 0.03;
    let y_max = points().map(|p| panel.value(p)).fold(0.0, f64::max);
    let (y_min, caption, y_desc) = match panel {
        Panel::Throughput => (0.0, "Throughput", "rows/s"),
        Panel::Imbalance => (
            points().map(|p| p.2).fold(1.0, f64::min),
            "Load imbalance",
            "imbalance (max / mean rows per instance)",
        ),
    };
    // Data fills the lower 3/4; the legend sits in the headroom above it.
    let span = if y_max > y_min { y_max - y_min } else { 1.0 };
    let y_top = y_min + span / 0.75;

    let mut chart = ChartBuilder::on(area)
        .caption(format!("{caption} vs key skew"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min - x_pad)..(x_max + x_pad), y_min..y_top)?;
    chart
        .configure_mesh()
        .x_desc("Zipf exponent")
        .y_desc(y_desc)
        .y_label_formatter(&|v| match panel {
            Panel::Throughput => si(*v),
            Panel::Imbalance => format!("{v:.2}"),
        })
        .draw()?;

    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(
                LineSeries::new(
                    s.points.iter().map(|p| (p.0, panel.value(p))),
                    color.stroke_width(2),
                )
                .point_size(3),
            )?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    let wrong: Vec<(f64, f64)> = points()
        .filter(|p| !p.3)
        .map(|p| (p.0, panel.value(p)))
        .collect();
    if !wrong.is_empty() {
        chart
            .draw_series(
                wrong
                    .into_iter()
                    .map(|p| Cross::new(p, 7, RED.stroke_width(2))),
            )?
            .label("incorrect result")
            .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Line colors: the Okabe–Ito palette (distinct under common color-vision deficiencies),
/// without its vermillion, which is close to the red of the incorrect-result marker.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0x99, 0x99, 0x99),
];

/// `1234567.0` → `1.23M`: compact axis labels for rates.
fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(zipf: f64, strategy: &str, rows_per_s: f64, imbalance: f64, correct: bool) -> SkewRow {
        SkewRow {
            zipf,
            strategy: strategy.to_string(),
            partitions: 16,
            records: 1_000_000,
            rows_per_s,
            imbalance,
            shuffled_rows: 1_000_000,
            peak_rss_bytes: 64 << 20,
            source_backpressured_ratio: 0.25,
            correct,
        }
    }

    fn sample_rows() -> Vec<SkewRow> {
        let mut rows = Vec::new();
        for (i, zipf) in [0.0, 0.5, 1.0, 1.5, 2.0].into_iter().enumerate() {
            let i = i as f64;
            rows.push(row(zipf, "hash", 9e6 / (1.0 + i), 1.0 + 2.0 * i, true));
            rows.push(row(zipf, "pkg", 9e6 / (1.0 + 0.5 * i), 1.0 + i, true));
            rows.push(row(zipf, "split", 8.5e6, 1.0 + 0.01 * i, zipf != 2.0));
        }
        rows
    }

    /// A unique path in the temp dir; removed by the caller.
    fn temp_svg(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("weir-{name}-{}.svg", std::process::id()))
    }

    #[test]
    fn writes_a_well_formed_svg_with_every_series() {
        let path = temp_svg("skew-plot");
        write_skew_svg(&path, &sample_rows()).expect("sample rows are valid");
        let svg = std::fs::read_to_string(&path).expect("the SVG was written");
        std::fs::remove_file(&path).expect("remove the test file");

        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        for expected in [
            "hash",
            "pkg",
            "split",
            "incorrect result",
            "Zipf exponent",
            "rows/s",
            "Throughput vs key skew",
            "Load imbalance vs key skew",
        ] {
            let count = texts.iter().filter(|t| t.trim() == expected).count();
            let panels = if expected.contains("vs key skew") || expected == "rows/s" {
                1
            } else {
                2
            };
            assert_eq!(count, panels, "{expected:?} in {texts:?}");
        }
    }

    #[test]
    fn mixed_partition_counts_get_separate_lines() {
        let mut rows = sample_rows();
        rows.push(SkewRow {
            partitions: 4,
            ..row(1.0, "pkg", 5e6, 1.5, true)
        });
        let labels: Vec<String> = group(&rows).into_iter().map(|s| s.label).collect();
        assert_eq!(
            labels,
            ["hash (p=16)", "pkg (p=16)", "split (p=16)", "pkg (p=4)"]
        );
    }

    #[test]
    fn invalid_input_is_rejected_before_drawing() {
        let path = temp_svg("skew-plot-invalid");
        assert!(matches!(write_skew_svg(&path, &[]), Err(PlotError::NoRows)));
        let mut rows = sample_rows();
        rows[4].imbalance = f64::NAN;
        let err = write_skew_svg(&path, &rows).expect_err("NaN imbalance");
        assert!(matches!(
            err,
            PlotError::InvalidValue {
                index: 4,
                field: "imbalance",
                ..
            }
        ));
        assert!(!path.exists());
        let missing_dir = std::env::temp_dir().join("weir-no-such-dir").join("x.svg");
        let err = write_skew_svg(&missing_dir, &sample_rows()).expect_err("no directory");
        assert!(matches!(err, PlotError::Draw { .. }), "{err}");
    }

    #[test]
    fn rows_round_trip_through_json() {
        let rows = sample_rows();
        let json = serde_json::to_string(&rows).expect("rows serialize");
        let back: Vec<SkewRow> = serde_json::from_str(&json).expect("rows deserialize");
        assert_eq!(back, rows);
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(950.0), "950");
    }
}
