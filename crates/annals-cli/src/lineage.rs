//! A session's fork tree: which segment forked from which at which entry, in the order people
//! read it (oldest root first, each segment followed by its forks).

use annals::{SegmentId, SegmentInfo};

/// One segment in the tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// The segment as listed.
    pub info: SegmentInfo,
    /// 0 for a root, 1 for its forks, …
    pub depth: usize,
    /// Index of the segment it forked from, if that segment is in the session.
    pub parent: Option<usize>,
    /// Indexes of its forks, oldest first.
    pub children: Vec<usize>,
    /// The first sequence number that is this segment's own: its fork point, or 0 for a root.
    /// Entries before it are a copy of the parent's (a search of the whole tree reads each
    /// entry once by starting every segment here). If the parent now holds fewer entries than
    /// the fork point (it was truncated since), the entries it lost count as this segment's.
    pub own_from: u64,
    /// Forked from a segment that is not in the session (removed by hand): shown as a root.
    pub orphan: bool,
    /// The newest segment of the session (the one a runtime appends to after a fork).
    pub newest: bool,
    /// The last child of its parent (for drawing `└──` rather than `├──`).
    pub last: bool,
}

/// The fork tree of one session, nodes in reading order (depth first, oldest first).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Every segment once, parents before their forks.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Builds the tree from [`annals::Store::list_segments`]'s listing (any order).
    #[must_use]
    #[expect(
        clippy::indexing_slicing,
        reason = "every index comes from enumerating the same listing"
    )]
    pub fn new(mut list: Vec<SegmentInfo>) -> Self {
        // Ids are UUID v7: sorting by id sorts by creation time.
        list.sort_by_key(|i| i.segment);
        let newest = list.last().map(|i| i.segment);
        let index_of =
            |id: SegmentId, list: &[SegmentInfo]| list.iter().position(|i| i.segment == id);
        let parents: Vec<Option<usize>> = list
            .iter()
            .map(|i| {
                i.fork
                    .and_then(|f| index_of(f.segment, &list))
                    .filter(|p| list.get(*p).is_some_and(|p| p.segment != i.segment))
            })
            .collect();
        let mut kids: Vec<Vec<usize>> = vec![Vec::new(); list.len()];
        for (i, p) in parents.iter().enumerate() {
            if let Some(p) = p {
                if let Some(k) = kids.get_mut(*p) {
                    k.push(i);
                }
            }
        }
        // A cycle cannot be written through the API (a fork's id is new), but a store edited by
        // hand could hold one: every segment is placed exactly once, cycles broken as roots.
        let mut placed = vec![false; list.len()];
        let mut order: Vec<(usize, usize, bool)> = Vec::with_capacity(list.len());
        let roots: Vec<usize> = (0..list.len()).filter(|i| parents[*i].is_none()).collect();
        visit(roots, &kids, &mut placed, &mut order);
        let rest: Vec<usize> = (0..list.len()).filter(|i| !placed[*i]).collect();
        visit(rest, &kids, &mut placed, &mut order);

        let mut position = vec![0usize; list.len()];
        for (pos, (i, _, _)) in order.iter().enumerate() {
            position[*i] = pos;
        }
        let nodes = order
            .iter()
            .map(|&(i, depth, last)| {
                let info = list[i].clone();
                let parent = parents[i].filter(|_| depth > 0);
                let own_from = match (info.fork, parent) {
                    (Some(f), Some(p)) => f.at.min(list[p].tip.count),
                    _ => 0,
                };
                Node {
                    orphan: info.fork.is_some() && parent.is_none(),
                    newest: Some(info.segment) == newest,
                    parent: parent.map(|p| position[p]),
                    children: kids[i].iter().map(|c| position[*c]).collect(),
                    depth,
                    own_from,
                    last,
                    info,
                }
            })
            .collect();
        Self { nodes }
    }

    /// The newest segment, if the session has any.
    #[must_use]
    pub fn newest(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.newest)
    }
}

