//! The dependency graph: which units a start pulls in (`requires`, `wants`, the slices a unit
//! lives in, the units whose namespaces it joins) and in which order they start (`after`,
//! `before`; a slice before anything in it; a namespace's owner before its guests). Stop order is
//! the reverse. Ordering cycles are found here and reported with the cycle spelled out.

use std::collections::{BTreeMap, BTreeSet};

use super::diag::Location;
use super::model::Unit;
use super::name::UnitName;

/// Why one unit starts before another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEdge {
    /// Starts first.
    pub first: UnitName,
    /// Starts after `first`.
    pub then: UnitName,
    /// Where the edge was written (`None` for implied edges: slices, shared namespaces), with
    /// the key it was written under.
    pub origin: Option<(Location, &'static str)>,
}

/// How strongly a start pulls another unit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pull {
    /// Its failure fails the puller (`requires`, slices, shared namespaces).
    Requires,
    /// Its failure is ignored (`wants`).
    Wants,
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// unit → the units that must be started before it.
    before: BTreeMap<UnitName, BTreeSet<UnitName>>,
    /// unit → units its start pulls in.
    pulls: BTreeMap<UnitName, Vec<(UnitName, Pull)>>,
    edges: Vec<OrderEdge>,
    /// Ordering edges declared by units of the graph whose other end is missing, by that
    /// missing unit: they join the graph when it is added ([`Graph::add_new`]), which then
    /// looks at the units that named it, not at every unit.
    dangling: BTreeMap<UnitName, Vec<OrderEdge>>,
}

