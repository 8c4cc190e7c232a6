//! SVG plots of a compare run (plotters, SVG backend only: no fonts or
//! system libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::compare::CompareResult;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One series: a label and (x index, y) points.
type Series = (String, Vec<(usize, f64)>);

fn lines(
    path: &Path,
    title: &str,
    y_desc: &str,
    xs: &[usize],
    series: &[Series],
    ceiling: Option<(String, f64)>,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(0.0f64, f64::max);
    if let Some((_, c)) = &ceiling {
        ymax = ymax.max(*c);
    }
    let ymin = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .filter(|y| *y > 0.0)
        .fold(f64::MAX, f64::min)
        .min(ymax)
        .max(1e-3);
    let n = xs.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            -0.3f64..(n as f64 - 0.7),
            (ymin / 2.0..ymax * 2.0).log_scale(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < xs.len() {
                format!("{} body sigs", xs[i as usize])
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (k, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let data: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(x, y)| (x as f64, y.max(ymin / 2.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(data.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if let Some((name, c)) = ceiling {
        let color = BLACK;
        chart
            .draw_series(LineSeries::new(
                vec![(-0.3, c), (n as f64 - 0.7, c)],
                color.stroke_width(1),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Writes `throughput.svg` and `load.svg` into `dir`.
///
/// # Errors
///
/// The files cannot be written.
pub fn write(r: &CompareResult, dir: &Path) -> anyhow::Result<()> {
    let mut xs: Vec<usize> = r
        .scans
        .iter()
        .map(|s| s.body)
        .chain(r.loads.iter().map(|l| l.body))
        .collect();
    xs.sort_unstable();
    xs.dedup();
    let xi = |b: usize| xs.iter().position(|&x| x == b).unwrap_or(0);
    let mut series: Vec<Series> = Vec::new();
    for s in r
        .scans
        .iter()
        .filter(|s| s.note.is_empty() || s.note.starts_with("clamd started"))
    {
        let name = format!("{} ({} threads)", s.tool, s.threads);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, p)) => p.push((xi(s.body), s.mbps())),
            None => series.push((name, vec![(xi(s.body), s.mbps())])),
        }
    }
    lines(
        &dir.join("throughput.svg"),
        "Scan throughput (MB/s, log scale)",
        "MB/s",
        &xs,
        &series,
        Some(("memory read, 1 core".into(), r.bw_one * 1000.0)),
    )?;
    let mut series: Vec<Series> = Vec::new();
    for l in &r.loads {
        let Some(secs) = l.secs else { continue };
        match series.iter_mut().find(|(n, _)| *n == l.what) {
            Some((_, p)) => p.push((xi(l.body), secs)),
            None => series.push((l.what.clone(), vec![(xi(l.body), secs)])),
        }
    }
    lines(
        &dir.join("load.svg"),
        "Database compile and load time (s, log scale)",
        "seconds",
        &xs,
        &series,
        None,
    )?;
    Ok(())
}
