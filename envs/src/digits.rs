//! Class-conditional 8x8 digit images: the CPU-sized stand-in for the
//! text-to-image setting of Co-GRPO (Zhou et al. 2025; Meissonic generates
//! image tokens from a text prompt, here from a class).
//!
//! Data: the UCI handwritten digits (`data/digits/`, 1797 images, 17 gray
//! levels). Layout: one prompt token (the class, `<0>`..`<9>`) followed by
//! 64 answer tokens, the pixels row by row, one token per gray level
//! (`0`..`L-1`; `levels = 17` keeps the data as stored, fewer re-quantizes
//! with `round(v * (L - 1) / 16)`).
//!
//! Splits are fixed per class by `data_seed`, so every class keeps its share
//! in each: `train` (the generator and the reward models learn only from
//! it), `validation` (tuning fixed schedules), `heldout` (the evaluation
//! classifier and the reference statistics). `test_examples` is `heldout`,
//! interleaved by class so that any prefix (`eval.max_examples`) is
//! balanced.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use serde_json::json;

use crate::error::TaskError;
use crate::image::GrayImage;
use crate::seeding::{purpose, stream};
use crate::task::{Example, Layout, Task};
use crate::vocab::Vocab;

/// The data file, relative to the data directory.
pub const DATA_FILE: &str = "digits/digits.csv.gz";
/// Image side; an image is `SIDE * SIDE` tokens.
pub const SIDE: usize = 8;
pub const PIXELS: usize = SIDE * SIDE;
pub const CLASSES: usize = 10;
/// Gray levels as stored (0..=16).
pub const STORED_LEVELS: usize = 17;
/// Shares of each class in `train` and `validation`; `heldout` is the rest.
pub const TRAIN_SHARE: f64 = 0.5;
pub const VALIDATION_SHARE: f64 = 0.1;

/// One image as stored: 64 gray values in 0..=16 and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Row of the data file (0-based), a stable identifier.
    pub row: usize,
    pub pixels: [u8; PIXELS],
    pub class: u8,
}

/// The three disjoint parts of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSplit {
    Train,
    Validation,
    Heldout,
}

impl DigitSplit {
    pub fn name(self) -> &'static str {
        match self {
            DigitSplit::Train => "train",
            DigitSplit::Validation => "validation",
            DigitSplit::Heldout => "heldout",
        }
    }
}

/// Reads `digits.csv.gz`; every malformed row is an error naming its line.
pub fn read_images(path: &Path) -> Result<Vec<Image>, TaskError> {
    let io = |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = crate::files::read_regular(path).map_err(io)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .map_err(io)?;
    let bad = |line: usize, message: String| TaskError::Data {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut images = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let values: Vec<u8> = line
            .split(',')
            .map(|v| v.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(i + 1, format!("not a list of small integers: {e}")))?;
        if values.len() != PIXELS + 1 {
            return Err(bad(
                i + 1,
                format!(
                    "{} values; expected {PIXELS} pixels and a class",
                    values.len()
                ),
            ));
        }
        if let Some(v) = values[..PIXELS]
            .iter()
            .find(|&&v| v as usize >= STORED_LEVELS)
        {
            return Err(bad(i + 1, format!("pixel value {v} is outside 0..=16")));
        }
        let class = values[PIXELS];
        if class as usize >= CLASSES {
            return Err(bad(i + 1, format!("class {class} is outside 0..=9")));
        }
        let mut pixels = [0u8; PIXELS];
        pixels.copy_from_slice(&values[..PIXELS]);
        images.push(Image {
            row: i,
            pixels,
            class,
        });
    }
    if images.is_empty() {
        return Err(bad(0, "no images".into()));
    }
    Ok(images)
}

/// Re-quantizes a stored gray value to `levels` levels.
pub fn quantize(value: u8, levels: usize) -> u32 {
    ((value as f64) * (levels - 1) as f64 / (STORED_LEVELS - 1) as f64).round() as u32
}

/// Splits every class by `seed`: `(train, validation, heldout)`, each in
/// data-file order within a class, classes interleaved.
pub fn split(images: &[Image], seed: u64) -> [Vec<Image>; 3] {
    let mut parts: [Vec<Vec<Image>>; 3] = Default::default();
    for class in 0..CLASSES as u8 {
        let mut members: Vec<&Image> = images.iter().filter(|im| im.class == class).collect();
        members.shuffle(&mut stream(&[purpose::TASK_DATA, seed, class as u64]));
        let n = members.len();
        let n_train = (n as f64 * TRAIN_SHARE).round() as usize;
        let n_val = (n as f64 * VALIDATION_SHARE).round() as usize;
        let take = |range: std::ops::Range<usize>| {
            let mut part: Vec<Image> = members[range].iter().map(|&im| im.clone()).collect();
            part.sort_by_key(|im| im.row);
            part
        };
        parts[0].push(take(0..n_train));
        parts[1].push(take(n_train..n_train + n_val));
        parts[2].push(take(n_train + n_val..n));
    }
    parts.map(interleave)
}