/// Calls `f` with each ordering edge a unit declares (first, then, where it was written),
/// whether or not its other end exists: its slice before it, its `after` and `before`, the
/// owners of namespaces it joins before it. Borrows: nothing is cloned for edges not taken.
fn each_declared_edge(
    u: &Unit,
    mut f: impl FnMut(&UnitName, &UnitName, Option<(&Location, &'static str)>),
) {
    match &u.service {
        Some(s) => f(&s.slice, &u.name, None),
        None => {
            if let Some(parent) = u.name.parent_slice() {
                f(&parent, &u.name, None);
            }
        }
    }
    if let Some(s) = &u.service {
        for d in &s.deps.after {
            f(&d.name, &u.name, Some((&d.at, "after")));
        }
        for d in &s.deps.before {
            f(&u.name, &d.name, Some((&d.at, "before")));
        }
        for other in s.namespaces.shared_with() {
            f(other, &u.name, None);
        }
    }
}

/// An ordering cycle: the units in order, each starting after the next, the first repeated at
/// the end; and the edge from the first to the second (its place is where the error is
/// reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub units: Vec<UnitName>,
    pub edge: OrderEdge,
}

impl Cycle {
    pub fn describe(&self) -> String {
        let path: Vec<&str> = self.units.iter().map(UnitName::as_str).collect();
        format!(
            "ordering cycle: {} (each must start after the next)",
            path.join(" → ")
        )
    }
}

impl Graph {
    /// Builds the graph over loaded units. Edges to units that are not in `units` are dropped
    /// (`after`/`before` on a missing unit are ignored; missing `requires` are reported by the
    /// loader and fail at start).
    pub fn new<'a>(units: impl IntoIterator<Item = &'a Unit>) -> Self {
        let units: BTreeMap<&UnitName, &Unit> = units.into_iter().map(|u| (&u.name, u)).collect();
        let mut g = Graph::default();
        for u in units.values() {
            g.add_own(u, |n| units.contains_key(n));
        }
        g
    }

    /// Adds units that are new to the graph — a transient unit and the slices it brought —
    /// without rebuilding it: their own edges and pulls, and the edges of the units already in
    /// the graph that name them (kept aside as dangling while they were missing). `exists` says
    /// whether a name is a loaded unit, the new ones included. The result is the graph
    /// [`Graph::new`] would build over the loaded units (edges possibly in another order).
    /// Costs what the new units and the edges naming them cost, not a walk over every unit: a
    /// walk made a burst of transient units O(n²) (about 250 000 instructions per start with
    /// 1000 units loaded).
    pub fn add_new(&mut self, new: &[&Unit], exists: impl Fn(&UnitName) -> bool) {
        for u in new {
            self.add_own(u, &exists);
        }
        for u in new {
            for e in self.dangling.remove(&u.name).unwrap_or_default() {
                self.add_or_keep(e, &exists);
            }
        }
    }

    /// A unit's own entry: its pulls and the edges it declares, to units `exists` accepts.
    fn add_own(&mut self, u: &Unit, exists: impl Fn(&UnitName) -> bool) {
        self.before.entry(u.name.clone()).or_default();
        let mut pulls = Vec::new();
        if let Some(slice) = u.slice() {
            pulls.push((slice, Pull::Requires));
        }
        if let Some(s) = &u.service {
            for other in s.namespaces.shared_with() {
                pulls.push((other.clone(), Pull::Requires));
            }
            pulls.extend(
                s.deps
                    .requires
                    .iter()
                    .map(|d| (d.name.clone(), Pull::Requires)),
            );
            pulls.extend(s.deps.wants.iter().map(|d| (d.name.clone(), Pull::Wants)));
        }
        self.pulls.insert(u.name.clone(), pulls);
        each_declared_edge(u, |first, then, origin| {
            let edge = OrderEdge {
                first: first.clone(),
                then: then.clone(),
                origin: origin.map(|(at, key)| (at.clone(), key)),
            };
            self.add_or_keep(edge, &exists);
        });
    }

    /// Adds an edge whose ends both exist; keeps one naming a missing unit aside for when
    /// that unit is added.
    fn add_or_keep(&mut self, edge: OrderEdge, exists: impl Fn(&UnitName) -> bool) {
        let missing = [&edge.first, &edge.then].into_iter().find(|n| !exists(n));
        match missing {
            Some(m) => self.dangling.entry(m.clone()).or_default().push(edge),
            None => {
                self.before
                    .entry(edge.then.clone())
                    .or_default()
                    .insert(edge.first.clone());
                self.edges.push(edge);
            }
        }
    }

    /// Every ordering cycle, each reported once (one per strongly connected component).
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut out = Vec::new();
        for scc in self.sccs() {
            if scc.len() < 2 {
                continue;
            }
            // Walk "starts after" edges inside the component from its smallest unit until a
            // unit repeats.
            let start = scc
                .iter()
                .min()
                .cloned()
                .unwrap_or_else(UnitName::root_slice);
            let mut path = vec![start.clone()];
            let mut cur = start;
            loop {
                let next = self
                    .before
                    .get(&cur)
                    .into_iter()
                    .flatten()
                    .find(|n| scc.contains(*n))
                    .cloned();
                let Some(next) = next else { break };
                if let Some(pos) = path.iter().position(|p| *p == next) {
                    let mut units = path[pos..].to_vec();
                    units.push(next.clone());
                    let edge = self
                        .edges
                        .iter()
                        .filter(|e| e.then == units[0] && e.first == units[1])
                        .max_by_key(|e| e.origin.is_some())
                        .or_else(|| {
                            self.edges
                                .iter()
                                .find(|e| scc.contains(&e.first) && scc.contains(&e.then))
                        })
                        .cloned();
                    if let Some(edge) = edge {
                        out.push(Cycle { units, edge });
                    }
                    break;
                }
                path.push(next.clone());
                cur = next;
            }
        }
        out
    }

    /// Tarjan's strongly connected components over the "starts before" relation.
    fn sccs(&self) -> Vec<BTreeSet<UnitName>> {
        struct St<'g> {
            g: &'g Graph,
            index: BTreeMap<&'g UnitName, usize>,
            low: BTreeMap<&'g UnitName, usize>,
            stack: Vec<&'g UnitName>,
            on_stack: BTreeSet<&'g UnitName>,
            next: usize,
            out: Vec<BTreeSet<UnitName>>,
        }
        fn visit<'g>(st: &mut St<'g>, v: &'g UnitName) {
            st.index.insert(v, st.next);
            st.low.insert(v, st.next);
            st.next += 1;
            st.stack.push(v);
            st.on_stack.insert(v);
            let preds: Vec<&'g UnitName> = st.g.before.get(v).into_iter().flatten().collect();
            for w in preds {
                if !st.index.contains_key(w) {
                    visit(st, w);
                    let lw = st.low[w];
                    let lv = st.low[v];
                    st.low.insert(v, lv.min(lw));
                } else if st.on_stack.contains(w) {
                    let iw = st.index[w];
                    let lv = st.low[v];
                    st.low.insert(v, lv.min(iw));
                }
            }
            if st.low[v] == st.index[v] {
                let mut comp = BTreeSet::new();
                while let Some(w) = st.stack.pop() {
                    st.on_stack.remove(w);
                    comp.insert(w.clone());
                    if w == v {
                        break;
                    }
                }
                st.out.push(comp);
            }
        }
        let mut st = St {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in self.before.keys() {
            if !st.index.contains_key(v) {
                visit(&mut st, v);
            }
        }
        st.out
    }

    /// The units `u` is ordered after (that start before it).
    pub fn waits_on<'a>(&'a self, u: &UnitName) -> impl Iterator<Item = &'a UnitName> + 'a {
        self.before.get(u).into_iter().flatten()
    }

    /// The units whose failure fails `u`: `requires`, its slice, the owners of namespaces it
    /// joins.
    pub fn requirements<'a>(&'a self, u: &UnitName) -> impl Iterator<Item = &'a UnitName> + 'a {
        self.pulls
            .get(u)
            .into_iter()
            .flatten()
            .filter(|(_, p)| *p == Pull::Requires)
            .map(|(n, _)| n)
    }

    /// What starting `roots` pulls in: the roots and, transitively, their requirements, wants,
    /// slices and namespace owners. Names not in the graph are kept (the start fails on them).
    pub fn transaction(&self, roots: &[UnitName]) -> BTreeMap<UnitName, Pull> {
        let mut out: BTreeMap<UnitName, Pull> = BTreeMap::new();
        let mut todo: Vec<(UnitName, Pull)> =
            roots.iter().map(|r| (r.clone(), Pull::Requires)).collect();
        while let Some((u, pull)) = todo.pop() {
            match out.get(&u) {
                Some(p) if *p <= pull => continue,
                _ => {}
            }
            out.insert(u.clone(), pull);
            for (dep, how) in self.pulls.get(&u).into_iter().flatten() {
                // A unit wanted by a wanted unit is still only wanted.
                todo.push((dep.clone(), (*how).max(pull)));
            }
        }
        out
    }

    /// Start order for a set of units: layers whose units may start in parallel, each layer
    /// after every unit it is ordered after. Units of a cycle (which the loader refuses) come
    /// last, in name order, so the function is total.
    pub fn start_layers(&self, set: &BTreeSet<UnitName>) -> Vec<Vec<UnitName>> {
        let mut remaining: BTreeMap<&UnitName, BTreeSet<&UnitName>> = set
            .iter()
            .map(|u| {
                let firsts = self
                    .before
                    .get(u)
                    .into_iter()
                    .flatten()
                    .filter(|f| set.contains(*f))
                    .collect();
                (u, firsts)
            })
            .collect();
        let mut layers = Vec::new();
        while !remaining.is_empty() {
            let ready: Vec<&UnitName> = remaining
                .iter()
                .filter(|(_, firsts)| firsts.is_empty())
                .map(|(u, _)| *u)
                .collect();
            if ready.is_empty() {
                layers.push(remaining.keys().map(|u| (*u).clone()).collect());
                break;
            }
            for u in &ready {
                remaining.remove(u);
            }
            for firsts in remaining.values_mut() {
                for u in &ready {
                    firsts.remove(u);
                }
            }
            layers.push(ready.into_iter().cloned().collect());
        }
        layers
    }

    /// Stop order: the start order reversed.
    pub fn stop_layers(&self, set: &BTreeSet<UnitName>) -> Vec<Vec<UnitName>> {
        let mut layers = self.start_layers(set);
        layers.reverse();
        layers
    }
}
