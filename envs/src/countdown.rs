//! Countdown with three numbers (d1's `countdown_cd3` test set).
//!
//! Prompt: `a,b,c=t` padded with spaces to 15 characters; answer: an
//! arithmetic expression over `+ - * /` and parentheses that uses each
//! number once and equals `t`, padded with spaces to 16 characters.
//! Training problems are generated: three numbers in 1..=100 and a random
//! expression tree whose exact (rational) value is an integer in 1..=100;
//! the tree, written with the inner operation parenthesized (`(a+b)*c`,
//! `a-(b/c)`), is the training answer. Problems whose numbers and target
//! match a test item are skipped.

use std::collections::HashSet;
use std::path::Path;

use rand::Rng;
use serde_json::json;

use crate::error::TaskError;
use crate::jsonl::{Record, data_error, read_string_fields};
use crate::seeding::{purpose, stream};
use crate::task::{Example, Layout, Task};
use crate::vocab::Vocab;

pub const TEST_FILE: &str = "countdown/countdown_cd3_test.jsonl";
pub const PROMPT_LEN: usize = 15;
pub const ANSWER_LEN: usize = 16;
const SYMBOLS: &str = " 0123456789+-*/()=,";

/// An exact rational `num / den` with `den > 0`, in lowest terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rational {
    pub num: i128,
    pub den: i128,
}

impl Rational {
    pub fn int(n: i128) -> Self {
        Self { num: n, den: 1 }
    }

    fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs()).max(1) as i128;
        let s = if den < 0 { -1 } else { 1 };
        Some(Self {
            num: s * num / g,
            den: s * den / g,
        })
    }

    /// `self op other`; `None` for division by zero or overflow.
    pub fn apply(self, op: char, o: Self) -> Option<Self> {
        let (a, b, c, d) = (self.num, self.den, o.num, o.den);
        match op {
            '+' => Self::new(
                a.checked_mul(d)?.checked_add(c.checked_mul(b)?)?,
                b.checked_mul(d)?,
            ),
            '-' => Self::new(
                a.checked_mul(d)?.checked_sub(c.checked_mul(b)?)?,
                b.checked_mul(d)?,
            ),
            '*' => Self::new(a.checked_mul(c)?, b.checked_mul(d)?),
            '/' => Self::new(a.checked_mul(d)?, b.checked_mul(c)?),
            _ => None,
        }
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A parsed expression: its exact value (`None` on division by zero) and
/// the numbers it uses, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub value: Option<Rational>,
    pub numbers: Vec<i128>,
}

/// A recursive-descent parser over the expression's bytes; it records
/// every number it reads.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    numbers: Vec<i128>,
}

impl Parser<'_> {
    fn skip(&mut self) {
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.s.get(self.i).copied()
    }
    // expr := term (('+'|'-') term)*
    fn expr(&mut self, depth: usize) -> Result<Option<Rational>, String> {
        let mut v = self.term(depth)?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term(depth)?;
            v = v.zip(r).and_then(|(a, b)| a.apply(op as char, b));
        }
        Ok(v)
    }
    // term := atom (('*'|'/') atom)*
    fn term(&mut self, depth: usize) -> Result<Option<Rational>, String> {
        let mut v = self.atom(depth)?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let r = self.atom(depth)?;
            v = v.zip(r).and_then(|(a, b)| a.apply(op as char, b));
        }
        Ok(v)
    }
    // atom := integer | '(' expr ')'
    fn atom(&mut self, depth: usize) -> Result<Option<Rational>, String> {
        if depth > 64 {
            return Err("parentheses nest too deep".into());
        }
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let v = self.expr(depth + 1)?;
                if self.peek() != Some(b')') {
                    return Err(format!("expected ')' at {}", self.i));
                }
                self.i += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII digits");
                let n: i128 = text
                    .parse()
                    .map_err(|_| format!("number {text} is too large"))?;
                if self.i - start > 12 {
                    return Err(format!("number {text} is too large"));
                }
                self.numbers.push(n);
                Ok(Some(Rational::int(n)))
            }
            Some(c) => Err(format!("unexpected {:?} at {}", c as char, self.i)),
            None => Err("expression ends early".into()),
        }
    }
}

/// Parses `expr` (integers, `+ - * /`, parentheses, spaces) with the usual
/// precedence. An error says where the expression stops making sense.
pub fn parse_expression(expr: &str) -> Result<Parsed, String> {
    let mut p = Parser {
        s: expr.as_bytes(),
        i: 0,
        numbers: Vec::new(),
    };
    let value = p.expr(0)?;
    if let Some(c) = p.peek() {
        return Err(format!("unexpected {:?} at {}", c as char, p.i));
    }
    Ok(Parsed {
        value,
        numbers: p.numbers,
    })
}

