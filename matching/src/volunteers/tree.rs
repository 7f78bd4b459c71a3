//! Keeping an R-tree of points as the index needs it, where rstar falls short:
//!
//! - [`bulk_load`]: rstar's bulk load, with every leaf at one depth (so insertions stay safe);
//! - [`shift`]: an entry moved or relabelled in place when the tree's boxes allow, rather than
//!   removed and inserted.
//!
//! Like [`super::walk`], this knows nothing of volunteers: an entry's data is the caller's.

use rstar::primitives::GeomWithData;
use rstar::{AABB, Envelope, ParentNode, RTree, RTreeNode, RTreeObject, SelectionFunction};

use super::walk::Point;

/// Replaces the entry `from` of a tree by `to`. In place when every box on the entry's path also
/// covers the new point (always so when it stays put, and for most short moves): each box still
/// covers its children then, so the tree stays valid (boxes as large as before) without the cost
/// of a removal and an insertion. Otherwise removes and inserts.
pub(super) fn shift<T: Copy + PartialEq>(
    tree: &mut RTree<GeomWithData<Point, T>>,
    (from, old): (Point, T),
    (to, new): (Point, T),
) {
    let covering = Covering { from, to, data: old };
    if let Some(entry) = tree.locate_with_selection_function_mut(covering).next() {
        *entry = GeomWithData::new(to, new);
        return;
    }
    let removed = tree.remove(&GeomWithData::new(from, old));
    debug_assert!(removed.is_some(), "an entry to move was not in its tree");
    tree.insert(GeomWithData::new(to, new));
}

/// Selects the entry `(from, data)` down the boxes that cover both `from` and `to`.
struct Covering<T> {
    from: Point,
    to: Point,
    data: T,
}

impl<T: PartialEq> SelectionFunction<GeomWithData<Point, T>> for Covering<T> {
    fn should_unpack_parent(&self, envelope: &AABB<Point>) -> bool {
        envelope.contains_point(&self.from) && envelope.contains_point(&self.to)
    }

    fn should_unpack_leaf(&self, leaf: &GeomWithData<Point, T>) -> bool {
        *leaf.geom() == self.from && leaf.data == self.data
    }
}