/// Round-robin over the classes, so that any prefix is balanced.
fn interleave(per_class: Vec<Vec<Image>>) -> Vec<Image> {
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| per_class.iter().filter_map(move |c| c.get(i).cloned()))
        .collect()
}

pub struct Digits {
    vocab: Vocab,
    levels: usize,
    train: Vec<Example>,
    validation: Vec<Example>,
    heldout: Vec<Example>,
}

impl Digits {
    /// Loads `data_dir/digits/digits.csv.gz` and splits it by `seed`.
    pub fn load(data_dir: &Path, seed: u64, levels: usize) -> Result<Self, TaskError> {
        if !(2..=STORED_LEVELS).contains(&levels) {
            return Err(TaskError::Invalid(format!(
                "digits: levels must lie in 2..=17, got {levels}"
            )));
        }
        let path: PathBuf = data_dir.join(DATA_FILE);
        let images = read_images(&path)?;
        let symbols = (0..levels)
            .map(|l| l.to_string())
            .chain((0..CLASSES).map(|c| format!("<{c}>")));
        let vocab = Vocab::words(symbols)?;
        let [train, validation, heldout] = split(&images, seed);
        let examples = |part: Vec<Image>, split: DigitSplit| -> Vec<Example> {
            part.into_iter()
                .map(|im| Example {
                    id: im.row as u64,
                    prompt: vec![class_token(levels, im.class)],
                    answer: im.pixels.iter().map(|&v| quantize(v, levels)).collect(),
                    metadata: json!({"class": im.class, "row": im.row, "split": split.name()}),
                    given: Vec::new(),
                })
                .collect()
        };
        Ok(Self {
            vocab,
            levels,
            train: examples(train, DigitSplit::Train),
            validation: examples(validation, DigitSplit::Validation),
            heldout: examples(heldout, DigitSplit::Heldout),
        })
    }

    pub fn levels(&self) -> usize {
        self.levels
    }

    /// The examples of one split (`heldout` is also `test_examples`).
    pub fn examples(&self, split: DigitSplit) -> &[Example] {
        match split {
            DigitSplit::Train => &self.train,
            DigitSplit::Validation => &self.validation,
            DigitSplit::Heldout => &self.heldout,
        }
    }
}

/// The prompt token of `class`: class tokens follow the gray levels.
pub fn class_token(levels: usize, class: u8) -> u32 {
    (levels + class as usize) as u32
}

/// The class a prompt names (its one token is a class token), if it does:
/// a masked or foreign prompt names none.
pub fn prompted_class(prompt: &[u32], levels: usize) -> Option<usize> {
    match prompt {
        [t] if (*t as usize) >= levels && (*t as usize) < levels + CLASSES => {
            Some(*t as usize - levels)
        }
        _ => None,
    }
}

/// Gray values in [0, 1] of a completion's tokens; a token that is not a
/// gray level (a class token where a pixel belongs) reads as 0, blank.
pub fn intensities(tokens: &[u32], levels: usize) -> Vec<f32> {
    tokens
        .iter()
        .map(|&t| {
            if (t as usize) < levels {
                t as f32 / (levels - 1) as f32
            } else {
                0.0
            }
        })
        .collect()
}