pub struct Countdown {
    vocab: Vocab,
    test: Vec<Example>,
    /// Sorted numbers and target of every test item.
    test_keys: HashSet<([u32; 3], u32)>,
    data_seed: u64,
}

fn pad(mut s: String, len: usize) -> String {
    while s.chars().count() < len {
        s.push(' ');
    }
    s
}

impl Countdown {
    pub fn load(data_dir: &Path, data_seed: u64) -> Result<Self, TaskError> {
        let path = data_dir.join(TEST_FILE);
        let vocab = Vocab::chars(SYMBOLS.chars())?;
        let mut test = Vec::new();
        let mut test_keys = HashSet::new();
        for Record {
            line,
            fields: [input, output],
        } in read_string_fields(&path, ["input", "output"])?
        {
            let err = |message: String| data_error(&path, line, message);
            let numbers: Vec<u32> = input
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse::<u32>()
                        .map_err(|e| err(format!("input {n:?}: {e}")))
                })
                .collect::<Result<_, _>>()?;
            let target: u32 = output
                .trim()
                .parse()
                .map_err(|e| err(format!("output: {e}")))?;
            let [a, b, c] = numbers[..] else {
                return Err(err(format!("expected 3 numbers, found {}", numbers.len())));
            };
            if [a, b, c, target].iter().any(|&n| !(1..=999).contains(&n)) {
                return Err(err("numbers and target must lie in 1..=999".into()));
            }
            let mut key = [a, b, c];
            key.sort_unstable();
            test_keys.insert((key, target));
            // A reference solution, so that the held-out ELBO scores a real
            // answer; the verifiers accept any correct expression.
            let solution = solve([a, b, c], target)
                .ok_or_else(|| err(format!("{a},{b},{c} cannot reach {target} with + - * /")))?;
            test.push(Self::example(
                &vocab,
                line as u64,
                [a, b, c],
                target,
                Some(&solution),
            )?);
        }
        Ok(Self {
            vocab,
            test,
            test_keys,
            data_seed,
        })
    }

    fn example(
        vocab: &Vocab,
        id: u64,
        numbers: [u32; 3],
        target: u32,
        solution: Option<&str>,
    ) -> Result<Example, TaskError> {
        let prompt = format!("{},{},{}={target}", numbers[0], numbers[1], numbers[2]);
        Ok(Example {
            id,
            prompt: vocab.encode(&pad(prompt, PROMPT_LEN))?,
            answer: vocab.encode(&pad(solution.unwrap_or("").to_string(), ANSWER_LEN))?,
            metadata: json!({"numbers": numbers, "target": target, "solution": solution}),
            given: Vec::new(),
        })
    }
}

/// Every expression over `numbers` (each used once) in the training
/// format, with its value: 6 orders x 2 tree shapes x 16 operator pairs.
fn all_expressions(numbers: [u32; 3]) -> impl Iterator<Item = (String, Option<Rational>)> {
    const OPS: [char; 4] = ['+', '-', '*', '/'];
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let r = |x: u32| Rational::int(i128::from(x));
    ORDERS.into_iter().flat_map(move |o| {
        let n = o.map(|i| numbers[i]);
        OPS.into_iter().flat_map(move |o1| {
            OPS.into_iter().flat_map(move |o2| {
                let left = r(n[0])
                    .apply(o1, r(n[1]))
                    .and_then(|ab| ab.apply(o2, r(n[2])));
                let right = r(n[1])
                    .apply(o2, r(n[2]))
                    .and_then(|bc| r(n[0]).apply(o1, bc));
                [
                    (format!("({}{o1}{}){o2}{}", n[0], n[1], n[2]), left),
                    (format!("{}{o1}({}{o2}{})", n[0], n[1], n[2]), right),
                ]
            })
        })
    })
}

/// The first expression (in a fixed order) that reaches `target`, if any.
pub fn solve(numbers: [u32; 3], target: u32) -> Option<String> {
    let t = Rational::int(i128::from(target));
    all_expressions(numbers)
        .find(|(_, v)| *v == Some(t))
        .map(|(e, _)| e)
}

/// A random expression over `numbers` (in a random order and tree shape),
/// written with its inner operation parenthesized, and its value.
fn random_expression<R: Rng>(rng: &mut R, numbers: [u32; 3]) -> (String, Option<Rational>) {
    const OPS: [char; 4] = ['+', '-', '*', '/'];
    let mut n = numbers;
    for i in (1..3).rev() {
        n.swap(i, rng.random_range(0..=i));
    }
    let (o1, o2) = (OPS[rng.random_range(0..4)], OPS[rng.random_range(0..4)]);
    let r = |x: u32| Rational::int(i128::from(x));
    if rng.random::<bool>() {
        let v = r(n[0])
            .apply(o1, r(n[1]))
            .and_then(|ab| ab.apply(o2, r(n[2])));
        (format!("({}{o1}{}){o2}{}", n[0], n[1], n[2]), v)
    } else {
        let v = r(n[1])
            .apply(o2, r(n[2]))
            .and_then(|bc| r(n[0]).apply(o1, bc));
        (format!("{}{o1}({}{o2}{})", n[0], n[1], n[2]), v)
    }
}

