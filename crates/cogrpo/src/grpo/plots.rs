//! The report's PNG plots: reward curves, the learned schedule per step, and
//! accuracy against the number of steps.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::arms::ArmOutcome;
use super::state::IterationLog;

const SIZE: (u32, u32) = (900, 540);

fn register_font() {
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

/// One named line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` into `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x: &str,
    y: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    register_font();
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(a, b) in pts {
        x0 = x0.min(a);
        x1 = x1.max(a);
        y0 = y0.min(b);
        y1 = y1.max(b);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    // Every x here is a whole number (iteration, step, step count).
    let ticks = ((x1 - x0).round() as usize + 1).clamp(2, 11);
    let whole = |v: &f64| {
        if (v - v.round()).abs() < 1e-6 {
            format!("{v:.0}")
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(ticks)
        .x_label_formatter(&whole)
        .x_desc(x)
        .y_desc(y)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        if points.len() <= 40 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
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
    // The schedule followed at the training step count, per arm and component.
    let mut schedule = Vec::new();
    for a in arms {
        let Some((_, per)) = a.eval.schedule.iter().next() else {
            continue;
        };
        for (name, values) in per {
            if name == "reveal" || name == "position" || values.iter().all(|v| v.is_nan()) {
                continue;
            }
            schedule.push(Series {
                name: format!("{} {name}", a.name),
                points: values
                    .iter()
                    .enumerate()
                    .map(|(t, &v)| (t as f64, v))
                    .collect(),
            });
        }
        if let Some(reveal) = per.get("reveal") {
            schedule.push(Series {
                name: format!("{} reveal share", a.name),
                points: share_of_answer(reveal),
            });
        }
    }
    if !schedule.is_empty() {
        line_chart(
            &dir.join("schedule.png"),
            "Schedule per step (evaluation)",
            "step",
            "value",
            &schedule,
        )?;
        out.push(("schedule.png".into(), "Schedule per step".into()));
    }
    // Accuracy against steps: the first metric.
    if let Some(metric) = arms
        .first()
        .and_then(|a| a.eval.rows.first())
        .map(|r| r.metric.clone())
    {
        let acc: Vec<Series> = arms
            .iter()
            .map(|a| Series {
                name: a.name.clone(),
                points: a
                    .eval
                    .rows
                    .iter()
                    .filter(|r| r.metric == metric)
                    .map(|r| (r.steps as f64, r.value))
                    .collect(),
            })
            .collect();
        line_chart(
            &dir.join("accuracy_vs_steps.png"),
            &format!("{metric} vs sampling steps"),
            "steps",
            &metric,
            &acc,
        )?;
        out.push((
            "accuracy_vs_steps.png".into(),
            format!("{metric} against steps"),
        ));
    }
    Ok(out)
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
