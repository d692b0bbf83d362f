//! TensorBoard event files read back, so that a resumed run's curves hold
//! every step once: what earlier segments logged past the checkpoint the
//! run resumes from is dropped from their files (the resumed run logs it
//! again), and a record a killed writer left half-written is cut off.
//!
//! The framing is TensorFlow's TFRecord: a little-endian u64 length, its
//! masked CRC-32C, the data, the data's masked CRC-32C.

use std::collections::HashSet;
use std::path::Path;

use protobuf::Message;
use tensorboard_proto::event::Event;
use tensorboard_rs::masked_crc32c::masked_crc32c;

/// One framed record of an event file: its bytes in the file and the
/// event's step and first tag (none for the file-version header).
struct Record<'a> {
    framed: &'a [u8],
    step: i64,
    tag: Option<String>,
    header: bool,
}

/// The whole records of `bytes`, in order, stopping at the first that is
/// torn or fails its checksums (a killed writer's last write).
fn records(bytes: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + 12) {
        let len_bytes: [u8; 8] = head[..8].try_into().unwrap_or_default();
        let len = u64::from_le_bytes(len_bytes);
        let len_crc = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        if masked_crc32c(&len_bytes) != len_crc || len > (bytes.len() - at) as u64 {
            break;
        }
        let end = at + 12 + len as usize;
        let (Some(data), Some(crc)) = (bytes.get(at + 12..end), bytes.get(end..end + 4)) else {
            break;
        };
        if masked_crc32c(data).to_le_bytes() != crc {
            break;
        }
        let Ok(event) = Event::parse_from_bytes(data) else {
            break;
        };
        let tag = event
            .get_summary()
            .get_value()
            .first()
            .map(|v| v.get_tag().to_string());
        out.push(Record {
            framed: &bytes[at..end + 4],
            step: event.get_step(),
            tag,
            header: event.has_file_version(),
        });
        at = end + 4;
    }
    out
}

/// Cuts every event file in `dir` but `own` back to the events at steps up
/// to `step` (file headers kept; a torn tail dropped), rewriting a file
/// only when something goes. Returns the tags those files hold at `step`
/// itself, which the resumed run must not log again, and how many events
/// went.
pub fn retain_through(
    dir: &Path,
    own: &Path,
    step: i64,
) -> std::io::Result<(HashSet<String>, usize)> {
    let (mut at_step, mut dropped) = (HashSet::new(), 0);
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_events = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("events.out.tfevents."));
        if !is_events || path == own || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let all = records(&bytes);
        let whole: usize = all.iter().map(|r| r.framed.len()).sum();
        let kept: Vec<&Record> = all.iter().filter(|r| r.header || r.step <= step).collect();
        at_step.extend(
            kept.iter()
                .filter(|r| r.step == step)
                .filter_map(|r| r.tag.clone()),
        );
        dropped += all.len() - kept.len();
        if kept.len() < all.len() || whole < bytes.len() {
            let out: Vec<u8> = kept.iter().flat_map(|r| r.framed.iter().copied()).collect();
            mdm::atomic::write(&path, &out)?;
        }
    }
    Ok((at_step, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Scalars;

    fn steps_of(dir: &Path) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            for r in records(&bytes) {
                if let Some(tag) = r.tag {
                    out.push((tag, r.step));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn later_steps_and_a_torn_tail_are_cut_and_tags_at_the_step_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Scalars::open(dir.path()).unwrap();
        for step in 1..=5 {
            log.scalar("loss", step as f64, step);
        }
        log.text("config", "x", 3);
        log.close();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        // A killed writer's half record.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        std::fs::write(&file, &bytes).unwrap();

        let own = dir.path().join("events.out.tfevents.own");
        let (tags, dropped) = retain_through(dir.path(), &own, 3).unwrap();
        assert_eq!(dropped, 2, "loss at 4 and 5");
        assert_eq!(
            tags,
            HashSet::from(["loss".to_string(), "config".to_string()])
        );
        let expected: Vec<(String, i64)> = [("config", 3), ("loss", 1), ("loss", 2), ("loss", 3)]
            .iter()
            .map(|(t, s)| (t.to_string(), *s))
            .collect();
        assert_eq!(steps_of(dir.path()), expected);
        // The header survives: the file still opens as an event file.
        let bytes = std::fs::read(&file).unwrap();
        assert!(records(&bytes)[0].header);
        assert_eq!(
            records(&bytes)
                .iter()
                .map(|r| r.framed.len())
                .sum::<usize>(),
            bytes.len()
        );
        // A fresh start (step -1) keeps the headers alone.
        assert_eq!(retain_through(dir.path(), &own, -1).unwrap().1, 4);
        assert!(steps_of(dir.path()).is_empty());
    }
}
