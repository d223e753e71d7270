//! The `extern "C"` entry points of `shim.cpp`. Every one returns its failure as text in `err`
//! (freed with `cdist_free_error`); nothing unwinds across the boundary.

use std::ffi::{c_char, c_int, c_void};

/// The shim's TCPStore (behind an optional key prefix).
#[repr(C)]
pub struct CdistStore {
    _opaque: [u8; 0],
}

/// The shim's process group (a c10d backend and the timeout of its operations).
#[repr(C)]
pub struct CdistGroup {
    _opaque: [u8; 0],
}

extern "C" {
    pub fn cdist_free_error(err: *mut c_char);
    pub fn cdist_has_gloo() -> c_int;
    pub fn cdist_store_tcp(
        host: *const c_char,
        port: u16,
        world_size: c_int,
        is_server: c_int,
        prefix: *const c_char,
        timeout_ms: i64,
        err: *mut *mut c_char,
    ) -> *mut CdistStore;
    pub fn cdist_store_free(store: *mut CdistStore);
    pub fn cdist_group_gloo(
        store: *mut CdistStore,
        rank: c_int,
        world_size: c_int,
        interface: *const c_char,
        timeout_ms: i64,
        err: *mut *mut c_char,
    ) -> *mut CdistGroup;
    pub fn cdist_has_nccl() -> c_int;
    /// Sets the current CUDA device to `device`, then forms the NCCL group on it.
    pub fn cdist_group_nccl(store: *mut CdistStore, rank: c_int, world_size: c_int, device: c_int, timeout_ms: i64, err: *mut *mut c_char) -> *mut CdistGroup;
    pub fn cdist_group_free(group: *mut CdistGroup);
    /// `tensors` are `at::Tensor*` (tch's `C_tensor`), summed in place across the group.
    pub fn cdist_allreduce_sum(group: *mut CdistGroup, tensors: *const *mut c_void, count: usize, err: *mut *mut c_char) -> c_int;
    pub fn cdist_broadcast(group: *mut CdistGroup, tensor: *mut c_void, root: c_int, err: *mut *mut c_char) -> c_int;
    pub fn cdist_barrier(group: *mut CdistGroup, err: *mut *mut c_char) -> c_int;
}

/// Takes the shim's error text (if any), freeing it.
pub fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "the c10d shim failed without a message".into();
    }
    // SAFETY: the shim hands back a NUL-terminated malloc'ed string, which we free once here.
    let text = unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { cdist_free_error(err) };
    text
}
