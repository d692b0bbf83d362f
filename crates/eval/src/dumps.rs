//! Rollout and evaluation dumps: what the policy generated, step by step.
//!
//! One file per arm, `<run>/dumps/<arm>.jsonl.gz`: gzip-compressed JSON
//! lines, one [`DumpRecord`] per rollout. Each write appends one gzip member
//! (a multi-member gzip file is still one gzip file: Python's `gzip.open`
//! and `pandas.read_json(path, lines=True)` read it whole), so a long run
//! never rewrites what it wrote. Training dumps come every
//! `cogrpo.dump_every` iterations (`cogrpo.dump_groups` whole groups each),
//! evaluation dumps at every evaluation of the arm (the first
//! `dump_groups x group_size` test examples at each step count).
//!
//! ```text
//! python3 -c "import gzip, json; r = [json.loads(l) for l in gzip.open('runs/X/dumps/alternate.jsonl.gz')]; print(r[0]['completion'])"
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use envs::{Task, Trajectory};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use policy::learned::Component;
use rewards::{Outcome, RewardItem, ScoredBatch};
use serde::{Deserialize, Serialize};

/// Where a rollout came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpKind {
    /// A training rollout: sampled, scored, with its group advantage.
    Train,
    /// An evaluation rollout: the arm acting in mode on a test example.
    Eval,
}

/// One rollout: its prompt, its completion, how it unfolded, how it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpRecord {
    pub kind: DumpKind,
    pub arm: String,
    /// The training iteration (1-based) it was sampled at; for evaluation
    /// rollouts, the iterations the arm had trained (0 for `base`).
    pub iteration: usize,
    /// `T`, the episode's step count.
    pub steps: usize,
    /// The prompt's group within the iteration (evaluation: the test
    /// example's index) and the rollout within its group.
    pub group: usize,
    pub rollout: usize,
    pub prompt: String,
    pub completion: String,
    /// Answer positions, the canvas the trajectory fills in.
    pub answer_len: usize,
    /// The total reward after costs (`None` when a reward failed on it).
    pub reward: Option<f64>,
    /// Per reward term or verifier; `None` where it failed or does not apply.
    pub rewards: BTreeMap<String, Option<f64>>,
    /// The group-relative advantage (training only).
    pub advantage: Option<f64>,
    /// Network evaluations the rollout cost.
    pub nfe: u32,
    /// `[width, height]` when the answer is an image (pixels row-major).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<[usize; 2]>,
    /// `[columns, rows]` when the answer is a grid of cells (Sudoku).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<[usize; 2]>,
    pub trajectory: Vec<DumpStep>,
}

/// One step of a dumped trajectory: the schedule action and what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpStep {
    /// Answer positions revealed, in the order chosen (0 = first answer
    /// position).
    pub positions: Vec<usize>,
    /// The token ids written there, and each as text.
    pub tokens: Vec<u32>,
    pub text: Vec<String>,
    /// Image tasks: each written pixel's intensity in [0, 1].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shade: Vec<f32>,
    pub temperature: f64,
    pub guidance: f64,
    /// The learned schedule components' values where the policy acted
    /// (`ratio`, `temperature`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedule: BTreeMap<String, f64>,
}

/// One rollout's scores and cost, as the caller knows them.
pub struct Scored {
    pub reward: Option<f64>,
    pub rewards: BTreeMap<String, Option<f64>>,
    pub advantage: Option<f64>,
    pub nfe: u32,
}

/// Where the rollout sits: arm, kind, iteration, step count, group size.
pub struct Origin<'a> {
    pub kind: DumpKind,
    pub arm: &'a str,
    pub iteration: usize,
    pub steps: usize,
    /// Rollouts per group (1 for evaluation).
    pub group_size: usize,
}

/// The record of trajectory `index` of a batch (groups of
/// `origin.group_size` consecutive rows).
pub fn record(
    task: &dyn Task,
    origin: &Origin<'_>,
    index: usize,
    trajectory: &Trajectory,
    item: &RewardItem,
    components: &[Component],
    scored: Scored,
) -> DumpRecord {
    let answer_len = trajectory.final_tokens.len() - trajectory.prompt_len;
    let image = task
        .answer_image(trajectory.answer())
        .map(|im| [im.width, im.height]);
    let mut answer: Vec<u32> = trajectory.steps.first().map_or_else(
        || trajectory.answer().to_vec(),
        |s| s.canvas[s.prompt_len..].to_vec(),
    );
    let steps = trajectory
        .steps
        .iter()
        .map(|s| {
            let positions: Vec<usize> = s.revealed.iter().map(|&p| p - s.prompt_len).collect();
            for (&p, &tok) in positions.iter().zip(&s.tokens) {
                answer[p] = tok;
            }
            let shade = match task.answer_image(&answer) {
                Some(im) if image.is_some() => positions.iter().map(|&p| im.pixels[p]).collect(),
                _ => Vec::new(),
            };
            DumpStep {
                text: s
                    .tokens
                    .iter()
                    .map(|&t| task.vocab().decode(&[t]))
                    .collect(),
                positions,
                tokens: s.tokens.clone(),
                shade,
                temperature: s.temperature,
                guidance: s.guidance,
                schedule: components
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| s.acted.get(*j).copied().unwrap_or(false))
                    .map(|(j, c)| (c.name().to_string(), c.map(s.schedule_raw[j])))
                    .collect(),
            }
        })
        .collect();
    DumpRecord {
        kind: origin.kind,
        arm: origin.arm.to_string(),
        iteration: origin.iteration,
        steps: origin.steps,
        group: index / origin.group_size.max(1),
        rollout: index % origin.group_size.max(1),
        prompt: item.prompt.clone(),
        completion: item.completion.clone(),
        answer_len,
        reward: scored.reward,
        rewards: scored.rewards,
        advantage: scored.advantage,
        nfe: scored.nfe,
        image,
        grid: task.answer_grid(),
        trajectory: steps,
    }
}