impl Task for Countdown {
    fn name(&self) -> &str {
        "countdown"
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn layout(&self) -> Layout {
        Layout {
            prompt_len: PROMPT_LEN,
            answer_len: ANSWER_LEN,
        }
    }

    fn train_example(&self, index: u64) -> Example {
        let mut rng = stream(&[purpose::TASK_DATA, self.data_seed, index]);
        loop {
            let numbers: [u32; 3] = std::array::from_fn(|_| rng.random_range(1..=100));
            let (expr, value) = random_expression(&mut rng, numbers);
            let Some(v) = value.filter(|v| v.den == 1 && (1..=100).contains(&v.num)) else {
                continue;
            };
            let target = v.num as u32;
            let mut key = numbers;
            key.sort_unstable();
            if self.test_keys.contains(&(key, target)) {
                continue;
            }
            return Self::example(&self.vocab, index, numbers, target, Some(&expr))
                .expect("generated problems use only vocabulary characters");
        }
    }

    fn test_examples(&self) -> &[Example] {
        &self.test
    }

    /// `a,b,c=t`, e.g. `30,100,93=23`.
    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let text = text.trim();
        if text.chars().count() > PROMPT_LEN {
            return Err(TaskError::Invalid(format!(
                "a countdown prompt has at most {PROMPT_LEN} characters (a,b,c=t)"
            )));
        }
        self.vocab.encode(&pad(text.to_string(), PROMPT_LEN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
    }

    #[test]
    fn parses_with_precedence_and_exact_fractions() {
        let p = parse_expression("93 - (100 - 30)").unwrap();
        assert_eq!(p.value, Some(Rational::int(23)));
        assert_eq!(p.numbers, vec![93, 100, 30]);
        assert_eq!(
            parse_expression("2+3*4").unwrap().value,
            Some(Rational::int(14))
        );
        assert_eq!(
            parse_expression("(1/3)*3").unwrap().value,
            Some(Rational::int(1))
        );
        assert_eq!(parse_expression("8/(3-3)").unwrap().value, None);
        for bad in ["", "1+", "(1+2", "1 2", "1+a", "((((", "1)"] {
            assert!(parse_expression(bad).is_err(), "{bad:?}");
        }
        let deep = "(".repeat(200) + "1" + &")".repeat(200);
        assert!(parse_expression(&deep).is_err());
        assert!(parse_expression("99999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn loads_the_256_test_problems() {
        let t = Countdown::load(&data_dir(), 0).unwrap();
        assert_eq!(t.test_examples().len(), 256);
        let first = &t.test_examples()[0];
        assert_eq!(t.vocab().decode(&first.prompt), "30,100,93=23   ");
        assert_eq!(first.metadata["target"], 23);
        // Every test problem has a reference solution that checks out.
        for ex in t.test_examples() {
            let sol = ex.metadata["solution"].as_str().unwrap();
            let v = parse_expression(sol)
                .unwrap()
                .value
                .unwrap_or_else(|| panic!("{sol}"));
            assert_eq!(
                v,
                Rational::int(ex.metadata["target"].as_i64().unwrap().into()),
                "{sol}"
            );
        }
        assert_eq!(solve([1, 1, 1], 100), None);
    }

    #[test]
    fn training_problems_are_solved_by_their_answer_and_avoid_the_test_set() {
        let t = Countdown::load(&data_dir(), 0).unwrap();
        for i in 0..2000 {
            let ex = t.train_example(i);
            assert_eq!(ex, t.train_example(i), "deterministic");
            let answer = t.vocab().decode(&ex.answer);
            let parsed = parse_expression(answer.trim()).unwrap();
            let target = ex.metadata["target"].as_i64().unwrap();
            assert_eq!(
                parsed.value,
                Some(Rational::int(i128::from(target))),
                "{answer}"
            );
            let mut used = parsed.numbers.clone();
            used.sort_unstable();
            let mut given: Vec<i128> = ex.metadata["numbers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_i64().unwrap().into())
                .collect();
            given.sort_unstable();
            assert_eq!(used, given);
            let key: [u32; 3] = std::array::from_fn(|k| given[k] as u32);
            assert!(!t.test_keys.contains(&(key, target as u32)));
        }
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("countdown")).unwrap();
        std::fs::write(
            dir.path().join(TEST_FILE),
            "{\"input\": \"1,2,3\", \"output\": \"6\"}\n{\"input\": \"1,2\", \"output\": \"3\"}\n",
        )
        .unwrap();
        let err = Countdown::load(dir.path(), 0).err().unwrap().to_string();
        assert!(err.contains(":2:") && err.contains("3 numbers"), "{err}");
    }
}
