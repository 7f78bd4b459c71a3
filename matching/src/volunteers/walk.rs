//! Two walks over an R-tree of points that rstar's API does not offer, reading its nodes
//! ([`ParentNode`], [`RTreeNode`]) directly:
//!
//! - [`Nearest`]: nearest first, within a bound: the volunteer search;
//! - [`within`]: every entry within a squared distance, level by level: the count of who the
//!   search passed over.
//!
//! Both measure squared Euclidean distance between [`Point`]s, the index's unit vectors (whose
//! chords order points as great-circle distance does, see [`crate::geodesy`]), and both prune a
//! node by the nearest point of its box, never farther than any entry inside it. They know
//! nothing of volunteers: an entry's data is the caller's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rstar::primitives::GeomWithData;
use rstar::{ParentNode, RTree, RTreeNode};

/// A point of the trees: a unit vector, [`crate::geodesy::unit_vector`].
pub(super) type Point = [f64; 3];

/// Squared distance between points, summed in the order rstar sums it.
#[inline]
pub(super) fn distance_2(a: &Point, b: &Point) -> f64 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    x * x + y * y + z * z
}

/// Squared distance from `query` to the nearest point of a node's box (0 inside it): never more
/// than [`distance_2`] to any point in the box, the rounding being monotonic.
#[inline]
fn box_distance_2<D>(node: &ParentNode<GeomWithData<Point, D>>, query: &Point) -> f64 {
    let envelope = node.envelope();
    let (lower, upper) = (envelope.lower(), envelope.upper());
    let gap = |i: usize| (lower[i] - query[i]).max(query[i] - upper[i]).max(0.0);
    let (x, y, z) = (gap(0), gap(1), gap(2));
    x * x + y * y + z * z
}

/// A nearest-first walk of a tree within a squared distance: best-first over node boxes with a
/// binary heap, yielding each entry within `max_2` with its squared distance, and never queuing
/// a node or an entry beyond it. rstar's own iterator does the same without the bound, and
/// starts from a 32-entry inline heap that a tree of a million overflows (a copy and an
/// allocation per query).
pub(super) struct Nearest<'a, D> {
    query: Point,
    max_2: f64,
    /// Whether a node or an entry was left out for lying beyond `max_2`.
    pruned: bool,
    heap: BinaryHeap<Reverse<Queued<'a, D>>>,
}

struct Queued<'a, D> {
    distance_2: f64,
    node: &'a RTreeNode<GeomWithData<Point, D>>,
}

impl<D> PartialEq for Queued<'_, D> {
    fn eq(&self, other: &Self) -> bool {
        self.distance_2.total_cmp(&other.distance_2).is_eq()
    }
}

impl<D> Eq for Queued<'_, D> {}

impl<D> PartialOrd for Queued<'_, D> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<D> Ord for Queued<'_, D> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.distance_2.total_cmp(&other.distance_2)
    }
}

impl<'a, D> Nearest<'a, D> {
    /// The walk of `tree` from `query`, over the entries within `max_2` (a squared distance).
    pub(super) fn new(tree: &'a RTree<GeomWithData<Point, D>>, query: Point, max_2: f64) -> Self {
        let mut walk = Self { query, max_2, pruned: false, heap: BinaryHeap::with_capacity(64) };
        walk.push_children(tree.root());
        walk
    }

    /// Whether anything was left out for lying beyond the bound; once the walk is over, whether
    /// the tree holds an entry beyond it (a node holds at least one entry).
    pub(super) fn pruned(&self) -> bool {
        self.pruned
    }

    fn push_children(&mut self, parent: &'a ParentNode<GeomWithData<Point, D>>) {
        for node in parent.children() {
            let distance_2 = match node {
                RTreeNode::Leaf(entry) => distance_2(entry.geom(), &self.query),
                RTreeNode::Parent(parent) => box_distance_2(parent, &self.query),
            };
            if distance_2 <= self.max_2 {
                self.heap.push(Reverse(Queued { distance_2, node }));
            } else {
                self.pruned = true;
            }
        }
    }
}

impl<'a, D> Iterator for Nearest<'a, D> {
    type Item = (&'a GeomWithData<Point, D>, f64);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(Reverse(Queued { distance_2, node })) = self.heap.pop() {
            match node {
                RTreeNode::Leaf(entry) => return Some((entry, distance_2)),
                RTreeNode::Parent(parent) => self.push_children(parent),
            }
        }
        None
    }
}

