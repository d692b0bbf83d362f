//! TensorBoard scalars and text, and terminal progress.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use protobuf::Message;
use protobuf::well_known_types::Value as PbValue;
use tensorboard_proto::event::Event;
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionStartInfo};
use tensorboard_proto::plugin_text::TextPluginData;
use tensorboard_proto::summary::{
    Summary, Summary_Value, SummaryMetadata, SummaryMetadata_PluginData,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::TensorShapeProto;
use tensorboard_proto::types::DataType;
use tensorboard_rs::record_writer::RecordWriter;

/// TensorBoard scalar log: one event file, written on the calling thread
/// with tensorboard-rs's record framing. A write that fails (a full disk, a
/// removed folder) ends the logging with one warning and never the run:
/// TensorBoard is a view of the training, not part of it.
pub struct Scalars {
    writer: Option<RecordWriter<BufWriter<Box<dyn Write + Send>>>>,
    /// Where the events go, for the warning.
    path: String,
    /// A resumed run's checkpoint step and the tags earlier segments hold
    /// there: nothing below it is written again, nor those tags at it.
    resumed: Option<(i64, HashSet<String>)>,
}

impl Scalars {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let host = sysinfo::System::host_name().unwrap_or_else(|| "host".into());
        let path = dir.join(format!(
            "events.out.tfevents.{:010}.{host}.{}.0",
            now.as_secs(),
            std::process::id()
        ));
        let file =
            File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut log = Self::to_sink(Box::new(file), path.display().to_string());
        // The header event TensorBoard expects first.
        let mut header = Event::new();
        header.set_wall_time(now.as_secs_f64());
        header.set_file_version("brain.Event:2".into());
        log.write_event(&header);
        Ok(log)
    }

    /// A log into any writer (`path` names it in the warning).
    fn to_sink(sink: Box<dyn Write + Send>, path: String) -> Self {
        Self {
            writer: Some(RecordWriter::new(BufWriter::new(sink))),
            path,
            resumed: None,
        }
    }

    /// The log of rank 0 in `dir`; the other ranks of a distributed run
    /// record nothing (they compute what rank 0 logs).
    pub fn for_rank(dir: &Path, world: &crate::distributed::World) -> anyhow::Result<Self> {
        match world.is_writer() {
            true => Self::open(dir),
            false => Ok(Self::disabled()),
        }
    }

    /// A log that records nothing (for tests and benchmarks).
    pub fn disabled() -> Self {
        Self {
            writer: None,
            path: String::new(),
            resumed: None,
        }
    }

    /// A training run starting at `step`: resumed from its checkpoint
    /// there, or fresh (0). The events of earlier segments past `step` are
    /// dropped from their files (this run logs those steps again; a fresh
    /// start drops all an unfinished earlier run logged), and what they
    /// hold at or below `step` is not logged twice, so the curves have
    /// every step once. Events are flushed at every checkpoint
    /// ([`Scalars::flush`]), so all up to `step` are there.
    pub fn start_at(&mut self, step: usize) {
        if self.writer.is_none() {
            return;
        }
        let own = std::path::PathBuf::from(&self.path);
        let Some(dir) = own.parent() else {
            return;
        };
        let through = if step == 0 { -1 } else { step as i64 };
        match crate::event_files::retain_through(dir, &own, through) {
            Ok((tags, dropped)) => {
                if dropped > 0 && step > 0 {
                    tracing::info!(
                        "TensorBoard: dropped {dropped} events past step {step} that an earlier, \
                         interrupted segment logged in {}",
                        dir.display()
                    );
                } else if dropped > 0 {
                    tracing::info!(
                        "TensorBoard: replaced {dropped} events an earlier run logged in {}",
                        dir.display()
                    );
                }
                if step > 0 {
                    self.resumed = Some((step as i64, tags));
                }
            }
            Err(e) => tracing::warn!(
                "TensorBoard: cannot drop the events past step {step} from the earlier files in \
                 {}: {e}; the curves may show those steps twice",
                dir.display()
            ),
        }
    }

    /// Whether `event` is already in an earlier segment's file.
    fn logged_before(&self, event: &Event) -> bool {
        let Some((step, tags)) = &self.resumed else {
            return false;
        };
        let tag = event.get_summary().get_value().first().map(|v| v.get_tag());
        event.get_step() < *step
            || (event.get_step() == *step && tag.is_some_and(|t| tags.contains(t)))
    }

    /// Pushes what is buffered to the file (at every checkpoint: a run
    /// killed after it finds all events up to the checkpoint on disk).
    pub fn flush(&mut self) {
        if let Some(Err(e)) = self.writer.as_mut().map(RecordWriter::flush) {
            self.give_up(&e);
        }
    }

    /// Whether events are still being written.
    pub fn is_writing(&self) -> bool {
        self.writer.is_some()
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        if self.writer.is_none() {
            return;
        }
        let mut event = Event::new();
        event.set_wall_time(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        event.set_step(step as i64);
        event.set_summary(tensorboard_rs::summary::scalar(tag, value as f32));
        self.write_event(&event);
    }

    /// A text record (TensorBoard's Text tab renders it as Markdown).
    /// tensorboard-rs writes no text summaries: this is the record
    /// TensorBoard's own `summary.text` writes, a scalar string tensor
    /// tagged for the `text` plugin.
    pub fn text(&mut self, tag: &str, markdown: &str, step: usize) {
        if self.writer.is_none() {
            return;
        }
        let mut content = TextPluginData::new();
        content.version = 0;
        let mut tensor = TensorProto::new();
        tensor.set_dtype(DataType::DT_STRING);
        tensor.set_string_val(vec![markdown.as_bytes().to_vec()].into());
        self.plugin_record(tag, "text", content.write_to_bytes(), tensor, step);
    }

    /// The run's hyperparameters for TensorBoard's HParams tab: every
    /// number, boolean and string leaf of `config` under its dotted key
    /// (`cogrpo.lr_model`). tensorboard-rs writes no hparams records: this
    /// is the `session_start_info` record of TensorBoard's
    /// `hparams.summary_v2.hparams`.
    pub fn hparams(&mut self, config: &toml::Value) {
        if self.writer.is_none() {
            return;
        }
        let mut info = SessionStartInfo::new();
        flatten_hparams("", config, info.mut_hparams());
        info.set_start_time_secs(now_s());
        let mut data = HParamsPluginData::new();
        data.set_version(0);
        data.set_session_start_info(info);
        let mut tensor = TensorProto::new();
        tensor.set_dtype(DataType::DT_FLOAT);
        tensor.set_float_val(vec![0.0]);
        let tag = "_hparams_/session_start_info";
        self.plugin_record(tag, "hparams", data.write_to_bytes(), tensor, 0);
    }

    /// One summary value read by a TensorBoard plugin: the plugin's name
    /// and serialized data in the metadata, a scalar-shaped tensor.
    fn plugin_record(
        &mut self,
        tag: &str,
        plugin_name: &str,
        content: protobuf::ProtobufResult<Vec<u8>>,
        mut tensor: TensorProto,
        step: usize,
    ) {
        let mut plugin = SummaryMetadata_PluginData::new();
        plugin.set_plugin_name(plugin_name.into());
        plugin.set_content(content.unwrap_or_default());
        let mut meta = SummaryMetadata::new();
        meta.set_plugin_data(plugin);
        tensor.set_tensor_shape(TensorShapeProto::new());
        let mut value = Summary_Value::new();
        value.set_tag(tag.into());
        value.set_metadata(meta);
        value.set_tensor(tensor);
        let mut summary = Summary::new();
        summary.set_value(vec![value].into());
        let mut event = Event::new();
        event.set_wall_time(now_s());
        event.set_step(step as i64);
        event.set_summary(summary);
        self.write_event(&event);
    }

    fn write_event(&mut self, event: &Event) {
        if self.logged_before(event) {
            return;
        }
        let written = event
            .write_to_bytes()
            .map_err(std::io::Error::other)
            .and_then(|bytes| match self.writer.as_mut() {
                Some(w) => w.write(&bytes),
                None => Ok(()),
            });
        if let Err(e) = written {
            self.give_up(&e);
        }
    }

    fn give_up(&mut self, e: &std::io::Error) {
        self.writer = None;
        tracing::warn!(
            "TensorBoard logging stopped: cannot write {}: {e}; training goes on",
            self.path
        );
    }

    /// Flushes what is buffered to disk.
    pub fn close(&mut self) {
        self.flush();
        self.writer = None;
    }
}

impl Drop for Scalars {
    fn drop(&mut self) {
        self.close();
    }
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The scalar leaves of a TOML tree as HParams values (arrays and tables
/// recurse; arrays are shown as their TOML text).
fn flatten_hparams(prefix: &str, v: &toml::Value, out: &mut HashMap<String, PbValue>) {
    let mut leaf = PbValue::new();
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_hparams(&key, child, out);
            }
            return;
        }
        toml::Value::Integer(i) => leaf.set_number_value(*i as f64),
        toml::Value::Float(f) => leaf.set_number_value(*f),
        toml::Value::Boolean(b) => leaf.set_bool_value(*b),
        toml::Value::String(s) => leaf.set_string_value(s.clone()),
        other => leaf.set_string_value(other.to_string()),
    }
    out.insert(prefix.to_string(), leaf);
}

