//! This process's c10d process group: the TCPStore rendezvous (served by rank 0, or by
//! torchrun's agent) and a Gloo backend, with the collectives the trainer uses. A failure (a
//! rank that never came, one that died, a timeout) comes back as an error naming the operation
//! and the ranks, never a hang past the launch's timeout.

use super::ffi;
use super::launch::Launch;
use anyhow::Context;
use std::ffi::{c_char, c_void, CString};
use tch::Tensor;

/// The process group of a data-parallel run.
pub struct Group {
    group: *mut ffi::CdistGroup,
    store: *mut ffi::CdistStore,
    pub rank: usize,
    pub world_size: usize,
}

// SAFETY: c10d's backends are made to be called from any thread, one collective at a time in
// the same order on every rank; `&self` methods below never run two at once on one rank
// because the trainer calls them from its one loop.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    /// Joins the run `launch` describes: connects to (or, as rank 0 without torchrun's agent,
    /// serves) the store, then waits for every rank to join the Gloo group.
    pub fn connect(launch: &Launch) -> anyhow::Result<Group> {
        let who = format!("rank {} of {}", launch.rank, launch.world_size);
        // SAFETY: a query without arguments.
        if unsafe { ffi::cdist_has_gloo() } == 0 {
            anyhow::bail!(
                "{who}: this build of compress has no Gloo process group (gloo's headers were missing when it was built; ./scripts/setup fetches them)"
            );
        }
        let timeout_ms = launch.timeout.as_millis().min(i64::MAX as u128) as i64;
        let host = CString::new(launch.master_addr.as_str()).map_err(|_| crate::bad_input!("MASTER_ADDR holds a NUL byte"))?;
        let prefix = if launch.agent_store { format!("/worker/attempt_{}", launch.restart_count) } else { String::new() };
        let prefix = CString::new(prefix).expect("no NUL in a formatted prefix");
        let serves = launch.rank == 0 && !launch.agent_store;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C strings that outlive the call; `err` receives a message on failure.
        let store =
            unsafe { ffi::cdist_store_tcp(host.as_ptr(), launch.master_port, launch.world_size as i32, serves as i32, prefix.as_ptr(), timeout_ms, &mut err) };
        if store.is_null() {
            let what = if serves { "serve" } else { "reach" };
            anyhow::bail!(
                "{who}: could not {what} the rendezvous store at {}:{} (MASTER_ADDR, MASTER_PORT): {}",
                launch.master_addr,
                launch.master_port,
                ffi::take_error(err)
            );
        }
        let interface =
            CString::new(launch.gloo_interface.clone().unwrap_or_default()).map_err(|_| crate::bad_input!("GLOO_SOCKET_IFNAME holds a NUL byte"))?;
        // SAFETY: `store` is live; the rest as above.
        let group = unsafe { ffi::cdist_group_gloo(store, launch.rank as i32, launch.world_size as i32, interface.as_ptr(), timeout_ms, &mut err) };
        if group.is_null() {
            // SAFETY: created above, not shared.
            unsafe { ffi::cdist_store_free(store) };
            anyhow::bail!(
                "{who}: the Gloo process group did not form within {:.0} s (every rank must start, with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE): {}",
                launch.timeout.as_secs_f64(),
                ffi::take_error(err)
            );
        }
        Ok(Group { group, store, rank: launch.rank, world_size: launch.world_size })
    }

    fn who(&self) -> String {
        format!("rank {} of {}", self.rank, self.world_size)
    }

    /// Sums `tensors` in place across the ranks: one coalesced collective for all of them
    /// (they must share a dtype and a device).
    pub fn allreduce_sum(&self, tensors: &[&Tensor]) -> anyhow::Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        for t in tensors {
            anyhow::ensure!(t.is_contiguous(), "c10d allreduce: a tensor of shape {:?} is not contiguous", t.size());
        }
        let ptrs: Vec<*mut c_void> = tensors.iter().map(|t| t.as_ptr() as *mut c_void).collect();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `ptrs` are live `at::Tensor*` for the call's duration.
        let rc = unsafe { ffi::cdist_allreduce_sum(self.group, ptrs.as_ptr(), ptrs.len(), &mut err) };
        if rc != 0 {
            anyhow::bail!("{}: allreduce of {} tensor(s) failed: {}", self.who(), tensors.len(), ffi::take_error(err));
        }
        Ok(())
    }

    /// Averages `tensors` in place across the ranks (a sum, then a division by the world size).
    pub fn allreduce_mean(&self, tensors: &[&Tensor]) -> anyhow::Result<()> {
        self.allreduce_sum(tensors)?;
        let _guard = tch::no_grad_guard();
        for t in tensors {
            let _ = t.shallow_clone().f_div_scalar_(self.world_size as f64).context("averaging an allreduced tensor")?;
        }
        Ok(())
    }

    /// Overwrites `tensor` on every rank with rank `root`'s.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> anyhow::Result<()> {
        anyhow::ensure!(tensor.is_contiguous(), "c10d broadcast: a tensor of shape {:?} is not contiguous", tensor.size());
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live `at::Tensor*` for the call's duration.
        let rc = unsafe { ffi::cdist_broadcast(self.group, tensor.as_ptr() as *mut c_void, root as i32, &mut err) };
        if rc != 0 {
            anyhow::bail!("{}: broadcast from rank {root} failed: {}", self.who(), ffi::take_error(err));
        }
        Ok(())
    }

    /// Rank 0 says whether the run starts (`rank0` is its own readiness, ignored elsewhere):
    /// the other ranks get an error of the same class (bad input or failure) when it cannot,
    /// instead of waiting for a rank 0 that has left.
    pub fn start_together(&self, rank0: Result<(), &anyhow::Error>) -> anyhow::Result<()> {
        let code = match rank0 {
            Ok(()) => 0i64,
            Err(e) if crate::error::is_bad_input(e) => 2,
            Err(_) => 3,
        };
        let verdict = Tensor::from_slice(&[code]);
        self.broadcast(&verdict, 0)?;
        match crate::host::vec::<i64>(&verdict)?.first().copied().unwrap_or(3) {
            0 => Ok(()),
            _ if self.rank == 0 => Ok(()),
            2 => Err(crate::bad_input!("{}: rank 0 refused the run (its messages say why)", self.who())),
            _ => anyhow::bail!("{}: rank 0 could not start the run (its messages say why)", self.who()),
        }
    }

    /// Whether `flag` holds on every rank (the same answer on every rank).
    pub fn all(&self, flag: bool) -> anyhow::Result<bool> {
        let count = Tensor::from_slice(&[flag as i64]);
        self.allreduce_sum(&[&count])?;
        Ok(crate::host::vec::<i64>(&count)?.first().copied() == Some(self.world_size as i64))
    }

    /// Whether every rank holds exactly rank 0's values in `tensors` (compared bit for bit on
    /// each rank, the verdict then shared): the same answer on every rank.
    pub fn agree_with_root(&self, tensors: &[&Tensor]) -> anyhow::Result<bool> {
        let _guard = tch::no_grad_guard();
        let mut differs = 0i64;
        for t in tensors {
            let root = t.contiguous().copy();
            self.broadcast(&root, 0)?;
            if !root.equal(t) {
                differs += 1;
            }
        }
        let count = Tensor::from_slice(&[differs]);
        self.allreduce_sum(&[&count])?;
        Ok(crate::host::vec::<i64>(&count)?.first().copied() == Some(0))
    }

    /// Waits until every rank reaches this point.
    pub fn barrier(&self) -> anyhow::Result<()> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the group is live.
        let rc = unsafe { ffi::cdist_barrier(self.group, &mut err) };
        if rc != 0 {
            anyhow::bail!("{}: barrier failed: {}", self.who(), ffi::take_error(err));
        }
        Ok(())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: both were created by `connect` and are freed once, the group first.
        unsafe {
            ffi::cdist_group_free(self.group);
            ffi::cdist_store_free(self.store);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A port no one listens on now (the OS picks it; a race with other programs is unlikely).
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn launch(rank: usize, world_size: usize, port: u16, timeout: Duration) -> Launch {
        Launch {
            rank,
            world_size,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            agent_store: false,
            restart_count: 0,
            gloo_interface: None,
            timeout,
        }
    }

    /// Two ranks (threads of this test, each its own Gloo group, as two processes would be)
    /// sum, average and broadcast real tensors through c10d.
    #[test]
    fn two_ranks_reduce_and_broadcast() {
        let port = free_port();
        let run = |rank: usize| {
            std::thread::spawn(move || -> anyhow::Result<[Vec<f64>; 4]> {
                let group = Group::connect(&launch(rank, 2, port, Duration::from_secs(60)))?;
                let r = rank as f64;
                let a = Tensor::from_slice(&[1.0f32 + r as f32, 2.0, 3.0]);
                let b = Tensor::from_slice(&[10.0f32 * (r as f32 + 1.0); 5]);
                group.allreduce_sum(&[&a, &b])?;
                let m = Tensor::from_slice(&[4.0 * r, -2.0 * r]);
                group.allreduce_mean(&[&m])?;
                let c = Tensor::from_slice(&[r + 7.0, r]);
                group.broadcast(&c, 1)?;
                group.barrier()?;
                let same = group.agree_with_root(&[&a, &c])?;
                let mine = Tensor::from_slice(&[r]);
                let differ = group.agree_with_root(&[&mine])?;
                assert!(same && !differ, "rank {rank}: equal tensors agree, different ones do not");
                let v = |t: &Tensor| crate::host::vec::<f64>(&t.to_kind(tch::Kind::Double));
                Ok([v(&a)?, v(&b)?, v(&m)?, v(&c)?])
            })
        };
        let (r0, r1) = (run(0), run(1));
        let (r0, r1) = (r0.join().unwrap().unwrap(), r1.join().unwrap().unwrap());
        assert_eq!(r0, r1, "every rank holds the same result");
        assert_eq!(r0[0], vec![3.0, 4.0, 6.0]);
        assert_eq!(r0[1], vec![30.0; 5]);
        assert_eq!(r0[2], vec![2.0, -1.0]);
        assert_eq!(r0[3], vec![8.0, 1.0], "rank 1's tensor on both");
    }

    /// A rank that never comes: the other's rendezvous ends with an error naming the wait,
    /// within the timeout, instead of hanging.
    #[test]
    fn a_missing_rank_is_a_timeout_error() {
        let started = std::time::Instant::now();
        let err = Group::connect(&launch(0, 2, free_port(), Duration::from_secs(3))).err().expect("rank 1 never joins");
        let text = format!("{err:#}");
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
        assert!(text.contains("rank 0 of 2") && text.contains("did not form"), "{text}");
    }
}
