//! Star-graph path finding (Bachmann & Nagarajan 2024), in the easy /
//! medium / hard variants of the ILM paper and two smaller ones below easy
//! (`star-tiny`, `star-small`: degree 2, the source at the centre, as in
//! Bachmann & Nagarajan's own degree-2 graphs) for budgets where the
//! published ones do not converge; the generation recipe is
//! `data/star_graph/README.md` (no data files exist upstream).
//!
//! Prompt: the shuffled edge list as node pairs, padded with `<pad>` to the
//! variant's largest edge count, then `source goal <s>`. Answer: the path
//! from source to goal written as its consecutive edges (`p1 p2 p2 p3 ...`),
//! padded with `<pad>`. Test graphs (5000) come from a fixed seed; training
//! graphs (50000 per data seed) skip any graph that is also a test graph.

use std::collections::HashSet;

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::json;

use crate::error::TaskError;
use crate::seeding::{purpose, stream};
use crate::task::{Example, Layout, Task};
use crate::vocab::Vocab;

pub const TRAIN_GRAPHS: u64 = 50_000;
pub const TEST_GRAPHS: usize = 5_000;
/// Seed of the test split, shared by every run.
const TEST_SEED: u64 = 0x5354_4152_5445_5354;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Easy,
    Medium,
    Hard,
    /// Degree 2, arms of 3 nodes (2 edges), 10 node ids.
    Tiny,
    /// Degree 2, arms of 5 nodes (4 edges), 20 node ids.
    Small,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Easy => "star-easy",
            Variant::Medium => "star-medium",
            Variant::Hard => "star-hard",
            Variant::Tiny => "star-tiny",
            Variant::Small => "star-small",
        }
    }
    fn degree(self) -> usize {
        match self {
            Variant::Tiny | Variant::Small => 2,
            Variant::Easy | Variant::Medium => 3,
            Variant::Hard => 5,
        }
    }
    /// Arm lengths in nodes, counting the centre.
    fn arm_lengths(self) -> (usize, usize) {
        match self {
            Variant::Tiny => (3, 3),
            Variant::Small | Variant::Easy => (5, 5),
            Variant::Medium => (3, 6),
            Variant::Hard => (6, 12),
        }
    }
    /// Nodes between the centre and the goal, at least (the variable-arm
    /// variants; in the others the source is the centre).
    fn min_plan(self) -> usize {
        match self {
            Variant::Tiny => 2,
            Variant::Small | Variant::Easy => 4,
            Variant::Medium => 2,
            Variant::Hard => 5,
        }
    }
    /// Node ids.
    pub fn num_nodes(self) -> usize {
        match self {
            Variant::Tiny => 10,
            Variant::Small | Variant::Easy | Variant::Medium => 20,
            Variant::Hard => 56,
        }
    }
    fn max_edges(self) -> usize {
        self.degree() * (self.arm_lengths().1 - 1)
    }
    fn max_answer_tokens(self) -> usize {
        2 * (self.arm_lengths().1 - 1)
    }
}

/// Sorted edges, source and goal: a graph up to the order of its edges.
type GraphKey = (Vec<(u32, u32)>, u32, u32);

/// One graph: shuffled edges, source, goal and the path between them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StarGraph {
    pub edges: Vec<(u32, u32)>,
    pub source: u32,
    pub goal: u32,
    pub path: Vec<u32>,
}

