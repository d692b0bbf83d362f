//! TensorBoard scalars and terminal progress.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tensorboard_rs::summary_writer::SummaryWriter;

/// TensorBoard scalar log. Events are written by a background thread;
/// [`Scalars::close`] (or drop) waits until everything is on disk.
pub struct Scalars {
    writer: Option<SummaryWriter>,
}

impl Scalars {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // tensorboard-rs panics in its writer thread when it cannot create the
        // file; check that the folder is writable first.
        let probe = dir.join(format!(".write-test-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .with_context(|| format!("cannot write into {}", dir.display()))?;
        std::fs::remove_file(&probe).ok();
        Ok(Self {
            writer: Some(SummaryWriter::new(dir)),
        })
    }

    /// A log that records nothing (for tests and benchmarks).
    pub fn disabled() -> Self {
        Self { writer: None }
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        if let Some(w) = self.writer.as_mut() {
            w.add_scalar(tag, value as f32, step);
        }
    }

    /// Flushes and waits for the writer thread.
    pub fn close(&mut self) {
        if let Some(mut w) = self.writer.take() {
            w.flush();
        }
    }
}

impl Drop for Scalars {
    fn drop(&mut self) {
        self.close();
    }
}

/// A progress bar on an interactive terminal; plain log lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(len: u64, what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar) }
    }

    pub fn set_position(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn set_message(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    /// A line that stays in the terminal's scroll-back (and in logs).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
