//! `cogrpo view RUN`: one self-contained HTML page of a run (no server, no
//! network): per arm the evaluation table, the quality-per-NFE frontier,
//! the training curves (smoothed as TensorBoard does) and validation
//! curves, the schedule followed per step, and a step-by-step replay of the
//! dumped trajectories, groups side by side (images as images, grids as
//! grids). `--serve` also serves it on
//! 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use cogrpo_eval::dumps;
use cogrpo_grpo::plots::{ARM_ORDER, arm_colour, fixed_colour};
use cogrpo_grpo::state::read_arm_state;
use cogrpo_runtime::checkpoint::CheckpointDir;
use cogrpo_runtime::files::write_atomic;
use serde_json::{Value, json};

/// The page's script and layout; the run's data goes where `__DATA__` is.
const TEMPLATE: &str = include_str!("view.html");

/// Write a run's viewer: one self-contained HTML page (evaluation,
/// training curves, schedule per step, trajectory replay).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  cogrpo view runs/sudoku4-cogrpo            # writes runs/sudoku4-cogrpo/view.html\n  \
    cogrpo view runs/sudoku4-cogrpo --serve    # and serves it on 127.0.0.1:8080"
)]
pub struct ViewArgs {
    /// The run directory (run.out_dir).
    run: PathBuf,
    /// Where to write the page (default: RUN/view.html).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also serve the page on 127.0.0.1 until interrupted.
    #[arg(long)]
    serve: bool,
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

impl ViewArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let page = write(&self.run, self.out)?;
        println!("{}", page.display());
        if self.serve {
            serve(&page, self.port)?;
        }
        Ok(())
    }
}

/// Writes the page to `out` (default `RUN/view.html`); returns its path.
fn write(run: &Path, out: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let data = collect(run)?;
    let out = out.unwrap_or_else(|| run.join("view.html"));
    write_atomic(&out, page(&data)?.as_bytes())?;
    Ok(out)
}

/// Everything the page shows, as one JSON value.
fn collect(run: &Path) -> anyhow::Result<Value> {
    if !run.is_dir() {
        bail!("{} is not a run directory", run.display());
    }
    let report: Value = match std::fs::read_to_string(run.join("report.json")) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", run.join("report.json").display()))?,
        Err(_) => Value::Null,
    };
    let mut names: Vec<String> = dumps::arms(run);
    if let Some(arms) = report["arms"].as_object() {
        names.extend(arms.keys().cloned());
    }
    for entry in std::fs::read_dir(run.join("arms"))
        .into_iter()
        .flatten()
        .flatten()
    {
        names.extend(entry.file_name().to_str().map(str::to_string));
    }
    names.sort_by_key(|n| {
        (
            ARM_ORDER.iter().position(|a| a == n).unwrap_or(usize::MAX),
            n.clone(),
        )
    });
    names.dedup();
    let mut arms = Vec::new();
    for name in names {
        let ckpts = CheckpointDir::new(run.join("arms").join(&name).join("checkpoints"));
        let history = match ckpts.latest().map(|d| read_arm_state(&d)) {
            Some(Ok(state)) => serde_json::to_value(&state.history)?,
            _ => json!([]),
        };
        let path = dumps::path(run, &name);
        let records = if path.exists() {
            dumps::read(&path)?
        } else {
            Vec::new()
        };
        arms.push(json!({
            "colour": hex(arm_colour(&name)),
            "name": name,
            "history": history,
            "dumps": records,
        }));
    }
    // The fixed samplers evaluated beside the arms, coloured as the report's
    // frontier colours them.
    let mut fixed_colours = serde_json::Map::new();
    for r in report["fixed_samplers"].as_array().into_iter().flatten() {
        let label = r["sampler"].as_str().filter(|l| *l != "elbo");
        if let Some(label) = label.filter(|l| !fixed_colours.contains_key(*l)) {
            let colour = hex(fixed_colour(fixed_colours.len()));
            fixed_colours.insert(label.into(), json!(colour));
        }
    }
    let name = run.file_name().map_or_else(
        || run.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(json!({"run": name, "report": report, "arms": arms, "fixed_colours": fixed_colours}))
}

/// A plot colour as CSS.
fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The template with the data in place. `</` is escaped so that no string
/// in the data can end the script element.
fn page(data: &Value) -> anyhow::Result<String> {
    let json = serde_json::to_string(data)?.replace("</", "<\\/");
    Ok(TEMPLATE.replacen("__DATA__", &json, 1))
}

/// Serves the page at `http://127.0.0.1:PORT/` until interrupted.
fn serve(page_path: &Path, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    tracing::info!(
        "serving {} at http://127.0.0.1:{}/ (Ctrl-C stops)",
        page_path.display(),
        listener.local_addr()?.port()
    );
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let body = std::fs::read(page_path)
            .with_context(|| format!("cannot read {}", page_path.display()))?;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&body));
    }
    Ok(())
}
