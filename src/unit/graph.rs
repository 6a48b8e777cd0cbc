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
    /// unit → the units that require it (`requires`, their slice, a namespace they join): the
    /// reverse of `pulls`' `Requires` entries, for stopping what depends on a unit.
    required_by: BTreeMap<UnitName, BTreeSet<UnitName>>,
    /// unit → the units ordered after it: the reverse of `before`, for the stop order.
    after: BTreeMap<UnitName, BTreeSet<UnitName>>,
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
    match (&u.service, &u.scope) {
        (Some(s), _) => f(&s.slice, &u.name, None),
        (None, Some(s)) => f(&s.slice, &u.name, None),
        (None, None) => {
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

/// The bookkeeping of Tarjan's algorithm ([`Graph::sccs`]).
#[derive(Default)]
struct Tarjan<'g> {
    index: BTreeMap<&'g UnitName, usize>,
    low: BTreeMap<&'g UnitName, usize>,
    stack: Vec<&'g UnitName>,
    on_stack: BTreeSet<&'g UnitName>,
    out: Vec<BTreeSet<UnitName>>,
}

impl<'g> Tarjan<'g> {
    /// First visit of `v`: numbered in visiting order, and on the stack.
    fn enter(&mut self, v: &'g UnitName) {
        let i = self.index.len();
        self.index.insert(v, i);
        self.low.insert(v, i);
        self.stack.push(v);
        self.on_stack.insert(v);
    }

    fn lower(&mut self, v: &'g UnitName, to: usize) {
        if let Some(low) = self.low.get_mut(v) {
            *low = (*low).min(to);
        }
    }

    /// Every predecessor of `v` seen: if it is the root of a component, the component is
    /// what the stack holds above it.
    fn leave(&mut self, v: &'g UnitName) {
        if self.low.get(v) != self.index.get(v) {
            return;
        }
        let mut comp = BTreeSet::new();
        while let Some(w) = self.stack.pop() {
            self.on_stack.remove(w);
            comp.insert(w.clone());
            if w == v {
                break;
            }
        }
        self.out.push(comp);
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
        for (dep, _) in pulls.iter().filter(|(_, p)| *p == Pull::Requires) {
            self.required_by
                .entry(dep.clone())
                .or_default()
                .insert(u.name.clone());
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
                self.after
                    .entry(edge.first.clone())
                    .or_default()
                    .insert(edge.then.clone());
                self.edges.push(edge);
            }
        }
    }

    /// Every ordering cycle, each reported once (one per strongly connected component).
    /// Linear in the graph: each cycle's edge is found in an index, not by a walk over every
    /// edge, and the walk inside a component remembers where each unit stands in it.
    pub fn cycles(&self) -> Vec<Cycle> {
        // The edge from `then` to `first`, the last one written in a file if any is (an
        // implied edge only when no other exists).
        let mut edge_of: BTreeMap<(&UnitName, &UnitName), &OrderEdge> = BTreeMap::new();
        for e in &self.edges {
            let slot = edge_of.entry((&e.then, &e.first)).or_insert(e);
            if e.origin.is_some() || slot.origin.is_none() {
                *slot = e;
            }
        }
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
            let mut position: BTreeMap<UnitName, usize> = BTreeMap::from([(start.clone(), 0)]);
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
                if let Some(&pos) = position.get(&next) {
                    let mut units = path.split_off(pos);
                    units.push(next);
                    let edge = edge_of
                        .get(&(&units[0], &units[1]))
                        .copied()
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
                position.insert(next.clone(), path.len());
                path.push(next.clone());
                cur = next;
            }
        }
        out
    }

    /// Tarjan's strongly connected components over the "starts before" relation, in the order
    /// the recursive algorithm finds them. The depth-first walk keeps its own stack: recursion
    /// overflowed the thread's stack on a long `after` chain (100 000 units).
    fn sccs(&self) -> Vec<BTreeSet<UnitName>> {
        static NONE: BTreeSet<UnitName> = BTreeSet::new();
        let preds = |v: &UnitName| self.before.get(v).unwrap_or(&NONE).iter();
        let mut t = Tarjan::default();
        // The walk: each unit being visited, with its predecessors still to look at.
        let mut walk = Vec::new();
        for root in self.before.keys() {
            if t.index.contains_key(root) {
                continue;
            }
            t.enter(root);
            walk.push((root, preds(root)));
            while let Some((v, rest)) = walk.last_mut() {
                let v: &UnitName = v;
                match rest.next() {
                    Some(w) if !t.index.contains_key(w) => {
                        t.enter(w);
                        walk.push((w, preds(w)));
                    }
                    Some(w) => {
                        if t.on_stack.contains(w) {
                            t.lower(v, t.index[w]);
                        }
                    }
                    None => {
                        walk.pop();
                        t.leave(v);
                        if let Some((parent, _)) = walk.last() {
                            t.lower(parent, t.low[v]);
                        }
                    }
                }
            }
        }
        t.out
    }

    /// The units `u` is ordered after (that start before it).
    pub fn waits_on<'a>(&'a self, u: &UnitName) -> impl Iterator<Item = &'a UnitName> + 'a {
        self.before.get(u).into_iter().flatten()
    }

    /// Takes `gone` out of the graph (a transient unit collected once it stopped), leaving the
    /// graph [`Graph::new`] would build over the units that remain, `remaining` (edges naming
    /// `gone` that they declare are kept aside again, for when a unit of that name comes back).
    /// Costs a pass over the graph's tables and the remaining units' declarations, with no
    /// rebuild.
    pub fn remove<'a>(&mut self, gone: &UnitName, remaining: impl IntoIterator<Item = &'a Unit>) {
        if let Some(pulls) = self.pulls.remove(gone) {
            for (dep, _) in pulls {
                if let Some(set) = self.required_by.get_mut(&dep) {
                    set.remove(gone);
                }
            }
        }
        self.required_by.remove(gone);
        for first in self.before.remove(gone).unwrap_or_default() {
            if let Some(set) = self.after.get_mut(&first) {
                set.remove(gone);
            }
        }
        for then in self.after.remove(gone).unwrap_or_default() {
            if let Some(set) = self.before.get_mut(&then) {
                set.remove(gone);
            }
        }
        self.edges.retain(|e| e.first != *gone && e.then != *gone);
        for edges in self.dangling.values_mut() {
            edges.retain(|e| e.first != *gone && e.then != *gone);
        }
        self.dangling.retain(|_, edges| !edges.is_empty());
        for u in remaining {
            each_declared_edge(u, |first, then, origin| {
                if first == gone || then == gone {
                    self.dangling
                        .entry(gone.clone())
                        .or_default()
                        .push(OrderEdge {
                            first: first.clone(),
                            then: then.clone(),
                            origin: origin.map(|(at, key)| (at.clone(), key)),
                        });
                }
            });
        }
    }

    /// The units that require `u` (their failure or stop follows its): those that name it in
    /// `requires`, live in it (a slice), or join its namespaces.
    pub fn required_by<'a>(&'a self, u: &UnitName) -> impl Iterator<Item = &'a UnitName> + 'a {
        self.required_by.get(u).into_iter().flatten()
    }

    /// The units ordered after `u` (which stop before it).
    pub fn ordered_after<'a>(&'a self, u: &UnitName) -> impl Iterator<Item = &'a UnitName> + 'a {
        self.after.get(u).into_iter().flatten()
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::unit::model::Dep;
    use crate::unit::parse_unit;

    fn unit(name: &str, text: &str) -> Unit {
        parse_unit(&UnitName::parse(name).unwrap(), Path::new(name), text)
            .unwrap_or_else(|d| panic!("{d:?}"))
    }

    fn n(s: &str) -> UnitName {
        UnitName::parse(s).unwrap()
    }

    /// `count` services, each after the one before it (`u0` first); with `close`, the first is
    /// also after the last.
    fn chain(count: usize, close: bool) -> Vec<Unit> {
        let path = Path::new("u.service.toml");
        let template = parse_unit(&n("u.service"), path, "[service]\nexec = [\"/bin/true\"]\n")
            .expect("template");
        let name = |i: usize| n(&format!("u{i}.service"));
        (0..count)
            .map(|i| {
                let mut u = template.clone();
                u.name = name(i);
                let prev = match i {
                    0 if close => Some(name(count - 1)),
                    0 => None,
                    i => Some(name(i - 1)),
                };
                let deps = &mut u.service.as_mut().expect("a service").deps;
                deps.after = prev
                    .map(|name| Dep {
                        name,
                        at: Location::at(path, "", 0),
                    })
                    .into_iter()
                    .collect();
                u
            })
            .collect()
    }

    /// On a thread with a small stack: the cycle search must not grow the stack with the
    /// chain's length (the recursive search overflowed any stack at 100 000 units).
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_chain_of_100_000_units_has_no_cycle() {
        let units = chain(100_000, false);
        let g = Graph::new(&units);
        assert!(on_small_stack(move || g.cycles()).is_empty());
    }

    #[test]
    fn a_cycle_of_100_000_units_is_found_and_spelled_out() {
        let units = chain(100_000, true);
        let g = Graph::new(&units);
        let cycles = on_small_stack(move || g.cycles());
        assert_eq!(cycles.len(), 1);
        let c = &cycles[0];
        assert_eq!(c.units.len(), 100_001);
        // From the smallest name, each unit after the next: u0 after u99999 after u99998 …
        assert_eq!(c.units[0], n("u0.service"));
        assert_eq!(c.units[1], n("u99999.service"));
        assert_eq!(c.units[100_000], n("u0.service"));
        assert_eq!(
            (&c.edge.first, &c.edge.then),
            (&n("u99999.service"), &n("u0.service"))
        );
        assert_eq!(c.edge.origin.as_ref().map(|(_, key)| *key), Some("after"));
    }

    #[test]
    fn many_small_cycles_are_each_reported_once() {
        // 2000 pairs, each two units after each other.
        let mut units = Vec::new();
        for i in 0..2000 {
            let mut pair = chain(2, true);
            for (u, other) in [(0, 1), (1, 0)] {
                pair[u].name = n(&format!("p{i}-{u}.service"));
                let deps = &mut pair[u].service.as_mut().unwrap().deps;
                deps.after[0].name = n(&format!("p{i}-{other}.service"));
            }
            units.extend(pair);
        }
        let cycles = Graph::new(&units).cycles();
        assert_eq!(cycles.len(), 2000);
        assert!(cycles.iter().all(|c| c.units.len() == 3));
    }

    fn names<'a>(it: impl Iterator<Item = &'a UnitName>) -> Vec<&'a str> {
        it.map(UnitName::as_str).collect()
    }

    /// A removed unit leaves the graph the remaining units would build, and coming back
    /// restores the edges others declared towards it.
    #[test]
    fn removing_a_unit_and_adding_it_again() {
        let exec = "[service]\nexec = [\"/bin/true\"]\n";
        let a = unit("a.service", exec);
        let t = unit(
            "t.service",
            &format!(
                "[unit]\nrequires = [\"a.service\"]\nafter = [\"a.service\"]\nbefore = [\"b.service\"]\n{exec}"
            ),
        );
        let b = unit(
            "b.service",
            &format!("[unit]\nrequires = [\"t.service\"]\nafter = [\"t.service\"]\n{exec}"),
        );
        let mut g = Graph::new([&a, &t, &b]);
        assert_eq!(names(g.required_by(&n("a.service"))), ["t.service"]);
        assert_eq!(names(g.ordered_after(&n("t.service"))), ["b.service"]);
        assert_eq!(names(g.waits_on(&n("b.service"))), ["t.service"]);

        g.remove(&n("t.service"), [&a, &b]);
        assert!(names(g.required_by(&n("a.service"))).is_empty());
        assert!(names(g.waits_on(&n("b.service"))).is_empty());
        assert!(names(g.ordered_after(&n("a.service"))).is_empty());
        assert_eq!(
            names(g.requirements(&n("b.service"))),
            ["system.slice", "t.service"]
        );
        assert!(g.cycles().is_empty());

        let exists = |x: &UnitName| {
            ["a.service", "t.service", "b.service", "system.slice"].contains(&x.as_str())
        };
        g.add_new(&[&t], exists);
        assert_eq!(names(g.required_by(&n("a.service"))), ["t.service"]);
        assert_eq!(names(g.waits_on(&n("b.service"))), ["t.service"]);
        assert_eq!(names(g.ordered_after(&n("t.service"))), ["b.service"]);
        assert_eq!(
            names(g.waits_on(&n("t.service"))),
            ["a.service", "system.slice"]
        );
    }
}
