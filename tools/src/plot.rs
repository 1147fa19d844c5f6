//! Figure 4 of the paper for this system: requests/s against document size, one line per
//! server and client, and the NIC's ceiling as a line, drawn with `plotters` into a PNG from
//! the benchmarks' JSON (`xok-tools plot`, or the servers benchmark itself). The font is DejaVu
//! Sans, read from the system (`make setup` installs `fonts-dejavu-core`) and registered from
//! its bytes.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// Where the font is read from.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One line of the figure: its label and requests/s per document size.
pub struct Series {
    /// What the line is (server and client).
    pub label: String,
    /// Requests/s at each size of the x axis.
    pub values: Vec<f64>,
}

/// Draws the figure into `out`: `sizes` label the x axis (document sizes), `ceiling` is the
/// NIC's frames/s drawn as a dashed line.
pub fn figure4(out: &Path, title: &str, sizes: &[&str], series: &[Series], ceiling: Option<(String, f64)>) -> Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("reading the font {FONT} (make setup installs fonts-dejavu-core)"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()))
        .map_err(|_| anyhow::anyhow!("{FONT} is not a font plotters can use"))?;
    let top = series.iter().flat_map(|s| s.values.iter().copied()).chain(ceiling.iter().map(|c| c.1)).fold(1.0f64, f64::max) * 1.15;
    let root = BitMapBackend::new(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3f64..(sizes.len() as f64 - 0.7), 0f64..top)?;
    chart
        .configure_mesh()
        .x_labels(sizes.len())
        .x_label_formatter(&|x| sizes.get(x.round() as usize).map_or(String::new(), |s| (*s).to_string()))
        .x_desc("document size")
        .y_desc("requests/s")
        .label_style(("sans-serif", 15))
        .draw()?;
    let colours = [RED, BLUE, MAGENTA, CYAN, GREEN, BLACK];
    for (index, line) in series.iter().enumerate() {
        let colour = colours[index % colours.len()];
        let points: Vec<(f64, f64)> = line.values.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|point| Circle::new(point, 4, colour.filled())))?;
    }
    if let Some((label, frames)) = ceiling {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(vec![(-0.3, frames), (sizes.len() as f64 - 0.7, frames)], 8, 6, grey.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2)));
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.9)).border_style(BLACK).label_font(("sans-serif", 15)).draw()?;
    root.present()?;
    Ok(())
}

/// The median of `values`.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Draws Figure 4 into `out` from the servers benchmark's JSON (`docs/servers-bench.json`) and
/// the NIC benchmark's (`docs/nic-ceiling.json`, optional: without it, no ceiling line).
pub fn servers_figure(servers_json: &Path, nic_json: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(servers_json).with_context(|| format!("reading {}", servers_json.display()))?;
    let data: serde_json::Value = serde_json::from_str(&text)?;
    let cells = data["cells"].as_array().context("no cells")?;
    let mut sizes: Vec<u64> = cells.iter().filter_map(|cell| cell["bytes"].as_u64()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut lines: Vec<(String, Vec<f64>)> = Vec::new();
    for cell in cells {
        let (Some(server), Some(client), Some(bytes)) = (cell["server"].as_str(), cell["client"].as_str(), cell["bytes"].as_u64()) else { continue };
        let mut runs: Vec<f64> = cell["requests_per_s"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64).collect();
        let label = format!("{server}, {client}");
        let index = match lines.iter().position(|(l, _)| *l == label) {
            Some(index) => index,
            None => {
                lines.push((label, vec![0.0; sizes.len()]));
                lines.len() - 1
            }
        };
        let at = sizes.iter().position(|size| *size == bytes).expect("collected above");
        lines[index].1[at] = median(&mut runs);
    }
    let ceiling = std::fs::read_to_string(nic_json).ok().and_then(|text| {
        let nic: serde_json::Value = serde_json::from_str(&text).ok()?;
        let e1000 = nic["nics"].as_array()?.iter().find(|n| n["model"] == "e1000")?;
        let frames = e1000["tx_60_fps"].as_f64()?;
        Some((format!("NIC ceiling: {frames:.0} frames/s sent (e1000, 60 B)"), frames))
    });
    let labels: Vec<String> = sizes.iter().map(|size| match size {
        0..1000 => format!("{size} B"),
        _ => format!("{} KB", size / 1000),
    }).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let series: Vec<Series> = lines.into_iter().map(|(label, values)| Series { label, values }).collect();
    let accelerator = data["accelerator"].as_str().unwrap_or("?");
    figure4(out, &format!("Cheetah and httpd on xok ({accelerator}, e1000)"), &labels, &series, ceiling)
}
