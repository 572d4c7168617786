//! The chart of `weir bench overload`: goodput and attempts per second over time, one line per
//! client, in two panels, with the capacity and the moment the load drops marked.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::overload::OverloadRow;

/// Why [`write_overload_svg`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OverloadPlotError {
    /// There was nothing to draw.
    #[error("no overload rows to plot: run the benchmark first")]
    NoRows,
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

type DrawResult = Result<(), Box<dyn StdError + Send + Sync>>;

/// Writes the two-panel chart of `rows` to `path` as SVG.
///
/// # Errors
///
/// [`OverloadPlotError::NoRows`] for an empty slice, [`OverloadPlotError::Draw`] if the file
/// cannot be written.
pub fn write_overload_svg(
    path: impl AsRef<Path>,
    rows: &[OverloadRow],
) -> Result<(), OverloadPlotError> {
    let path = path.as_ref();
    if rows.is_empty() {
        return Err(OverloadPlotError::NoRows);
    }
    draw(path, rows).map_err(|source| OverloadPlotError::Draw {
        path: path.to_path_buf(),
        source,
    })
}

const COLORS: [RGBColor; 4] = [
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
];

#[derive(Clone, Copy)]
enum Panel {
    Goodput,
    Attempts,
}

fn draw(path: &Path, rows: &[OverloadRow]) -> DrawResult {
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    draw_panel(&left, rows, Panel::Goodput)?;
    draw_panel(&right, rows, Panel::Attempts)?;
    root.present()?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    rows: &[OverloadRow],
    panel: Panel,
) -> DrawResult {
    let value = |c: &crate::http_service::SecondCounts| match panel {
        Panel::Goodput => c.successes as f64,
        Panel::Attempts => c.attempts as f64,
    };
    let x_max = rows
        .iter()
        .flat_map(|r| r.per_second.iter().map(|c| c.second + 1))
        .max()
        .unwrap_or(1) as f64;
    let capacity = rows[0].capacity;
    let y_max = rows
        .iter()
        .flat_map(|r| r.per_second.iter().map(value))
        .fold(capacity, f64::max);
    let (caption, y_desc) = match panel {
        Panel::Goodput => ("Goodput (served requests)", "successes per second"),
        Panel::Attempts => (
            "Load on the service (retries included)",
            "attempts per second",
        ),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max * 1.3)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .draw()?;
    let drop_at = rows[0].duration_s;
    chart
        .draw_series(LineSeries::new(
            [(0.0, capacity), (x_max, capacity)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label(format!("capacity ({capacity:.0}/s)"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .draw_series(LineSeries::new(
            [(drop_at, 0.0), (drop_at, y_max * 1.3)],
            RED.mix(0.6).stroke_width(2),
        ))?
        .label("load drops under capacity")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x + 10, y - 6), (x + 10, y + 6)],
                RED.mix(0.6).stroke_width(2),
            )
        });
    for (i, row) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = row
            .per_second
            .iter()
            .map(|c| (c.second as f64 + 0.5, value(c)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(2))?
            .label(format!(
                "{} (×{:.2} attempts per success)",
                row.client, row.amplification
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_service::SecondCounts;

    fn row(client: &str, scale: u64) -> OverloadRow {
        OverloadRow {
            client: client.into(),
            offered_rps: 200.0,
            capacity: 100.0,
            service_concurrency: 4,
            duration_s: 3.0,
            arrivals: 700,
            attempts: 500 * scale,
            successes: 500,
            failed: 0,
            shed: 0,
            amplification: scale as f64,
            goodput_rps: 95.0,
            goodput_ratio: 0.95,
            p50_ms: 30.0,
            p99_ms: 45.0,
            recovery_s: Some(0.0),
            per_second: (0..5)
                .map(|s| SecondCounts {
                    second: s,
                    attempts: 100 * scale,
                    successes: 95,
                    rejections: 5,
                })
                .collect(),
        }
    }

    #[test]
    fn draws_both_panels_with_every_client() {
        let path = std::env::temp_dir().join(format!("weir-overload-{}.svg", std::process::id()));
        write_overload_svg(&path, &[row("naive", 4), row("weir", 1)]).expect("valid rows");
        let svg = std::fs::read_to_string(&path).expect("written");
        std::fs::remove_file(&path).expect("remove the test file");
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        for (text, times) in [
            ("naive (×4.00 attempts per success)", 2),
            ("weir (×1.00 attempts per success)", 2),
            ("Goodput (served requests)", 1),
            ("Load on the service (retries included)", 1),
        ] {
            let n = texts.iter().filter(|t| t.trim() == text).count();
            assert_eq!(n, times, "{text:?} in {texts:?}");
        }
        assert!(matches!(
            write_overload_svg(&path, &[]),
            Err(OverloadPlotError::NoRows)
        ));
    }
}