/// Calls `visit` with the data of every entry of `tree` within `reach` (a squared distance) of
/// `query`, in no particular order.
///
/// Level by level rather than depth first: a first pass over a level's nodes only reads them,
/// so that their cache misses (most of the cost, in a tree of a million) overlap instead of
/// coming one after another; the second pass then visits and picks the next level.
pub(super) fn within<'a, D>(
    tree: &'a RTree<GeomWithData<Point, D>>,
    query: &Point,
    reach: f64,
    mut visit: impl FnMut(&'a D),
) {
    let mut nodes: Vec<&ParentNode<GeomWithData<Point, D>>> = Vec::with_capacity(64);
    nodes.push(tree.root());
    let mut level = 0;
    while level < nodes.len() {
        let end = nodes.len();
        // Read the level's nodes first, for nothing but to start loading them all at once.
        let mut touch = 0u64;
        for node in &nodes[level..end] {
            for child in node.children() {
                touch ^= match child {
                    RTreeNode::Leaf(entry) => entry.geom()[0].to_bits(),
                    RTreeNode::Parent(parent) => parent.children().len() as u64,
                };
            }
        }
        std::hint::black_box(touch);
        for n in level..end {
            for child in nodes[n].children() {
                match child {
                    RTreeNode::Leaf(entry) => {
                        if distance_2(entry.geom(), query) <= reach {
                            visit(&entry.data);
                        }
                    }
                    RTreeNode::Parent(parent) => {
                        if box_distance_2(parent, query) <= reach {
                            nodes.push(parent);
                        }
                    }
                }
            }
        }
        level = end;
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};

    use rstar::Envelope;

    use super::*;

    type Entry = GeomWithData<Point, u32>;

    /// Points scattered near one another on the unit sphere, numbered, some of them repeated
    /// (ties in distance), as a city's volunteers are.
    fn points(n: u32, seed: u64) -> Vec<Entry> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut at = || {
            let (lon, lat) = (116.4 + rng.random_range(-0.2..0.2), 39.9 + rng.random_range(-0.2..0.2));
            crate::geodesy::unit_vector(lon, lat)
        };
        let mut out: Vec<Entry> = Vec::with_capacity(n as usize);
        for i in 0..n {
            let point = if i % 10 == 9 { *out[i as usize / 2].geom() } else { at() };
            out.push(Entry::new(point, i));
        }
        out
    }

    /// Squared distance as rstar computes it: the oracle's, apart from the walks'.
    fn rstar_distance_2(a: &Point, b: &Point) -> f64 {
        rstar::PointDistance::distance_2(a, b)
    }

    /// Every entry within `max_2` of `query`, nearest first, ties by number: the oracle.
    fn brute_force(entries: &[Entry], query: &Point, max_2: f64) -> Vec<(u32, f64)> {
        let mut all: Vec<(u32, f64)> =
            entries.iter().map(|e| (e.data, rstar_distance_2(e.geom(), query))).filter(|(_, d)| *d <= max_2).collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all
    }

    /// A walk's entries, ties in distance put in number order as the oracle puts them.
    fn walked(walk: Nearest<'_, u32>) -> Vec<(u32, f64)> {
        let mut got: Vec<(u32, f64)> = walk.map(|(e, d)| (e.data, d)).collect();
        for pair in got.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "not nearest first: {pair:?}");
        }
        got.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        got
    }

    /// A chord of `metres` on the earth, squared: a bound as the index computes it.
    fn bound(metres: f64) -> f64 {
        crate::geodesy::metres_to_chord(metres).powi(2)
    }

    #[test]
    fn nearest_yields_what_a_scan_finds_within_the_bound_nearest_first() {
        let entries = points(3_000, 1);
        let tree = RTree::bulk_load(entries.clone());
        let queries = points(200, 2);
        for (n, query) in queries.iter().enumerate() {
            let query = *query.geom();
            // From nothing within reach to every entry.
            let max_2 = [0.0, bound(50.0), bound(800.0), bound(5_000.0), 4.0][n % 5];
            let want = brute_force(&entries, &query, max_2);
            let mut walk = Nearest::new(&tree, query, max_2);
            let got = walked(Nearest::new(&tree, query, max_2));
            assert_eq!(got, want, "query {n}, bound {max_2}");
            // Each distance is the one rstar itself computes.
            for (entry, d) in walk.by_ref() {
                assert_eq!(d, rstar_distance_2(entry.geom(), &query));
            }
            assert_eq!(walk.pruned(), want.len() < entries.len(), "query {n}, bound {max_2}");
        }
    }

    #[test]
    fn nearest_stopped_early_has_yielded_the_nearest() {
        let entries = points(2_000, 3);
        let tree = RTree::bulk_load(entries.clone());
        for query in points(50, 4) {
            let query = *query.geom();
            let want = brute_force(&entries, &query, bound(3_000.0));
            let got: Vec<f64> = Nearest::new(&tree, query, bound(3_000.0)).take(5).map(|(_, d)| d).collect();
            let nearest: Vec<f64> = want.iter().take(5).map(|w| w.1).collect();
            assert_eq!(got, nearest);
        }
    }

    #[test]
    fn nearest_walks_a_tree_grown_by_insertion_and_an_empty_one() {
        let entries = points(500, 5);
        let mut tree = RTree::new();
        let query = *points(1, 6)[0].geom();
        let mut empty = Nearest::new(&tree, query, 4.0);
        assert!(empty.next().is_none() && !empty.pruned());
        for entry in &entries {
            tree.insert(*entry);
        }
        assert_eq!(walked(Nearest::new(&tree, query, bound(4_000.0))), brute_force(&entries, &query, bound(4_000.0)));
    }

    #[test]
    fn pruned_tells_whether_anything_lies_beyond_the_bound() {
        let entries = points(50, 7);
        let tree = RTree::bulk_load(entries.clone());
        let query = *entries[0].geom();
        let farthest = entries.iter().map(|e| rstar_distance_2(e.geom(), &query)).fold(0.0, f64::max);
        let at_farthest = entries.iter().filter(|e| rstar_distance_2(e.geom(), &query) == farthest).count();
        // Exactly as far as the farthest: nothing lies beyond.
        let mut walk = Nearest::new(&tree, query, farthest);
        assert_eq!(walk.by_ref().count(), entries.len());
        assert!(!walk.pruned());
        let mut walk = Nearest::new(&tree, query, farthest * (1.0 - 1e-9));
        assert_eq!(walk.by_ref().count(), entries.len() - at_farthest);
        assert!(walk.pruned());
    }

    #[test]
    fn within_visits_exactly_what_a_scan_finds() {
        let entries = points(3_000, 8);
        let tree = RTree::bulk_load(entries.clone());
        for (n, query) in points(200, 9).iter().enumerate() {
            let query = *query.geom();
            let reach = [0.0, bound(50.0), bound(800.0), bound(5_000.0), 4.0][n % 5];
            let mut want: Vec<u32> = brute_force(&entries, &query, reach).into_iter().map(|w| w.0).collect();
            let mut got = Vec::new();
            within(&tree, &query, reach, |n| got.push(*n));
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "query {n}, reach {reach}");
        }
        // An entry exactly at the reach is within it; an empty tree has nothing.
        let query = *entries[0].geom();
        let reach = rstar_distance_2(entries[1].geom(), &query);
        let mut at_reach = false;
        within(&tree, &query, reach, |n| at_reach |= *n == 1);
        assert!(at_reach);
        within(&RTree::<Entry>::new(), &query, 4.0, |n| panic!("visited {n} in an empty tree"));
    }

    /// Every node below `node` (itself included).
    fn parents<'a>(node: &'a ParentNode<Entry>, out: &mut Vec<&'a ParentNode<Entry>>) {
        out.push(node);
        for child in node.children() {
            if let RTreeNode::Parent(parent) = child {
                parents(parent, out);
            }
        }
    }

    #[test]
    fn a_box_is_as_far_as_its_nearest_point_and_no_farther_than_what_it_holds() {
        let entries = points(2_000, 10);
        let tree = RTree::bulk_load(entries.clone());
        let mut nodes = Vec::new();
        parents(tree.root(), &mut nodes);
        assert!(nodes.len() > 20, "a tree of several levels");
        let held: Vec<Vec<&Entry>> =
            nodes.iter().map(|n| entries.iter().filter(|e| n.envelope().contains_point(e.geom())).collect()).collect();
        let mut inside = 0;
        for query in points(50, 11).iter().chain(&entries[..50]) {
            let query = *query.geom();
            for (node, held) in nodes.iter().zip(&held) {
                let envelope = node.envelope();
                let (lower, upper) = (envelope.lower(), envelope.upper());
                let nearest = [0, 1, 2].map(|i| query[i].clamp(lower[i], upper[i]));
                let d = box_distance_2(node, &query);
                assert_eq!(d, rstar_distance_2(&nearest, &query), "{envelope:?}");
                inside += usize::from(d == 0.0);
                assert!(held.iter().all(|entry| d <= rstar_distance_2(entry.geom(), &query)));
            }
        }
        assert!(inside > 0, "some queries fall inside some boxes");
    }

    #[test]
    fn the_queue_orders_by_distance_alone() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let tree = RTree::bulk_load(points(10, 12));
        let node = &tree.root().children()[0];
        let queued = |distance_2| Queued { distance_2, node };
        assert_eq!(queued(1.0).cmp(&queued(2.0)), Less);
        assert_eq!(queued(2.0).partial_cmp(&queued(1.0)), Some(Greater));
        assert_eq!(queued(1.0).partial_cmp(&queued(1.0)), Some(Equal));
        assert!(queued(1.0) == queued(1.0) && queued(1.0) != queued(2.0));
        // As the heap pops them: least first.
        let mut heap: BinaryHeap<_> = [3.0, 0.5, 2.0, 0.0].map(|d| Reverse(queued(d))).into_iter().collect();
        let popped: Vec<f64> = std::iter::from_fn(|| heap.pop().map(|Reverse(q)| q.distance_2)).collect();
        assert_eq!(popped, [0.0, 0.5, 2.0, 3.0]);
    }
}
