//! The paths of expanded grants, enumerated in memory over the part of the membership graph
//! that [`super::neighbourhood`] read. Pure: no database, so the rules are tested on their own.
//!
//! A path runs from a top group down through nested groups to a principal; its `source` spells
//! the groups (`group:<top>>group:<next>>…>group:<last>`), the principal not included. A group
//! never appears twice on one path (membership cycles end there).

use std::collections::HashMap;
use uuid::Uuid;

/// The membership graph around what changed: only what was read, by resource id.
#[derive(Debug, Default)]
pub struct Neighbourhood {
    /// Labels (`group:<external id>`) of the current groups read.
    pub labels: HashMap<Uuid, String>,
    /// Current groups that directly hold a group as a member, for the groups read upward.
    pub parents: HashMap<Uuid, Vec<Uuid>>,
    /// Direct members (any principal), for the groups read downward.
    pub members: HashMap<Uuid, Vec<Uuid>>,
}

/// One expanded path: `member` reaches `top` through `source`, `len` groups long.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    pub top: Uuid,
    pub member: Uuid,
    pub source: String,
    pub len: usize,
}

/// A partial path upward from a hop's group: `top` reaches it through `chain` (top first).
struct Up {
    top: Uuid,
    path: String,
    chain: Vec<Uuid>,
}

/// A partial path downward: `member` is reached through `chain` (the groups passed, first
/// first), spelled by `suffix` (`>group:…` per group).
struct Down {
    member: Uuid,
    suffix: String,
    chain: Vec<Uuid>,
}

impl Neighbourhood {
    fn members_of(&self, group: Uuid) -> &[Uuid] {
        self.members.get(&group).map_or(&[], Vec::as_slice)
    }

    /// Every way up from `group` (itself included, as a path of one), when it is current.
    fn up(&self, group: Uuid) -> Vec<Up> {
        let Some(label) = self.labels.get(&group) else {
            return Vec::new();
        };
        let mut out = vec![Up {
            top: group,
            path: label.clone(),
            chain: vec![group],
        }];
        let mut next = 0;
        while next < out.len() {
            let (top, path, chain) = (out[next].top, out[next].path.clone(), &out[next].chain);
            let mut found = Vec::new();
            for parent in self.parents.get(&top).map_or(&[][..], Vec::as_slice) {
                if chain.contains(parent) {
                    continue;
                }
                let Some(label) = self.labels.get(parent) else {
                    continue;
                };
                let mut longer = Vec::with_capacity(chain.len() + 1);
                longer.push(*parent);
                longer.extend_from_slice(chain);
                found.push(Up {
                    top: *parent,
                    path: format!("{label}>{path}"),
                    chain: longer,
                });
            }
            out.extend(found);
            next += 1;
        }
        out
    }

    /// Every principal reached from `start`: itself, and when it is a current group, its
    /// members and theirs, never through a group already in `chain`.
    fn down(&self, start: Down) -> Vec<Down> {
        let mut out = vec![start];
        let mut next = 0;
        while next < out.len() {
            let d = &out[next];
            let mut found = Vec::new();
            if let Some(label) = self.labels.get(&d.member)
                && !d.chain.contains(&d.member)
            {
                for member in self.members_of(d.member) {
                    if d.chain.contains(member) {
                        continue;
                    }
                    let mut chain = d.chain.clone();
                    chain.push(d.member);
                    found.push(Down {
                        member: *member,
                        suffix: format!("{}>{label}", d.suffix),
                        chain,
                    });
                }
            }
            out.extend(found);
            next += 1;
        }
        out
    }

    /// Every path through one of `hops` (group, member): each way up from the group joined
    /// with each way down from a member of it, as long as no group repeats.
    pub fn through_hops(&self, hops: &[(Uuid, Uuid)]) -> Vec<Path> {
        let mut by_group: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for (group, member) in hops {
            let members = by_group.entry(*group).or_default();
            if !members.contains(member) {
                members.push(*member);
            }
        }
        let mut out = Vec::new();
        for (group, members) in by_group {
            let ups = self.up(group);
            if ups.is_empty() {
                continue;
            }
            let downs: Vec<Down> = members
                .iter()
                .flat_map(|m| {
                    self.down(Down {
                        member: *m,
                        suffix: String::new(),
                        chain: Vec::new(),
                    })
                })
                .collect();
            for u in &ups {
                for d in &downs {
                    if d.chain.iter().any(|g| u.chain.contains(g)) || u.chain.contains(&d.member) {
                        continue;
                    }
                    out.push(Path {
                        top: u.top,
                        member: d.member,
                        source: format!("{}{}", u.path, d.suffix),
                        len: u.chain.len() + d.chain.len(),
                    });
                }
            }
        }
        out
    }

