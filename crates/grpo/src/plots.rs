//! The report's PNG plots: reward curves, the schedule per step (one panel
//! per quantity, discrete steps drawn as steps), the metric against the
//! evaluated step counts (ticks only there); the drawing helpers the
//! frontier ([`crate::frontier`]) shares. One colour per arm in every
//! plot ([`arm_colour`], shared with `cogrpo view`).

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use cogrpo_runtime::files::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::arms::ArmOutcome;
use crate::state::IterationLog;

const SIZE: (u32, u32) = (900, 540);

/// The arms in the order reports and the viewer list them.
pub const ARM_ORDER: [&str; 6] = ["base", "tuned", "model", "schedule", "joint", "alternate"];

/// One colour per arm, the same in every plot and in `cogrpo view`
/// (Okabe-Ito's colour-blind-safe palette); other names hash into it.
pub fn arm_colour(name: &str) -> (u8, u8, u8) {
    const PALETTE: [(u8, u8, u8); 8] = [
        (0, 0, 0),
        (86, 180, 233),
        (230, 159, 0),
        (0, 158, 115),
        (213, 94, 0),
        (0, 114, 178),
        (204, 121, 167),
        (240, 228, 66),
    ];
    let i = ARM_ORDER
        .iter()
        .position(|a| *a == name)
        .unwrap_or_else(|| {
            ARM_ORDER.len()
                + name.bytes().map(usize::from).sum::<usize>() % (PALETTE.len() - ARM_ORDER.len())
        });
    PALETTE[i]
}

/// The colour of the `index`-th fixed sampler drawn beside the arms (in
/// order of first appearance): greys and earth tones, apart from the arms'.
pub fn fixed_colour(index: usize) -> (u8, u8, u8) {
    const FIXED: [(u8, u8, u8); 4] = [
        (120, 120, 120),
        (148, 103, 189),
        (140, 86, 75),
        (188, 189, 34),
    ];
    FIXED[index % FIXED.len()]
}

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font only fails to parse if the crate is broken.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One named line in its arm's colour.
pub struct Series {
    pub name: String,
    pub colour: (u8, u8, u8),
    pub points: Vec<(f64, f64)>,
}

pub(crate) fn rgb((r, g, b): (u8, u8, u8)) -> RGBColor {
    RGBColor(r, g, b)
}

/// The y range of `series` (finite values), padded.
pub(crate) fn y_range(series: &[Series]) -> (f64, f64) {
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite());
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for y in ys {
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if y0 > y1 {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    (y0 - pad, y1 + pad)
}

pub(crate) fn draw_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> anyhow::Error + '_ {
    move |e| anyhow!("cannot draw {}: {e}", path.display())
}

/// Draws a `size` picture in memory with `draw` and writes it to `path` as
/// an RGB PNG, atomically (a killed run leaves the previous plot, never
/// half of one).
pub(crate) fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let err = draw_err(path);
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        draw(&root)?;
        root.present().map_err(|e| err(&e))?;
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, size.0, size.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&rgb))
        .map_err(|e| err(&e))?;
    write_atomic(path, &bytes)
}

/// Draws `series` over a continuous x (iterations) into `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x: &str,
    y: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    register_font();
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    for v in xs {
        x0 = x0.min(v);
        x1 = x1.max(v);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let (y0, y1) = y_range(series);
    render_png(path, SIZE, |root| {
        draw_lines(
            root,
            draw_err(path),
            title,
            (x, y),
            (x0..x1, y0..y1),
            series,
        )
    })
}

/// [`line_chart`]'s drawing, onto `root`.
fn draw_lines(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    err: impl Fn(&dyn std::fmt::Display) -> anyhow::Error,
    title: &str,
    (x, y): (&str, &str),
    (xs, ys): (std::ops::Range<f64>, std::ops::Range<f64>),
    series: &[Series],
) -> anyhow::Result<()> {
    let (x0, x1) = (xs.start, xs.end);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xs, ys)
        .map_err(|e| err(&e))?;
    let whole = |v: &f64| {
        if (v - v.round()).abs() < 1e-6 {
            format!("{v:.0}")
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(((x1 - x0).round() as usize + 1).clamp(2, 11))
        .x_label_formatter(&whole)
        .x_desc(x)
        .y_desc(y)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let colour = rgb(s.colour);
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        if points.len() <= 40 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    legend(&mut chart).map_err(|e| err(&e))?;
    Ok(())
}

pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
}

