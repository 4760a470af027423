//! A compact copy of the trained trees for scoring: nodes packed in one array per forest, so
//! scoring one order walks cache-friendly memory without allocating. Built from the booster
//! after training or loading; predictions equal the booster's (tested).

use forust_ml::GradientBooster;

#[derive(Debug, Clone, Copy)]
struct Packed {
    threshold: f64,
    /// Leaf value when `feature == LEAF`.
    value: f64,
    feature: u32,
    left: u32,
    right: u32,
    missing: u32,
}

const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
pub struct Forest {
    base: f64,
    nodes: Vec<Packed>,
    roots: Vec<u32>,
}

impl Forest {
    pub fn from_booster(b: &GradientBooster) -> Forest {
        let n_trees = b.prediction_iteration.unwrap_or(b.trees.len()).min(b.trees.len());
        let mut f = Forest { base: b.base_score, nodes: Vec::new(), roots: Vec::with_capacity(n_trees) };
        for tree in &b.trees[..n_trees] {
            let offset = f.nodes.len() as u32;
            f.roots.push(offset);
            // Forust numbers nodes by `num`; children refer to those numbers.
            let mut by_num: Vec<usize> = vec![usize::MAX; tree.nodes.iter().map(|n| n.num + 1).max().unwrap_or(0)];
            for (i, n) in tree.nodes.iter().enumerate() {
                by_num[n.num] = i;
            }
            let at = |num: usize| offset + by_num.get(num).copied().unwrap_or(0) as u32;
            for n in &tree.nodes {
                f.nodes.push(if n.is_leaf {
                    Packed {
                        threshold: 0.0,
                        value: f64::from(n.weight_value),
                        feature: LEAF,
                        left: 0,
                        right: 0,
                        missing: 0,
                    }
                } else {
                    Packed {
                        threshold: n.split_value,
                        value: 0.0,
                        feature: n.split_feature as u32,
                        left: at(n.left_child),
                        right: at(n.right_child),
                        missing: at(n.missing_node),
                    }
                });
            }
        }
        f
    }

    /// The raw score (log-odds) of one encoded row; NaN is missing.
    pub fn raw(&self, row: &[f64]) -> f64 {
        let mut sum = self.base;
        for &root in &self.roots {
            let mut i = root as usize;
            loop {
                let n = &self.nodes[i];
                if n.feature == LEAF {
                    sum += n.value;
                    break;
                }
                let v = row.get(n.feature as usize).copied().unwrap_or(f64::NAN);
                i = if v.is_nan() {
                    n.missing
                } else if v < n.threshold {
                    n.left
                } else {
                    n.right
                } as usize;
            }
        }
        sum
    }
}