/// Depth-first, pre-order, from `start` (in order); every index placed once.
fn visit(
    start: Vec<usize>,
    kids: &[Vec<usize>],
    placed: &mut [bool],
    order: &mut Vec<(usize, usize, bool)>,
) {
    let mut stack: Vec<(usize, usize, bool)> = Vec::new();
    let n = start.len();
    for (k, r) in start.into_iter().enumerate().rev() {
        stack.push((r, 0, k + 1 == n));
    }
    while let Some((i, depth, last)) = stack.pop() {
        match placed.get_mut(i) {
            Some(p) if !*p => *p = true,
            _ => continue,
        }
        order.push((i, depth, last));
        let children = kids.get(i).map(Vec::as_slice).unwrap_or_default();
        let m = children.len();
        for (k, c) in children.iter().enumerate().rev() {
            stack.push((*c, depth + 1, k + 1 == m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals::{Lineage, SessionId, Tip};
    use std::time::SystemTime;

    fn info(segment: SegmentId, count: u64, fork: Option<(SegmentId, u64)>) -> SegmentInfo {
        SegmentInfo {
            session: SessionId::new(),
            segment,
            tip: Tip {
                count,
                generation: 0,
            },
            bytes: 0,
            modified: SystemTime::UNIX_EPOCH,
            created_ms: 0,
            fork: fork.map(|(segment, at)| Lineage { segment, at }),
            damage: None,
        }
    }

    #[test]
    fn forks_follow_their_parent_and_the_newest_is_marked() {
        let ids: Vec<SegmentId> = (0..5).map(|_| SegmentId::new()).collect();
        let list = vec![
            info(ids[3], 9, Some((ids[1], 4))),
            info(ids[0], 10, None),
            info(ids[4], 3, Some((ids[0], 5))),
            info(ids[1], 6, Some((ids[0], 2))),
            info(ids[2], 7, None),
        ];
        let tree = Tree::new(list);
        let order: Vec<(SegmentId, usize)> = tree
            .nodes
            .iter()
            .map(|n| (n.info.segment, n.depth))
            .collect();
        assert_eq!(
            order,
            vec![
                (ids[0], 0),
                (ids[1], 1),
                (ids[3], 2),
                (ids[4], 1),
                (ids[2], 0)
            ]
        );
        assert_eq!(tree.newest().unwrap().info.segment, ids[4]);
        let own: Vec<u64> = tree.nodes.iter().map(|n| n.own_from).collect();
        assert_eq!(own, vec![0, 2, 4, 5, 0]);
        assert_eq!(tree.nodes[1].parent, Some(0));
        assert_eq!(tree.nodes[0].children, vec![1, 3]);
        assert!(!tree.nodes[1].last && tree.nodes[3].last);
    }

    #[test]
    fn a_fork_whose_parent_lost_entries_owns_them_and_a_missing_parent_makes_a_root() {
        let (a, b, c) = (SegmentId::new(), SegmentId::new(), SegmentId::new());
        let tree = Tree::new(vec![
            info(a, 2, None),
            info(b, 8, Some((a, 5))),
            info(c, 3, Some((SegmentId::new(), 1))),
        ]);
        assert_eq!(
            tree.nodes[1].own_from, 2,
            "a was truncated to 2 after the fork at 5"
        );
        let orphan = tree.nodes.iter().find(|n| n.info.segment == c).unwrap();
        assert!(orphan.orphan && orphan.depth == 0 && orphan.own_from == 0);
    }

    #[test]
    fn a_cycle_made_by_hand_still_lists_every_segment_once() {
        let (a, b) = (SegmentId::new(), SegmentId::new());
        let tree = Tree::new(vec![info(a, 2, Some((b, 1))), info(b, 2, Some((a, 1)))]);
        assert_eq!(tree.nodes.len(), 2);
    }
}