impl StarGraph {
    /// Draws a graph following the recipe of the variant.
    pub fn generate<R: Rng>(variant: Variant, rng: &mut R) -> Self {
        let v = variant.num_nodes() as u32;
        let mut ids: Vec<u32> = (0..v).collect();
        ids.shuffle(rng);
        let (mut edges, path) = match variant {
            Variant::Easy | Variant::Tiny | Variant::Small => {
                // The source is the centre: ids[0] = source, ids[1] = goal,
                // then the path's interior and the other arms, each `len`
                // nodes with the centre.
                let len = variant.arm_lengths().0;
                let (s, g) = (ids[0], ids[1]);
                let mut path = vec![s];
                path.extend_from_slice(&ids[2..len]);
                path.push(g);
                let mut edges: Vec<(u32, u32)> = path.windows(2).map(|w| (w[0], w[1])).collect();
                let others = (variant.degree() - 1) * (len - 1);
                for arm in ids[len..len + others].chunks(len - 1) {
                    let mut prev = s;
                    for &n in arm {
                        edges.push((prev, n));
                        prev = n;
                    }
                }
                (edges, path)
            }
            Variant::Medium | Variant::Hard => {
                let (lo, hi) = variant.arm_lengths();
                let lens: Vec<usize> = (0..variant.degree())
                    .map(|_| rng.random_range(lo..=hi))
                    .collect();
                let ins: Vec<usize> = lens
                    .iter()
                    .map(|&l| rng.random_range(0..=l - variant.min_plan() - 1))
                    .collect();
                let centre = ids[0];
                let mut next = 1;
                let mut edges = Vec::new();
                let mut path = Vec::new();
                for (arm, (&len, &j)) in lens.iter().zip(&ins).enumerate() {
                    let mut nodes = Vec::with_capacity(len);
                    for slot in 0..len {
                        if slot == j {
                            nodes.push(centre);
                        } else {
                            nodes.push(ids[next]);
                            next += 1;
                        }
                    }
                    edges.extend(nodes.windows(2).map(|w| (w[0], w[1])));
                    if arm == 0 {
                        path = nodes;
                    }
                }
                (edges, path)
            }
        };
        edges.shuffle(rng);
        Self {
            source: path[0],
            goal: *path.last().expect("paths are non-empty"),
            edges,
            path,
        }
    }

    /// The graph without the order of its edges, to compare graphs.
    fn key(&self) -> GraphKey {
        let mut e = self.edges.clone();
        e.sort_unstable();
        (e, self.source, self.goal)
    }
}

pub struct StarTask {
    variant: Variant,
    vocab: Vocab,
    test: Vec<Example>,
    test_keys: HashSet<GraphKey>,
    data_seed: u64,
}

impl StarTask {
    pub fn new(variant: Variant, data_seed: u64) -> Result<Self, TaskError> {
        let words = (0..variant.num_nodes())
            .map(|i| i.to_string())
            .chain(["<pad>".into(), "<s>".into()]);
        let vocab = Vocab::words(words)?;
        let mut test = Vec::with_capacity(TEST_GRAPHS);
        let mut test_keys = HashSet::new();
        let mut rng = stream(&[purpose::TASK_DATA, TEST_SEED, variant as u64]);
        while test.len() < TEST_GRAPHS {
            let g = StarGraph::generate(variant, &mut rng);
            if test_keys.insert(g.key()) {
                test.push(Self::example(variant, test.len() as u64, &g));
            }
        }
        Ok(Self {
            variant,
            vocab,
            test,
            test_keys,
            data_seed,
        })
    }

    fn pad(variant: Variant) -> u32 {
        variant.num_nodes() as u32
    }

    fn example(variant: Variant, id: u64, g: &StarGraph) -> Example {
        let pad = Self::pad(variant);
        let mut prompt: Vec<u32> = g.edges.iter().flat_map(|&(u, v)| [u, v]).collect();
        prompt.resize(2 * variant.max_edges(), pad);
        prompt.extend([g.source, g.goal, pad + 1]);
        let mut answer: Vec<u32> = g.path.windows(2).flat_map(|w| [w[0], w[1]]).collect();
        let reference: Vec<String> = answer.iter().map(u32::to_string).collect();
        answer.resize(variant.max_answer_tokens(), pad);
        Example {
            id,
            prompt,
            answer,
            metadata: json!({"path": g.path, "source": g.source, "goal": g.goal, "answer": reference.join(" ")}),
            given: Vec::new(),
        }
    }
}

