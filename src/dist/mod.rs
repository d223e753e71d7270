//! Data parallel on libtorch's own distributed engine, c10d: how this process was launched
//! ([`launch`]: torchrun's or any launcher's environment variables), and its process group
//! ([`group`]: a TCPStore rendezvous, Gloo on the CPU) through a small C++ shim (`shim.cpp`)
//! compiled against the torch wheel we link.

mod ffi;
pub mod group;
pub mod launch;

pub use group::Group;
pub use launch::Launch;
