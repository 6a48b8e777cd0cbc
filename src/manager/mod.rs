//! The manager: owns every unit's state. Service lifecycles are the pure transition function in
//! [`state`]; the executor that performs its actions lives beside it.

pub mod admin;
pub mod adopt;
pub mod control;
pub mod executor;
pub mod logs;
pub mod namespaces;
pub mod notify;
pub mod reexec;
pub mod request;
pub mod state;