    /// Every path down from `top` (a current group) to each principal below it.
    pub fn below(&self, top: Uuid) -> Vec<Path> {
        let Some(label) = self.labels.get(&top) else {
            return Vec::new();
        };
        self.members_of(top)
            .iter()
            .flat_map(|m| {
                self.down(Down {
                    member: *m,
                    suffix: String::new(),
                    chain: vec![top],
                })
            })
            .map(|d| Path {
                top,
                member: d.member,
                source: format!("{label}{}", d.suffix),
                len: d.chain.len(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// Groups 1..=9 (labelled `group:g<n>`), users from 100; `edges` are (group, member).
    fn graph(edges: &[(u128, u128)]) -> Neighbourhood {
        let mut n = Neighbourhood::default();
        for g in 1..=9 {
            n.labels.insert(id(g), format!("group:g{g}"));
        }
        for (g, m) in edges {
            n.members.entry(id(*g)).or_default().push(id(*m));
            if *m < 100 {
                n.parents.entry(id(*m)).or_default().push(id(*g));
            }
        }
        n
    }

    fn sources(mut paths: Vec<Path>) -> Vec<(u128, u128, String, usize)> {
        paths.sort_by(|a, b| a.source.cmp(&b.source).then(a.member.cmp(&b.member)));
        paths
            .into_iter()
            .map(|p| (p.top.as_u128(), p.member.as_u128(), p.source, p.len))
            .collect()
    }

    #[test]
    fn a_hop_in_a_chain_reaches_every_group_above_it_and_every_principal_below_it() {
        // g1 ∋ g2 ∋ g3 ∋ user 100; the hop g2 → g3 changed.
        let n = graph(&[(1, 2), (2, 3), (3, 100)]);
        assert_eq!(
            sources(n.through_hops(&[(id(2), id(3))])),
            vec![
                (1, 3, "group:g1>group:g2".into(), 2),
                (1, 100, "group:g1>group:g2>group:g3".into(), 3),
                (2, 3, "group:g2".into(), 1),
                (2, 100, "group:g2>group:g3".into(), 2),
            ]
        );
    }

    #[test]
    fn a_cycle_ends_where_a_group_would_repeat() {
        // g1 ∋ g2 ∋ g1, and g2 ∋ user 100; the hop g1 → g2 changed. Above g1 is g2, but no
        // path from g2 may pass g2 again.
        let n = graph(&[(1, 2), (2, 1), (2, 100)]);
        let got = sources(n.through_hops(&[(id(1), id(2))]));
        assert_eq!(
            got,
            vec![
                (1, 2, "group:g1".into(), 1),
                (1, 100, "group:g1>group:g2".into(), 2),
            ]
        );
    }

    #[test]
    fn a_group_with_two_parents_gives_a_path_through_each() {
        let n = graph(&[(1, 3), (2, 3), (3, 100)]);
        let got = sources(n.through_hops(&[(id(3), id(100))]));
        assert_eq!(
            got,
            vec![
                (1, 100, "group:g1>group:g3".into(), 2),
                (2, 100, "group:g2>group:g3".into(), 2),
                (3, 100, "group:g3".into(), 1),
            ]
        );
    }

    #[test]
    fn a_deleted_group_is_neither_a_top_nor_a_way_through() {
        let mut n = graph(&[(1, 2), (2, 3), (3, 100)]);
        n.labels.remove(&id(2));
        assert_eq!(sources(n.through_hops(&[(id(2), id(3))])), vec![]);
        // Below g1 the path stops at the deleted g2 (which stays a principal of g1).
        assert_eq!(sources(n.below(id(1))), vec![(1, 2, "group:g1".into(), 1)]);
    }

    #[test]
    fn below_a_group_lists_direct_and_nested_members_with_their_paths() {
        let n = graph(&[(1, 100), (1, 2), (2, 101), (2, 1)]);
        assert_eq!(
            sources(n.below(id(1))),
            vec![
                (1, 2, "group:g1".into(), 1),
                (1, 100, "group:g1".into(), 1),
                (1, 101, "group:g1>group:g2".into(), 2),
            ]
        );
    }
}
