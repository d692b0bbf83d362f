//! `cogrpo samples RUN`: the rollout dumps of a run, printed readably.

use std::fmt::Write;
use std::path::Path;

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use cogrpo_eval::dumps::{self, DumpKind, DumpRecord};

/// Print the rollouts a run dumped (dumps/<arm>.jsonl.gz): prompt,
/// completion, rewards, advantage, and with --steps every step's writes.
#[derive(Args)]
#[command(after_help = "Examples:\n  cogrpo samples runs/sudoku4-cogrpo\n  \
    cogrpo samples runs/sudoku4-cogrpo --arm alternate --iteration 100 --steps\n  \
    cogrpo samples runs/sudoku4-cogrpo --kind eval -n 4")]
pub struct SamplesArgs {
    /// The run directory (run.out_dir).
    run: PathBuf,
    #[command(flatten)]
    filter: Filter,
}

/// Which records `samples` prints.
#[derive(Args)]
struct Filter {
    /// One arm (default: every arm with dumps).
    #[arg(long)]
    arm: Option<String>,
    /// The iteration (default: the last one dumped).
    #[arg(long)]
    iteration: Option<usize>,
    /// train or eval (default: both).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Show every step's revealed positions and tokens.
    #[arg(long)]
    steps: bool,
    /// Rollouts shown per arm (the newest iteration first).
    #[arg(short = 'n', long = "limit", default_value_t = 8)]
    limit: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Train,
    Eval,
}

impl KindArg {
    fn dump_kind(self) -> DumpKind {
        match self {
            KindArg::Train => DumpKind::Train,
            KindArg::Eval => DumpKind::Eval,
        }
    }
}

impl SamplesArgs {
    pub fn run(self) -> anyhow::Result<()> {
        print(&self.run, &self.filter)
    }
}

fn print(run: &Path, f: &Filter) -> anyhow::Result<()> {
    let arms = match &f.arm {
        Some(a) => vec![a.clone()],
        None => dumps::arms(run),
    };
    if arms.is_empty() {
        bail!(
            "{} has no rollout dumps (dumps/<arm>.jsonl.gz): a run writes them at every \
             evaluation and every cogrpo.dump_every iterations",
            run.display()
        );
    }
    for arm in arms {
        let path = dumps::path(run, &arm);
        if !path.exists() {
            bail!(
                "{} does not exist; arms with dumps here: {}",
                path.display(),
                dumps::arms(run).join(", ")
            );
        }
        let records = dumps::read(&path)?;
        let chosen = choose(&records, f);
        if chosen.is_empty() {
            let its: Vec<String> = iterations(&records).iter().map(|i| i.to_string()).collect();
            println!(
                "== {arm}: no dumped rollout matches (dumped iterations: {})",
                its.join(", ")
            );
        }
        for r in chosen {
            print!("{}", show(r, f.steps));
        }
    }
    Ok(())
}

/// The records of the requested iteration (default: the last one dumped,
/// evaluation dumps before training dumps of the same iteration) and kind.
fn choose<'a>(records: &'a [DumpRecord], f: &Filter) -> Vec<&'a DumpRecord> {
    let of_kind = |r: &&DumpRecord| f.kind.is_none_or(|k| r.kind == k.dump_kind());
    let iteration = f
        .iteration
        .or_else(|| records.iter().filter(of_kind).map(|r| r.iteration).max());
    records
        .iter()
        .filter(of_kind)
        .filter(|r| Some(r.iteration) == iteration)
        .take(f.limit)
        .collect()
}

fn iterations(records: &[DumpRecord]) -> Vec<usize> {
    let mut its: Vec<usize> = records.iter().map(|r| r.iteration).collect();
    its.sort_unstable();
    its.dedup();
    its
}

/// One rollout as a few lines.
fn show(r: &DumpRecord, steps: bool) -> String {
    let kind = match r.kind {
        DumpKind::Train => "train",
        DumpKind::Eval => "eval",
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "== {} | {kind} | iteration {} | T={} | group {} rollout {}",
        r.arm, r.iteration, r.steps, r.group, r.rollout
    );
    let _ = writeln!(s, "prompt:     {}", one_line(&r.prompt));
    let _ = writeln!(s, "completion: {}", one_line(&r.completion));
    let terms: Vec<String> = r
        .rewards
        .iter()
        .map(|(k, v)| format!("{k} {}", v.map_or("-".into(), |x| format!("{x:.3}"))))
        .collect();
    let _ = writeln!(
        s,
        "reward {} ({})  advantage {}  NFE {}",
        r.reward.map_or("-".into(), |x| format!("{x:.3}")),
        terms.join(", "),
        r.advantage.map_or("-".into(), |a| format!("{a:+.3}")),
        r.nfe
    );
    if steps {
        for (t, st) in r.trajectory.iter().enumerate() {
            let writes: Vec<String> = st
                .positions
                .iter()
                .zip(&st.text)
                .map(|(p, x)| format!("@{p} {}", one_line(x)))
                .collect();
            let action: Vec<String> = st
                .schedule
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .chain(
                    (!st.schedule.contains_key("temperature"))
                        .then(|| format!("temperature {:.2}", st.temperature)),
                )
                .chain((st.guidance != 0.0).then(|| format!("guidance {:.2}", st.guidance)))
                .collect();
            let _ = writeln!(
                s,
                "  step {t}: {} revealed [{}]: {}",
                st.positions.len(),
                action.join(", "),
                writes.join(" ")
            );
        }
    }
    s
}

/// Newlines and tabs shown as escapes, so one rollout stays one line.
fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\t', "\\t")
}