/// How a panel over discrete x values joins its points.
#[derive(Clone, Copy, PartialEq)]
pub enum Join {
    /// Lines between the points (a trend over evaluated step counts).
    Lines,
    /// A level per x value (a per-step action: no slope between steps).
    Steps,
}

/// Panels side by side over the discrete x values `categories` (ticks only
/// there), one per `(y label, series)`, each series' points at category
/// indices.
pub fn category_panels(
    path: &Path,
    title: &str,
    x: &str,
    categories: &[usize],
    panels: &[(String, Vec<Series>)],
    join: Join,
) -> anyhow::Result<()> {
    register_font();
    let width = (panels.len().max(1) as u32 * 450).max(SIZE.0);
    render_png(path, (width, SIZE.1), |root| {
        draw_panels(root, draw_err(path), title, x, categories, panels, join)
    })
}

/// [`category_panels`]' drawing, onto `root`.
fn draw_panels(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    err: impl Fn(&dyn std::fmt::Display) -> anyhow::Error,
    title: &str,
    x: &str,
    categories: &[usize],
    panels: &[(String, Vec<Series>)],
    join: Join,
) -> anyhow::Result<()> {
    let n = categories.len().max(1) as i32;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, (y, series)) in areas.iter().zip(panels) {
        let (y0, y1) = y_range(series);
        let mut chart = ChartBuilder::on(area)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n - 1).into_segmented(), y0..y1)
            .map_err(|e| err(&e))?;
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => categories
                .get(*i as usize)
                .map_or(String::new(), |c| c.to_string()),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .x_labels(categories.len().max(1))
            .x_label_formatter(&label)
            .x_desc(x)
            .y_desc(y.as_str())
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for s in series {
            let colour = rgb(s.colour);
            let points: Vec<(i32, f64)> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|&(i, v)| (i as i32, v))
                .collect();
            let centre = |i: i32| SegmentValue::CenterOf(i);
            let anno = match join {
                Join::Lines => chart.draw_series(LineSeries::new(
                    points.iter().map(|&(i, v)| (centre(i), v)),
                    colour.stroke_width(2),
                )),
                Join::Steps => chart.draw_series(points.iter().map(|&(i, v)| {
                    PathElement::new(
                        vec![(SegmentValue::Exact(i), v), (SegmentValue::Exact(i + 1), v)],
                        colour.stroke_width(3),
                    )
                })),
            }
            .map_err(|e| err(&e))?;
            anno.label(s.name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(i, v)| Circle::new((centre(i), v), 4, colour.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        legend(&mut chart).map_err(|e| err(&e))?;
    }
    Ok(())
}

/// Moving average over `w` points (the reward curves are noisy per iteration).
fn smooth(points: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    (0..points.len())
        .map(|i| {
            let lo = i.saturating_sub(w - 1);
            let ys = &points[lo..=i];
            (
                points[i].0,
                ys.iter().map(|p| p.1).sum::<f64>() / ys.len() as f64,
            )
        })
        .collect()
}

/// Writes every plot; returns `(file name, caption)` pairs.
pub fn write_plots(dir: &Path, arms: &[ArmOutcome]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let trained: Vec<&ArmOutcome> = arms.iter().filter(|a| !a.history.is_empty()).collect();
    if !trained.is_empty() {
        let w = (trained[0].history.len() / 20).max(1);
        // One smoothed curve per arm of a per-iteration quantity.
        let curves = |y: &dyn Fn(&IterationLog) -> f64| -> Vec<Series> {
            trained
                .iter()
                .map(|a| Series {
                    name: a.name.clone(),
                    colour: arm_colour(&a.name),
                    points: smooth(
                        &a.history
                            .iter()
                            .map(|h| (h.iteration as f64, y(h)))
                            .collect::<Vec<_>>(),
                        w,
                    ),
                })
                .collect()
        };
        line_chart(
            &dir.join("reward_curves.png"),
            "Rollout reward (moving average)",
            "iteration",
            "mean reward",
            &curves(&|h| h.reward_mean),
        )?;
        out.push(("reward_curves.png".into(), "Reward curves".into()));
        if trained
            .iter()
            .any(|a| a.history.iter().any(|h| h.solve_rate.is_some()))
        {
            line_chart(
                &dir.join("solve_rate_curves.png"),
                "Rollout solve rate (moving average)",
                "iteration",
                "solve rate",
                &curves(&|h| h.solve_rate.unwrap_or(f64::NAN)),
            )?;
            out.push(("solve_rate_curves.png".into(), "Solve-rate curves".into()));
        }
    }
    if let Some(png) = schedule_plot(dir, arms)? {
        out.push(png);
    }
    if let Some(png) = metric_vs_steps_plot(dir, arms)? {
        out.push(png);
    }
    Ok(out)
}