impl Task for StarTask {
    fn name(&self) -> &str {
        self.variant.name()
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn layout(&self) -> Layout {
        Layout {
            prompt_len: 2 * self.variant.max_edges() + 3,
            answer_len: self.variant.max_answer_tokens(),
        }
    }

    fn train_example(&self, index: u64) -> Example {
        let graph = index % TRAIN_GRAPHS;
        let mut rng = stream(&[
            purpose::TASK_DATA,
            self.data_seed,
            self.variant as u64,
            graph,
        ]);
        loop {
            let g = StarGraph::generate(self.variant, &mut rng);
            if !self.test_keys.contains(&g.key()) {
                return Self::example(self.variant, graph, &g);
            }
        }
    }

    fn test_examples(&self) -> &[Example] {
        &self.test
    }

    /// Edges as `u v u v ...` then `source goal`, e.g. `7 12 12 0 ... 7 3`.
    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let mut ids = self.vocab.encode(text)?;
        let pad = Self::pad(self.variant);
        if ids.len() < 4 || ids.len() % 2 != 0 || ids.iter().any(|&t| t >= pad) {
            return Err(TaskError::Invalid(
                "expected node ids: the edges as pairs, then source and goal".into(),
            ));
        }
        let (s, g) = (ids[ids.len() - 2], ids[ids.len() - 1]);
        ids.truncate(ids.len() - 2);
        if ids.len() > 2 * self.variant.max_edges() {
            return Err(TaskError::Invalid(format!(
                "at most {} edges",
                self.variant.max_edges()
            )));
        }
        ids.resize(2 * self.variant.max_edges(), pad);
        ids.extend([s, g, pad + 1]);
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Follows edges from the source; the path must be the unique route to
    /// the goal, and every branch point must be the centre.
    fn route(g: &StarGraph) -> Option<Vec<u32>> {
        let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
        for &(u, v) in &g.edges {
            out.entry(u).or_default().push(v);
        }
        fn dfs(n: u32, goal: u32, out: &HashMap<u32, Vec<u32>>, path: &mut Vec<u32>) -> bool {
            path.push(n);
            if n == goal {
                return true;
            }
            for &m in out.get(&n).map_or(&[][..], Vec::as_slice) {
                if dfs(m, goal, out, path) {
                    return true;
                }
            }
            path.pop();
            false
        }
        let mut path = Vec::new();
        dfs(g.source, g.goal, &out, &mut path).then_some(path)
    }

    #[test]
    fn graphs_follow_the_recipe() {
        for variant in [
            Variant::Tiny,
            Variant::Small,
            Variant::Easy,
            Variant::Medium,
            Variant::Hard,
        ] {
            let mut rng = stream(&[1, variant as u64]);
            let (lo, hi) = variant.arm_lengths();
            for _ in 0..500 {
                let g = StarGraph::generate(variant, &mut rng);
                assert_eq!(route(&g).as_ref(), Some(&g.path), "{variant:?}");
                assert!((lo..=hi).contains(&g.path.len()));
                assert!(g.edges.len() <= variant.max_edges());
                let nodes: HashSet<u32> = g.edges.iter().flat_map(|&(u, v)| [u, v]).collect();
                assert!(nodes.iter().all(|&n| (n as usize) < variant.num_nodes()));
                // A tree: one edge fewer than nodes.
                assert_eq!(nodes.len(), g.edges.len() + 1);
                let max_out = nodes
                    .iter()
                    .map(|n| g.edges.iter().filter(|e| e.0 == *n).count())
                    .max()
                    .unwrap();
                assert_eq!(
                    max_out,
                    variant.degree(),
                    "{variant:?}: the centre branches `degree` ways"
                );
            }
        }
        // Tiny, small and easy: every arm whole, the source is the centre.
        for (variant, edges, degree) in [
            (Variant::Tiny, 4, 2),
            (Variant::Small, 8, 2),
            (Variant::Easy, 12, 3),
        ] {
            let g = StarGraph::generate(variant, &mut stream(&[2]));
            assert_eq!(g.edges.len(), edges, "{variant:?}");
            assert_eq!(g.edges.iter().filter(|e| e.0 == g.source).count(), degree);
        }
    }

    #[test]
    fn layouts_match_the_ilm_block_sizes_and_splits_are_disjoint() {
        for (variant, prompt, answer) in [
            (Variant::Tiny, 11, 4),
            (Variant::Small, 19, 8),
            (Variant::Easy, 27, 8),
            (Variant::Medium, 33, 10),
            (Variant::Hard, 113, 22),
        ] {
            let t = StarTask::new(variant, 0).unwrap();
            assert_eq!(
                t.layout(),
                Layout {
                    prompt_len: prompt,
                    answer_len: answer
                }
            );
            assert_eq!(t.test_examples().len(), TEST_GRAPHS);
            for i in 0..300 {
                let ex = t.train_example(i);
                assert_eq!(
                    ex,
                    t.train_example(i + TRAIN_GRAPHS),
                    "50k graphs, then they repeat"
                );
                assert_eq!((ex.prompt.len(), ex.answer.len()), (prompt, answer));
            }
            let ex = &t.test_examples()[0];
            let text = t.vocab().decode(&ex.answer);
            assert!(
                text.starts_with(ex.metadata["answer"].as_str().unwrap()),
                "{text}"
            );
        }
    }
}
