//! `org.corral1.Unit` at `/org/corral1/unit/ESCAPED` (DESIGN §4): the state properties of one
//! unit and its job methods. The object holds only the unit's name and the links it needs;
//! every property read asks the manager for a fresh [`UnitProperties`], so there
//! is no cached state to go stale.
//!
//! Not yet here (issue 5): `Limits`, `EffectiveLimits`, the usage figures read from the cgroup,
//! `Kill`, `SetLimits`, `Freeze`, `Thaw`, `GetProcesses`.

use zbus::{fdo, interface};

use super::{Access, Error, ManagerHandle};
use crate::manager::request::{JobKind, UnitProperties};
use crate::unit::UnitName;

/// One unit's object on one connection.
#[derive(Debug)]
pub struct UnitObject {
    name: UnitName,
    manager: ManagerHandle,
    access: Access,
    peer_uid: Option<u32>,
}

impl UnitObject {
    pub fn new(
        name: UnitName,
        manager: ManagerHandle,
        access: Access,
        peer_uid: Option<u32>,
    ) -> Self {
        UnitObject {
            name,
            manager,
            access,
            peer_uid,
        }
    }

    async fn props(&self) -> fdo::Result<UnitProperties> {
        Ok(self.manager.properties(&self.name).await?)
    }

    async fn job(&self, method: &str, kind: JobKind) -> Result<u32, Error> {
        self.access.check(self.peer_uid, method)?;
        self.manager.queue_job(self.name.clone(), kind).await
    }
}

#[interface(name = "org.corral1.Unit", introspection_docs = false)]
impl UnitObject {
    #[zbus(out_args("job"))]
    async fn start(&self) -> Result<u32, Error> {
        self.job("Start", JobKind::Start).await
    }

    #[zbus(out_args("job"))]
    async fn stop(&self) -> Result<u32, Error> {
        self.job("Stop", JobKind::Stop).await
    }

    #[zbus(out_args("job"))]
    async fn restart(&self) -> Result<u32, Error> {
        self.job("Restart", JobKind::Restart).await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn name(&self) -> fdo::Result<String> {
        Ok(self.name.to_string())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn kind(&self) -> fdo::Result<String> {
        Ok(self.name.kind().as_str().to_string())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn description(&self) -> fdo::Result<String> {
        Ok(self.props().await?.description)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn load_state(&self) -> fdo::Result<String> {
        Ok(self.props().await?.load_state.as_str().to_string())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn load_error(&self) -> fdo::Result<String> {
        Ok(self.props().await?.load_error)
    }

    #[zbus(property)]
    async fn active_state(&self) -> fdo::Result<String> {
        Ok(self.props().await?.active_state.as_str().to_string())
    }

    #[zbus(property)]
    async fn sub_state(&self) -> fdo::Result<String> {
        Ok(self.props().await?.sub_state.to_string())
    }

    #[zbus(property(emits_changed_signal = "invalidates"))]
    async fn result(&self) -> fdo::Result<String> {
        Ok(self.props().await?.result.as_str().to_string())
    }

    #[zbus(property(emits_changed_signal = "invalidates"), name = "MainPID")]
    async fn main_pid(&self) -> fdo::Result<u32> {
        Ok(self.props().await?.main_pid)
    }

    #[zbus(property(emits_changed_signal = "invalidates"))]
    async fn exit_status(&self) -> fdo::Result<i32> {
        Ok(self.props().await?.exit_status)
    }

    #[zbus(property(emits_changed_signal = "invalidates"), name = "NRestarts")]
    async fn n_restarts(&self) -> fdo::Result<u32> {
        Ok(self.props().await?.n_restarts)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn control_group(&self) -> fdo::Result<String> {
        Ok(self.props().await?.control_group)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn slice(&self) -> fdo::Result<String> {
        Ok(self.props().await?.slice)
    }
}