impl Task for Digits {
    fn name(&self) -> &str {
        "digits"
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn layout(&self) -> Layout {
        Layout {
            prompt_len: 1,
            answer_len: PIXELS,
        }
    }

    fn train_example(&self, index: u64) -> Example {
        self.train[(index % self.train.len() as u64) as usize].clone()
    }

    fn test_examples(&self) -> &[Example] {
        &self.heldout
    }

    fn validation_examples(&self) -> &[Example] {
        &self.validation
    }

    fn answer_image(&self, answer: &[u32]) -> Option<GrayImage> {
        Some(GrayImage {
            width: SIDE,
            height: SIDE,
            pixels: intensities(answer, self.levels),
        })
    }

    /// `7` or `<7>`.
    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let digit = text.trim().trim_start_matches('<').trim_end_matches('>');
        match digit.parse::<u8>() {
            Ok(c) if (c as usize) < CLASSES => Ok(vec![class_token(self.levels, c)]),
            _ => Err(TaskError::Invalid(format!(
                "digits: the prompt is a class 0..9 (e.g. `7`), got {text:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn data() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
    }

    #[test]
    fn splits_are_disjoint_stratified_complete_and_stable() {
        let t = Digits::load(&data(), 0, 17).unwrap();
        let rows = |s: DigitSplit| -> HashSet<u64> { t.examples(s).iter().map(|e| e.id).collect() };
        let (tr, va, he) = (
            rows(DigitSplit::Train),
            rows(DigitSplit::Validation),
            rows(DigitSplit::Heldout),
        );
        assert!(tr.is_disjoint(&va) && tr.is_disjoint(&he) && va.is_disjoint(&he));
        assert_eq!(tr.len() + va.len() + he.len(), 1797);
        // Every class keeps its share (178-183 images per class: 89-92 / 18 / 71-73).
        for split in [
            DigitSplit::Train,
            DigitSplit::Validation,
            DigitSplit::Heldout,
        ] {
            let mut counts = [0usize; CLASSES];
            for e in t.examples(split) {
                counts[e.metadata["class"].as_u64().unwrap() as usize] += 1;
            }
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 5, "{split:?}: {counts:?}");
        }
        // Interleaved: the first 10 test examples are one of each class.
        let first: HashSet<u32> = t.test_examples()[..10]
            .iter()
            .map(|e| e.prompt[0])
            .collect();
        assert_eq!(first.len(), 10);
        // Stable: the same seed gives the same split; another seed another.
        let again = Digits::load(&data(), 0, 17).unwrap();
        assert_eq!(
            again.examples(DigitSplit::Train),
            t.examples(DigitSplit::Train)
        );
        let other = Digits::load(&data(), 1, 17).unwrap();
        assert_ne!(
            other.examples(DigitSplit::Train),
            t.examples(DigitSplit::Train)
        );
        // The first stored image (a 0) is row 0 of the file, 17 levels as is.
        let e = t
            .examples(DigitSplit::Train)
            .iter()
            .chain(t.examples(DigitSplit::Validation))
            .chain(t.examples(DigitSplit::Heldout))
            .find(|e| e.id == 0)
            .unwrap();
        assert_eq!(e.prompt, vec![class_token(17, 0)]);
        assert_eq!(&e.answer[..8], &[0, 0, 5, 13, 9, 1, 0, 0]);
    }

    #[test]
    fn requantization_keeps_black_and_white_and_prompts_parse() {
        assert_eq!(quantize(0, 4), 0);
        assert_eq!(quantize(16, 4), 3);
        assert_eq!(quantize(8, 5), 2);
        assert_eq!(quantize(13, 17), 13);
        let t = Digits::load(&data(), 0, 4).unwrap();
        assert_eq!(t.vocab().len(), 14);
        assert!(
            t.test_examples()
                .iter()
                .all(|e| e.answer.iter().all(|&v| v < 4))
        );
        assert_eq!(t.encode_user_prompt("7").unwrap(), vec![11]);
        assert_eq!(t.encode_user_prompt("<3>").unwrap(), vec![7]);
        assert!(t.encode_user_prompt("12").is_err());
        assert_eq!(intensities(&[0, 3, 11], 4), vec![0.0, 1.0, 0.0]);
        assert_eq!(prompted_class(&[11], 4), Some(7));
        assert_eq!(prompted_class(&[3], 4), None);
        assert_eq!(prompted_class(&[14], 4), None);
        assert_eq!(prompted_class(&[11, 11], 4), None);
        assert!(Digits::load(&data(), 0, 1).is_err());
    }

    #[test]
    fn malformed_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("digits")).unwrap();
        let write = |text: &str| {
            let f = std::fs::File::create(dir.path().join(DATA_FILE)).unwrap();
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
            std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
            gz.finish().unwrap();
        };
        let row = |v: &str, class: &str| format!("{}{class}\n", format!("{v},").repeat(PIXELS));
        write(&(row("0", "1") + &row("17", "2")));
        let e = read_images(&dir.path().join(DATA_FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:") && e.contains("17"), "{e}");
        write(&row("0", "10"));
        let e = read_images(&dir.path().join(DATA_FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("class 10"), "{e}");
        write("1,2,3\n");
        let e = read_images(&dir.path().join(DATA_FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 values"), "{e}");
    }
}