/// Item `i`'s score from each reward term of a scored batch.
pub fn term_scores(scored: &ScoredBatch, i: usize) -> BTreeMap<String, Option<f64>> {
    scored
        .names
        .iter()
        .zip(&scored.outcomes)
        .map(|(name, o)| {
            let score = match o[i] {
                Outcome::Score(x) => Some(f64::from(x)),
                _ => None,
            };
            (name.clone(), score)
        })
        .collect()
}

/// Rollouts as a Markdown table (TensorBoard text): prompt, completion,
/// reward and advantage.
pub fn markdown(records: &[DumpRecord]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', "↵");
    let num = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut s = String::from(
        "| group | rollout | prompt | completion | reward | advantage |\n|---|---|---|---|---|---|\n",
    );
    for r in records {
        s.push_str(&format!(
            "| {} | {} | `{}` | `{}` | {} | {} |\n",
            r.group,
            r.rollout,
            cell(&r.prompt),
            cell(&r.completion),
            num(r.reward),
            num(r.advantage)
        ));
    }
    s
}

/// The dump file of one arm in a run directory.
pub fn path(run: &Path, arm: &str) -> PathBuf {
    run.join("dumps").join(format!("{arm}.jsonl.gz"))
}

/// Appends `records` to `path` as one gzip member.
pub fn append(path: &Path, records: &[DumpRecord]) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut bytes = Vec::new();
    {
        let mut gz = GzEncoder::new(&mut bytes, Compression::default());
        for r in records {
            serde_json::to_writer(&mut gz, r)?;
            gz.write_all(b"\n")?;
        }
        gz.finish()?;
    }
    // One write of a whole member: a crash leaves the file's earlier
    // members whole.
    let mut file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot append to {}", path.display()))?;
    file.write_all(&bytes)
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// Every record of a dump file, in the order written. A file cut short (a
/// crash mid-write) yields the whole records before the cut.
pub fn read(path: &Path) -> anyhow::Result<Vec<DumpRecord>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(MultiGzDecoder::new(file))
        .lines()
        .enumerate()
    {
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let record = serde_json::from_str(&line).with_context(|| {
            format!("{}: record {} is not a dump record", path.display(), n + 1)
        })?;
        out.push(record);
    }
    Ok(out)
}

/// Keeps only the records `keep` accepts (atomically rewritten): a resumed
/// arm drops what the interrupted run dumped past its checkpoint, and an
/// arm evaluated again drops its earlier evaluation.
pub fn retain(path: &Path, keep: impl Fn(&DumpRecord) -> bool) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let records = read(path)?;
    if records.iter().all(&keep) {
        return Ok(());
    }
    let kept: Vec<DumpRecord> = records.into_iter().filter(|r| keep(r)).collect();
    let tmp = path.with_extension("gz.tmp");
    let _ = std::fs::remove_file(&tmp);
    append(&tmp, &kept)?;
    if kept.is_empty() {
        File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// The arms with a dump file under `run`, sorted.
pub fn arms(run: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(run.join("dumps"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl.gz"))
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: DumpKind, iteration: usize, rollout: usize) -> DumpRecord {
        DumpRecord {
            kind,
            arm: "joint".into(),
            iteration,
            steps: 2,
            group: 0,
            rollout,
            prompt: "1 2".into(),
            completion: "3".into(),
            answer_len: 1,
            reward: Some(0.5),
            rewards: BTreeMap::from([
                ("exact_match".to_string(), Some(1.0)),
                ("judge".into(), None),
            ]),
            advantage: Some(-0.25),
            nfe: 2,
            image: None,
            grid: None,
            trajectory: vec![DumpStep {
                positions: vec![0],
                tokens: vec![7],
                text: vec!["3".into()],
                shade: Vec::new(),
                temperature: 1.0,
                guidance: 0.0,
                schedule: BTreeMap::from([("ratio".to_string(), 0.5)]),
            }],
        }
    }

    #[test]
    fn appended_members_read_back_in_order_and_retain_filters() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "joint");
        append(
            &p,
            &[rec(DumpKind::Train, 1, 0), rec(DumpKind::Train, 1, 1)],
        )
        .unwrap();
        append(&p, &[rec(DumpKind::Train, 2, 0)]).unwrap();
        append(&p, &[rec(DumpKind::Eval, 2, 0)]).unwrap();
        let all = read(&p).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], rec(DumpKind::Train, 1, 0));
        assert_eq!((all[2].iteration, all[3].kind), (2, DumpKind::Eval));
        retain(&p, |r| r.kind == DumpKind::Train && r.iteration <= 1).unwrap();
        assert_eq!(read(&p).unwrap().len(), 2);
        assert_eq!(arms(dir.path()), vec!["joint".to_string()]);
    }

    #[test]
    fn a_file_cut_mid_member_keeps_the_whole_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "model");
        append(&p, &[rec(DumpKind::Train, 1, 0)]).unwrap();
        let whole = std::fs::metadata(&p).unwrap().len();
        append(
            &p,
            &(0..50)
                .map(|i| rec(DumpKind::Train, 2, i))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let file = File::options().write(true).open(&p).unwrap();
        file.set_len(whole + 30).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back, vec![rec(DumpKind::Train, 1, 0)]);
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl.gz");
        let mut gz = GzEncoder::new(File::create(&p).unwrap(), Compression::default());
        gz.write_all(b"{\"kind\": \"train\"}\n").unwrap();
        gz.finish().unwrap();
        let e = format!("{:#}", read(&p).unwrap_err());
        assert!(e.contains("x.jsonl.gz: record 1"), "{e}");
    }
}
