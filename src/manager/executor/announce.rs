//! State changes as the bus hears them: once per unit and turn, with the state the unit ended
//! the turn in, as systemd does. A turn often moves a unit twice — a main process exits into
//! `deactivating (stop-sigterm)` and, its cgroup being empty already, on to `inactive (dead)`
//! — and every announcement costs a `UnitStateChanged` and a `PropertiesChanged` to each
//! connection, which a client reads only to learn where the unit is now. A unit that comes back
//! to where it started the turn is not announced at all.
//!
//! A job's result is announced after its unit's state: [`Announcements::take`] is called
//! before each `JobRemoved` and at the end of the turn.

use std::collections::HashMap;

use super::super::engine::service::ActiveState;
use super::super::request::Notification;
use crate::unit::UnitName;

type State = (ActiveState, &'static str);

/// The state changes of one turn not yet announced (see the module doc).
#[derive(Debug, Default)]
pub(super) struct Announcements {
    /// In the order the units first changed: (unit, state before the turn, state now).
    pending: Vec<(UnitName, State, State)>,
    /// Where each unit is in `pending`.
    index: HashMap<UnitName, usize>,
}

impl Announcements {
    /// `unit` moved from `from` to `to`.
    pub(super) fn changed(&mut self, unit: &UnitName, from: State, to: State) {
        match self.index.get(unit) {
            Some(&i) => self.pending[i].2 = to,
            None => {
                self.index.insert(unit.clone(), self.pending.len());
                self.pending.push((unit.clone(), from, to));
            }
        }
    }

    /// The announcements owed, in the order the units first changed; none is owed after.
    pub(super) fn take(&mut self) -> impl Iterator<Item = Notification> + use<> {
        self.index.clear();
        std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(_, from, to)| from != to)
            .map(
                |(unit, _, (active_state, sub_state))| Notification::UnitStateChanged {
                    unit,
                    active_state,
                    sub_state,
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UnitName {
        UnitName::parse(s).unwrap()
    }

    const ACTIVE: State = (ActiveState::Active, "running");
    const STOPPING: State = (ActiveState::Deactivating, "stop-sigterm");
    const DEAD: State = (ActiveState::Inactive, "dead");
    const STARTING: State = (ActiveState::Activating, "start");

    fn states(a: &mut Announcements) -> Vec<(String, ActiveState, &'static str)> {
        a.take()
            .map(|n| match n {
                Notification::UnitStateChanged {
                    unit,
                    active_state,
                    sub_state,
                } => (unit.to_string(), active_state, sub_state),
                other => panic!("not a state change: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_unit_is_announced_once_with_where_it_ended_the_turn() {
        let mut a = Announcements::default();
        let (x, y) = (name("x.service"), name("y.service"));
        a.changed(&x, ACTIVE, STOPPING);
        a.changed(&y, DEAD, STARTING);
        a.changed(&x, STOPPING, DEAD);
        assert_eq!(
            states(&mut a),
            [
                ("x.service".to_owned(), ActiveState::Inactive, "dead"),
                ("y.service".to_owned(), ActiveState::Activating, "start"),
            ]
        );
        assert!(states(&mut a).is_empty(), "announced twice");
    }

    #[test]
    fn a_unit_back_where_it_began_is_not_announced() {
        let mut a = Announcements::default();
        let x = name("x.service");
        a.changed(&x, DEAD, STARTING);
        a.changed(&x, STARTING, DEAD);
        assert!(states(&mut a).is_empty());
    }

    #[test]
    fn what_was_taken_starts_afresh() {
        // A job's result goes out between two changes of its unit: both are announced.
        let mut a = Announcements::default();
        let x = name("x.service");
        a.changed(&x, DEAD, STARTING);
        assert_eq!(states(&mut a).len(), 1);
        a.changed(&x, STARTING, ACTIVE);
        assert_eq!(
            states(&mut a),
            [("x.service".to_owned(), ActiveState::Active, "running")]
        );
    }
}
