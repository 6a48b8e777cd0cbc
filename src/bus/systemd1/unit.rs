//! Unit objects of the subset at `/org/freedesktop/systemd1/unit/ESCAPED` (DESIGN §9):
//! `org.freedesktop.systemd1.Unit` with `Id`, `Names`, `Description`, `LoadState`,
//! `ActiveState` and `SubState`, and the kind's own interface (`org.freedesktop.systemd1.Scope`,
//! `.Slice` or `.Service`, as systemd has them) with `ControlGroup` and `Slice`. Each read asks
//! the manager, as `org.corral1.Unit`'s do; each is for uid 0 only.

use std::sync::Arc;

use zbus::message::Header;
use zbus::{fdo, interface};

use crate::bus::access::Gate;
use crate::manager::request::{Request, UnitProperties};
use crate::unit::{Kind, UnitName};

/// What a unit's objects of the subset hold: its name and the connection's gate.
#[derive(Debug, Clone)]
pub struct UnitRef {
    name: UnitName,
    gate: Gate,
}

impl UnitRef {
    pub fn new(name: UnitName, gate: Gate) -> Self {
        UnitRef { name, gate }
    }

    /// The unit's properties, for the privileged caller of the read with `header`.
    async fn props(&self, header: Option<&Header<'_>>) -> fdo::Result<Arc<UnitProperties>> {
        let who = super::require_root(&self.gate, header).await?;
        let unit = self.name.clone();
        let props = self
            .gate
            .ask(&who, |reply| Request::GetProperties {
                unit,
                usage: false,
                reply,
            })
            .await
            .map_err(super::error::Error::from)?
            .map_err(super::error::Error::from)?;
        Ok(Arc::new(props))
    }
}

/// `org.freedesktop.systemd1.Unit` of one unit.
#[derive(Debug)]
pub struct UnitObject(pub UnitRef);

#[interface(name = "org.freedesktop.systemd1.Unit", introspection_docs = false)]
impl UnitObject {
    #[zbus(property(emits_changed_signal = "const"))]
    async fn id(&self) -> fdo::Result<String> {
        Ok(self.0.name.to_string())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn names(&self) -> fdo::Result<Vec<String>> {
        Ok(vec![self.0.name.to_string()])
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn description(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self.0.props(header.as_ref()).await?.description.clone())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn load_state(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self
            .0
            .props(header.as_ref())
            .await?
            .load_state
            .as_str()
            .to_string())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn active_state(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        Ok(self
            .0
            .props(header.as_ref())
            .await?
            .active_state
            .as_str()
            .to_string())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn sub_state(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self.0.props(header.as_ref()).await?.sub_state.to_string())
    }
}

/// The kind's interface of one unit: `org.freedesktop.systemd1.Scope`, `.Slice` or `.Service`.
macro_rules! kind_object {
    ($ty:ident, $iface:literal) => {
        #[derive(Debug)]
        pub struct $ty(pub UnitRef);

        #[interface(name = $iface, introspection_docs = false)]
        impl $ty {
            /// The unit's cgroup, relative to the cgroup2 mount.
            #[zbus(property(emits_changed_signal = "false"))]
            async fn control_group(
                &self,
                #[zbus(header)] header: Option<Header<'_>>,
            ) -> fdo::Result<String> {
                Ok(self.0.props(header.as_ref()).await?.control_group.clone())
            }

            #[zbus(property(emits_changed_signal = "false"))]
            async fn slice(
                &self,
                #[zbus(header)] header: Option<Header<'_>>,
            ) -> fdo::Result<String> {
                Ok(self.0.props(header.as_ref()).await?.slice.clone())
            }
        }
    };
}

kind_object!(ScopeObject, "org.freedesktop.systemd1.Scope");
kind_object!(SliceObject, "org.freedesktop.systemd1.Slice");
kind_object!(ServiceObject, "org.freedesktop.systemd1.Service");

/// Registers a unit's objects of the subset at its path on `conn`.
pub async fn register(conn: &zbus::Connection, name: &UnitName, gate: &Gate) -> zbus::Result<()> {
    let path = super::unit_path(name);
    let server = conn.object_server();
    let unit = UnitRef::new(name.clone(), gate.clone());
    server.at(&path, UnitObject(unit.clone())).await?;
    match name.kind() {
        Kind::Scope => server.at(&path, ScopeObject(unit)).await?,
        Kind::Slice => server.at(&path, SliceObject(unit)).await?,
        Kind::Service => server.at(&path, ServiceObject(unit)).await?,
    };
    Ok(())
}

/// Removes what [`register`] registered.
pub async fn unregister(conn: &zbus::Connection, name: &UnitName) -> zbus::Result<()> {
    let path = super::unit_path(name);
    let server = conn.object_server();
    server.remove::<UnitObject, _>(&path).await?;
    match name.kind() {
        Kind::Scope => server.remove::<ScopeObject, _>(&path).await?,
        Kind::Slice => server.remove::<SliceObject, _>(&path).await?,
        Kind::Service => server.remove::<ServiceObject, _>(&path).await?,
    };
    Ok(())
}

/// The same on a connection still being built (every unit registered up front).
pub fn serve_at(
    builder: zbus::connection::Builder<'static>,
    name: &UnitName,
    gate: &Gate,
) -> zbus::Result<zbus::connection::Builder<'static>> {
    let path = super::unit_path(name);
    let unit = UnitRef::new(name.clone(), gate.clone());
    let builder = builder.serve_at(path.clone(), UnitObject(unit.clone()))?;
    match name.kind() {
        Kind::Scope => builder.serve_at(path, ScopeObject(unit)),
        Kind::Slice => builder.serve_at(path, SliceObject(unit)),
        Kind::Service => builder.serve_at(path, ServiceObject(unit)),
    }
}