/// An R-tree of `entries` in one bulk load, all its leaves at the same depth.
///
/// rstar 0.12's bulk load can leave some leaves a level or more higher than others (for some
/// counts of entries, by the way it splits them into clusters; georust/rstar#239), and a later
/// insertion into such a tree panics ("This is a bug in rstar"). When that happens, the entries
/// above the deepest level are taken out, which drops the nodes they leave empty, and inserted
/// again.
pub(super) fn bulk_load<T: Copy + PartialEq>(entries: Vec<GeomWithData<Point, T>>) -> RTree<GeomWithData<Point, T>> {
    fn deepest<T: RTreeObject>(node: &ParentNode<T>, depth: usize) -> usize {
        node.children()
            .iter()
            .map(|child| match child {
                RTreeNode::Leaf(_) => depth,
                RTreeNode::Parent(parent) => deepest(parent, depth + 1),
            })
            .max()
            .unwrap_or(depth)
    }
    fn shallow<T: RTreeObject + Copy>(node: &ParentNode<T>, depth: usize, deepest: usize, out: &mut Vec<T>) {
        for child in node.children() {
            match child {
                RTreeNode::Leaf(entry) if depth < deepest => out.push(*entry),
                RTreeNode::Leaf(_) => {}
                RTreeNode::Parent(parent) => shallow(parent, depth + 1, deepest, out),
            }
        }
    }
    let mut tree = RTree::bulk_load(entries);
    let mut out = Vec::new();
    shallow(tree.root(), 0, deepest(tree.root(), 0), &mut out);
    for entry in &out {
        let removed = tree.remove(entry);
        debug_assert!(removed.is_some(), "a shallow entry was not in its tree");
    }
    for entry in out {
        tree.insert(entry);
    }
    tree
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::geodesy;

    type Entry = GeomWithData<Point, u32>;

    fn point(rng: &mut rand_chacha::ChaCha8Rng) -> Point {
        geodesy::unit_vector(116.4 + rng.random_range(-0.25..0.25), 39.9 + rng.random_range(-0.25..0.25))
    }

    /// The depths of a tree's leaves.
    fn leaf_depths<T: RTreeObject>(node: &ParentNode<T>, depth: usize, out: &mut BTreeSet<usize>) {
        for child in node.children() {
            match child {
                RTreeNode::Leaf(_) => {
                    out.insert(depth);
                }
                RTreeNode::Parent(parent) => leaf_depths(parent, depth + 1, out),
            }
        }
    }

    /// A tree's layout, depth first: each node's depth, and each entry's point and number in
    /// the order its node keeps it. Equal for two trees only if they are built alike.
    fn layout(node: &ParentNode<Entry>, depth: usize, out: &mut Vec<(usize, Option<(Point, u32)>)>) {
        out.push((depth, None));
        for child in node.children() {
            match child {
                RTreeNode::Leaf(entry) => out.push((depth, Some((*entry.geom(), entry.data)))),
                RTreeNode::Parent(parent) => layout(parent, depth + 1, out),
            }
        }
    }

    fn layout_of(tree: &RTree<Entry>) -> Vec<(usize, Option<(Point, u32)>)> {
        let mut out = Vec::new();
        layout(tree.root(), 0, &mut out);
        out
    }

    /// Every node's box covers its children: nearest-first walks and removals rely on it.
    fn assert_boxes_cover(node: &ParentNode<Entry>) {
        let envelope = node.envelope();
        for child in node.children() {
            let inner = child.envelope();
            assert!(envelope.contains_envelope(&inner), "{envelope:?} does not cover {inner:?}");
            if let RTreeNode::Parent(parent) = child {
                assert_boxes_cover(parent);
            }
        }
    }

    /// A tree's entries, sorted.
    fn contents(tree: &RTree<Entry>) -> Vec<(u32, [u64; 3])> {
        let mut all: Vec<(u32, [u64; 3])> = tree.iter().map(|e| (e.data, e.geom().map(f64::to_bits))).collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn a_bulk_load_has_all_leaves_at_one_depth_and_takes_insertions() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut uneven = 0;
        for n in 300..700 {
            let entries: Vec<Entry> = (0..n).map(|i| Entry::new(point(&mut rng), i)).collect();
            let rstars = RTree::bulk_load(entries.clone());
            let mut depths = Default::default();
            leaf_depths(rstars.root(), 0, &mut depths);
            let even = depths.len() == 1;
            uneven += usize::from(!even);
            let mut tree = bulk_load(entries);
            let mut depths = Default::default();
            leaf_depths(tree.root(), 0, &mut depths);
            assert_eq!(depths.len(), 1, "{n} entries: leaves at depths {depths:?}");
            assert_eq!(tree.size(), n as usize);
            // An even bulk load is kept as rstar built it: nothing taken out and put back.
            if even {
                assert_eq!(layout_of(&tree), layout_of(&rstars), "{n} entries");
            }
            assert_eq!(contents(&tree), contents(&rstars));
            for i in 0..50 {
                tree.insert(Entry::new(point(&mut rng), n + i));
            }
        }
        // rstar's own bulk load is uneven for some of these counts (else this tests nothing).
        assert!(uneven > 0);
    }

    #[test]
    fn a_bulk_load_of_nothing_is_an_empty_tree() {
        let mut tree = bulk_load(Vec::<Entry>::new());
        assert_eq!(tree.size(), 0);
        tree.insert(Entry::new([1.0, 0.0, 0.0], 0));
        assert_eq!(tree.size(), 1);
    }

    #[test]
    fn a_shift_within_the_boxes_is_made_in_place() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let entries: Vec<Entry> = (0..2_000).map(|i| Entry::new(point(&mut rng), i)).collect();
        let mut tree = bulk_load(entries);
        for _ in 0..100 {
            let before = layout_of(&tree);
            // Halfway to the next entry of the same node: inside that node's box, and so inside
            // every box above it.
            let at = rng.random_range(0..before.len() - 1);
            let (Some((from, n)), Some((neighbour, _))) = (before[at].1, before[at + 1].1) else { continue };
            let to = [0, 1, 2].map(|i| (from[i] + neighbour[i]) / 2.0);
            let relabel = n + 10_000;
            shift(&mut tree, (from, n), (to, relabel));
            let mut want = before;
            want[at].1 = Some((to, relabel));
            assert_eq!(layout_of(&tree), want);
            // And back, relabelled only.
            shift(&mut tree, (to, relabel), (to, n));
            want[at].1 = Some((to, n));
            assert_eq!(layout_of(&tree), want);
        }
    }

    #[test]
    fn shifts_keep_a_tree_valid_and_holding_what_it_should() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut model: Vec<Point> = (0..1_500).map(|_| point(&mut rng)).collect();
        // Entries sharing a point, told apart by their number alone.
        for n in 1..8 {
            model[n] = model[0];
        }
        let mut tree = bulk_load(model.iter().enumerate().map(|(n, p)| Entry::new(*p, n as u32)).collect());
        for step in 0..3_000 {
            let n = if step % 10 == 0 { rng.random_range(0..8) } else { rng.random_range(0..model.len()) };
            let from = model[n];
            let to = match rng.random_range(0..3) {
                0 => point(&mut rng),
                1 => from.map(|c| c + rng.random_range(-1e-6..1e-6)),
                _ => from,
            };
            shift(&mut tree, (from, n as u32), (to, n as u32));
            model[n] = to;
            if step % 100 == 0 {
                assert_boxes_cover(tree.root());
                let want: Vec<(u32, [u64; 3])> = {
                    let mut all: Vec<_> =
                        model.iter().enumerate().map(|(n, p)| (n as u32, p.map(f64::to_bits))).collect();
                    all.sort_unstable();
                    all
                };
                assert_eq!(contents(&tree), want, "step {step}");
            }
        }
        assert_boxes_cover(tree.root());
        assert_eq!(tree.size(), model.len());
        for (n, p) in model.iter().enumerate() {
            assert!(tree.contains(&Entry::new(*p, n as u32)), "entry {n}");
        }
    }
}