/// The schedule followed at the first evaluation step count: one panel per
/// quantity (reveal share, position, each learned component), one level
/// per step and arm.
fn schedule_plot(dir: &Path, arms: &[ArmOutcome]) -> anyhow::Result<Option<(String, String)>> {
    let mut panels: Vec<(String, Vec<Series>)> = Vec::new();
    let mut steps = 0;
    for a in arms {
        let Some((&t, per)) = a.eval.schedule.iter().next() else {
            continue;
        };
        steps = steps.max(t);
        for (name, values) in per {
            if values.iter().all(|v| v.is_nan()) {
                continue;
            }
            let (label, points) = if name == "reveal" {
                ("reveal share".to_string(), share_of_answer(values))
            } else {
                (
                    name.clone(),
                    values
                        .iter()
                        .enumerate()
                        .map(|(t, &v)| (t as f64, v))
                        .collect(),
                )
            };
            let series = Series {
                name: a.name.clone(),
                colour: arm_colour(&a.name),
                points,
            };
            match panels.iter_mut().find(|(l, _)| *l == label) {
                Some((_, s)) => s.push(series),
                None => panels.push((label, vec![series])),
            }
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let categories: Vec<usize> = (0..steps).collect();
    category_panels(
        &dir.join("schedule.png"),
        &format!("Schedule per step (evaluation at T = {steps})"),
        "step",
        &categories,
        &panels,
        Join::Steps,
    )?;
    Ok(Some(("schedule.png".into(), "Schedule per step".into())))
}

/// The first metric against the evaluated step counts, one line per arm.
fn metric_vs_steps_plot(
    dir: &Path,
    arms: &[ArmOutcome],
) -> anyhow::Result<Option<(String, String)>> {
    let Some(metric) = arms
        .first()
        .and_then(|a| a.eval.rows.first())
        .map(|r| r.metric.clone())
    else {
        return Ok(None);
    };
    let mut counts: Vec<usize> = arms
        .iter()
        .flat_map(|a| {
            a.eval
                .rows
                .iter()
                .filter(|r| r.metric == metric)
                .map(|r| r.steps)
        })
        .collect();
    counts.sort_unstable();
    counts.dedup();
    let series: Vec<Series> = arms
        .iter()
        .map(|a| Series {
            name: a.name.clone(),
            colour: arm_colour(&a.name),
            points: a
                .eval
                .rows
                .iter()
                .filter(|r| r.metric == metric)
                .filter_map(|r| {
                    counts
                        .iter()
                        .position(|&c| c == r.steps)
                        .map(|i| (i as f64, r.value))
                })
                .collect(),
        })
        .collect();
    category_panels(
        &dir.join("accuracy_vs_steps.png"),
        &format!("{metric} vs sampling steps"),
        "steps",
        &counts,
        &[(metric.clone(), series)],
        Join::Lines,
    )?;
    Ok(Some((
        "accuracy_vs_steps.png".into(),
        format!("{metric} against steps"),
    )))
}

/// Revealed counts per step as shares of the answer.
fn share_of_answer(reveal: &[f64]) -> Vec<(f64, f64)> {
    let total: f64 = reveal
        .iter()
        .filter(|v| v.is_finite())
        .sum::<f64>()
        .max(1e-9);
    reveal
        .iter()
        .enumerate()
        .map(|(t, &v)| (t as f64, v / total))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_arm_has_its_own_colour() {
        let colours: Vec<_> = ARM_ORDER.iter().map(|a| arm_colour(a)).collect();
        for (i, c) in colours.iter().enumerate() {
            assert!(
                !colours[..i].contains(c),
                "{} repeats a colour",
                ARM_ORDER[i]
            );
        }
        assert_eq!(arm_colour("joint"), arm_colour("joint"));
    }
}