/// A progress bar on an interactive terminal; plain log lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Prints nothing (a rank other than 0).
    quiet: bool,
}

impl Progress {
    pub fn new(len: u64, what: &str) -> Self {
        if !std::io::stderr().is_terminal() || !tracing::enabled!(tracing::Level::INFO) {
            return Self {
                bar: None,
                quiet: false,
            };
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
        Self {
            bar: Some(bar),
            quiet: false,
        }
    }

    /// A progress bar on rank 0 only: the other ranks of a distributed run
    /// do the same steps and stay quiet.
    pub fn for_rank(len: u64, what: &str, world: &crate::distributed::World) -> Self {
        match world.is_writer() {
            true => Self::new(len, what),
            false => Self {
                bar: None,
                quiet: true,
            },
        }
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
            None if self.quiet => {}
            None => tracing::info!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_stops_the_logging_without_a_panic() {
        // Linux's /dev/full fails every write with ENOSPC.
        let full = File::options().write(true).open("/dev/full").unwrap();
        let mut log = Scalars::to_sink(Box::new(full), "/dev/full".into());
        // Buffered: the failure shows when the buffer (8 KiB) spills.
        for step in 0..10_000 {
            log.scalar("loss", 1.0, step);
        }
        assert!(!log.is_writing());
        log.close();
    }

    #[test]
    fn events_are_framed_records_tensorboard_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Scalars::open(dir.path()).unwrap();
        log.scalar("loss", 0.5, 3);
        log.close();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let bytes = std::fs::read(file).unwrap();
        // Two records (header, scalar): u64 length, u32 crc, data, u32 crc.
        let mut at = 0;
        let mut events = Vec::new();
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            events.push(Event::parse_from_bytes(&bytes[at + 12..at + 12 + len]).unwrap());
            at += 12 + len + 4;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].get_file_version(), "brain.Event:2");
        let value = &events[1].get_summary().get_value()[0];
        assert_eq!(
            (
                value.get_tag(),
                value.get_simple_value(),
                events[1].get_step()
            ),
            ("loss", 0.5, 3)
        );
    }
}
