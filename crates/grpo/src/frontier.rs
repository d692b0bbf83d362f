//! The quality-per-NFE frontier: every evaluated metric against the
//! denoiser evaluations per sample, one line per arm through its evaluated
//! step counts, and one per fixed sampler evaluated beside the arms
//! (`eval.samplers`), so that "fewer steps at equal quality" is read off a
//! curve rather than a table. NFE is on a log axis (step counts double);
//! `cogrpo view` draws the same curves from `report.json`.

use std::path::Path;

use cogrpo_eval::{EvalRow, lower_is_better};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::arms::ArmOutcome;
use crate::plots::{
    Series, arm_colour, draw_err, fixed_colour, register_font, render_png, rgb, y_range,
};

/// Costs, not qualities: never a panel of the frontier.
const NOT_QUALITY: [&str; 2] = ["nfe", "wall_s"];

/// `(NFE per sample, value)` of `metric` at each evaluated step count, in
/// order of NFE.
pub fn frontier_points(rows: &[EvalRow], metric: &str) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.metric == metric && r.nfe > 0.0 && r.value.is_finite())
        .map(|r| (r.nfe, r.value))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// The curves of the frontier: each arm's rows, then each fixed sampler's
/// (by its label; the likelihood bound has no NFE and is left out).
pub fn frontier_curves<'a>(
    arms: &'a [ArmOutcome],
    fixed: &'a [EvalRow],
) -> Vec<(String, Vec<&'a EvalRow>)> {
    let mut curves: Vec<(String, Vec<&EvalRow>)> = arms
        .iter()
        .map(|a| (a.name.clone(), a.eval.rows.iter().collect()))
        .collect();
    for r in fixed.iter().filter(|r| r.sampler != "elbo") {
        match curves.iter_mut().find(|(name, _)| *name == r.sampler) {
            Some((_, rows)) => rows.push(r),
            None => curves.push((r.sampler.clone(), vec![r])),
        }
    }
    curves
}

/// One line of the frontier: an arm's or a fixed sampler's rows.
struct Curve {
    name: String,
    colour: (u8, u8, u8),
    rows: Vec<EvalRow>,
}

/// Width of the legend column beside the panels.
const LEGEND_W: u32 = 200;

