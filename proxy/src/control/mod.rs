//! The control plane: what an operator uses to steer a running proxy. The admin
//! API and dashboard ([`admin`]), its command-line client ([`ctl`]), hot reload of
//! the profile file ([`reload`]), the state all of them share with the listeners
//! ([`state`]), and the shutdown stage that every task watches ([`shutdown`]).

pub mod admin;
pub mod ctl;
pub mod reload;
pub mod shutdown;
pub mod state;