/// Writes `frontier.png`: a panel per quality metric of the arms' rows, the
/// legend in a column of its own (so that it hides no point).
pub fn frontier_plot(
    dir: &Path,
    arms: &[ArmOutcome],
    fixed: &[EvalRow],
) -> anyhow::Result<Option<(String, String)>> {
    let mut metrics: Vec<String> = Vec::new();
    for r in arms.iter().flat_map(|a| &a.eval.rows) {
        if !NOT_QUALITY.contains(&r.metric.as_str()) && !metrics.contains(&r.metric) {
            metrics.push(r.metric.clone());
        }
    }
    if metrics.is_empty() {
        return Ok(None);
    }
    // Arms in their own colours, fixed samplers in theirs.
    let curves: Vec<Curve> = frontier_curves(arms, fixed)
        .into_iter()
        .enumerate()
        .map(|(i, (name, rows))| Curve {
            colour: match i.checked_sub(arms.len()) {
                None => arm_colour(&name),
                Some(k) => fixed_colour(k),
            },
            name,
            rows: rows.into_iter().cloned().collect(),
        })
        .collect();
    let panels: Vec<(String, Vec<Series>)> = metrics
        .iter()
        .map(|metric| {
            let series = curves
                .iter()
                .map(|c| Series {
                    name: c.name.clone(),
                    colour: c.colour,
                    points: frontier_points(&c.rows, metric),
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            let better = if lower_is_better(metric) {
                "lower is better"
            } else {
                "higher is better"
            };
            (format!("{metric} ({better})"), series)
        })
        .collect();
    register_font();
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let size = (cols as u32 * 480 + LEGEND_W, rows as u32 * 380 + 40);
    let path = dir.join("frontier.png");
    render_png(&path, size, |root| {
        let root = root
            .titled(
                "Quality per NFE (evaluation; one point per step count)",
                ("sans-serif", 22),
            )
            .map_err(|e| draw_err(&path)(&e))?;
        let (grid, side) = root.split_horizontally(size.0 - LEGEND_W);
        for (area, (y, series)) in grid.split_evenly((rows, cols)).iter().zip(&panels) {
            frontier_panel(area, &path, y, series)?;
        }
        let names: Vec<(&str, (u8, u8, u8))> =
            curves.iter().map(|c| (c.name.as_str(), c.colour)).collect();
        legend_column(&side, &path, &names)
    })?;
    Ok(Some((
        "frontier.png".into(),
        "Quality per NFE (the frontier)".into(),
    )))
}

/// A swatch and a name per curve, top down.
fn legend_column(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    path: &Path,
    names: &[(&str, (u8, u8, u8))],
) -> anyhow::Result<()> {
    let err = draw_err(path);
    for (i, (name, colour)) in names.iter().enumerate() {
        let y = 30 + 24 * i as i32;
        area.draw(&Rectangle::new(
            [(8, y - 6), (30, y + 6)],
            rgb(*colour).filled(),
        ))
        .map_err(|e| err(&e))?;
        area.draw(&Text::new(
            name.to_string(),
            (38, y - 8),
            ("sans-serif", 15).into_font(),
        ))
        .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// One metric's panel: NFE (log axis: drawn at log2 NFE, labelled in NFE)
/// against the metric, a line and points per curve.
fn frontier_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    path: &Path,
    y: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let err = draw_err(path);
    let log2: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            colour: s.colour,
            points: s.points.iter().map(|&(x, y)| (x.log2(), y)).collect(),
        })
        .collect();
    let xs = log2.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x0, x1) = if x0 > x1 {
        (0.0, 1.0)
    } else {
        (x0 - 0.25, x1 + 0.25)
    };
    let (y0, y1) = y_range(series);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|v: &f64| format!("{:.1}", v.exp2()))
        .x_desc("NFE per sample")
        .y_desc(y)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    for s in &log2 {
        let colour = rgb(s.colour);
        chart
            .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sampler: &str, steps: usize, metric: &str, value: f64, nfe: f64) -> EvalRow {
        EvalRow {
            sampler: sampler.into(),
            steps,
            metric: metric.into(),
            value,
            n: 10,
            nfe,
            wall_s: 0.1,
        }
    }

    #[test]
    fn points_are_ordered_by_nfe_and_curves_group_fixed_samplers_by_label() {
        let rows = vec![
            row("a", 8, "accuracy", 0.9, 14.0),
            row("a", 2, "accuracy", 0.5, 4.0),
            row("a", 2, "frechet", 30.0, 4.0),
            row("a", 4, "accuracy", f64::NAN, 7.0),
        ];
        assert_eq!(
            frontier_points(&rows, "accuracy"),
            vec![(4.0, 0.5), (14.0, 0.9)]
        );
        let fixed = vec![
            row("first_hitting", 2, "accuracy", 0.4, 2.0),
            row("elbo", 64, "nll", 3.0, 64.0),
            row("first_hitting w=1", 2, "accuracy", 0.6, 4.0),
            row("first_hitting", 4, "accuracy", 0.7, 4.0),
        ];
        let curves = frontier_curves(&[], &fixed);
        let names: Vec<&str> = curves.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["first_hitting", "first_hitting w=1"]);
        assert_eq!(curves[0].1.len(), 2);
    }

    fn arm(name: &str, rows: Vec<EvalRow>) -> ArmOutcome {
        ArmOutcome {
            name: name.into(),
            eval: crate::evaluate::ArmEval {
                rows,
                ..Default::default()
            },
            train_wall_s: 0.0,
            eval_wall_s: 0.0,
            rollouts: 0,
            history: Vec::new(),
            fixed_schedule: None,
            best: None,
            warnings: Vec::new(),
        }
    }

    /// The written PNG's size: the panel grid it holds.
    fn png_size(path: &Path) -> (u32, u32) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let info = png::Decoder::new(file).read_info().unwrap();
        (info.info().width, info.info().height)
    }

    #[test]
    fn the_plot_has_a_panel_per_quality_metric_and_none_for_costs() {
        let dir = tempfile::tempdir().unwrap();
        let fixed = vec![row("first_hitting", 2, "accuracy", 0.4, 2.0)];
        // Without arms there is no metric to plot, fixed samplers or not.
        assert!(frontier_plot(dir.path(), &[], &fixed).unwrap().is_none());
        let metrics = |names: &[&str]| -> Vec<EvalRow> {
            names
                .iter()
                .flat_map(|m| [row("x", 2, m, 0.5, 3.0), row("x", 4, m, 0.7, 6.0)])
                .collect()
        };
        let arms = [
            arm("base", metrics(&["accuracy", "frechet", "nfe"])),
            arm("joint", metrics(&["accuracy", "frechet"])),
        ];
        let (file, _) = frontier_plot(dir.path(), &arms, &fixed).unwrap().unwrap();
        assert_eq!(
            png_size(&dir.path().join(&file)),
            (2 * 480 + LEGEND_W, 380 + 40)
        );
        let arms = [arm(
            "joint",
            metrics(&[
                "accuracy",
                "frechet",
                "reward",
                "pairwise_distance",
                "wall_s",
            ]),
        )];
        frontier_plot(dir.path(), &arms, &fixed).unwrap();
        assert_eq!(
            png_size(&dir.path().join(&file)),
            (3 * 480 + LEGEND_W, 2 * 380 + 40)
        );
    }
}
