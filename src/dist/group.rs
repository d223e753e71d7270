//! This process's c10d process group: the TCPStore rendezvous (served by rank 0, or by
//! torchrun's agent) and a Gloo backend, with the collectives the trainer uses. A failure (a
//! rank that never came, one that died, a timeout) comes back as an error naming the operation
//! and the ranks, never a hang past the launch's timeout.

use super::ffi;
use super::launch::Launch;
use anyhow::Context;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tch::{Device, Tensor};

/// The process group of a data-parallel run.
pub struct Group {
    group: *mut ffi::CdistGroup,
    store: *mut ffi::CdistStore,
    pub rank: usize,
    pub world_size: usize,
    backend: Backend,
    /// The device the group's collectives run on (NCCL's GPU; the CPU for Gloo).
    device: Device,
    /// Nanoseconds this process has spent in collectives, waiting for the others included.
    spent: AtomicU64,
}

/// A c10d backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors (and CUDA tensors, staged through the host).
    Gloo,
    /// CUDA tensors, device to device.
    Nccl,
}

impl Backend {
    /// NCCL for a CUDA device and Gloo for the CPU, unless `asked` (COMPRESS_DIST_BACKEND) names
    /// one; NCCL on the CPU is refused.
    pub fn choose(asked: Option<&str>, device: Device) -> anyhow::Result<Backend> {
        match (asked.map(str::trim), device) {
            (None | Some(""), Device::Cuda(_)) => Ok(Backend::Nccl),
            (None | Some(""), _) => Ok(Backend::Gloo),
            (Some("gloo"), _) => Ok(Backend::Gloo),
            (Some("nccl"), Device::Cuda(_)) => Ok(Backend::Nccl),
            (Some("nccl"), _) => Err(crate::bad_input!("COMPRESS_DIST_BACKEND=nccl needs a CUDA device; this run trains on the CPU (use gloo)")),
            (Some(other), _) => Err(crate::bad_input!("environment variable COMPRESS_DIST_BACKEND={other:?}: expected gloo or nccl")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "Gloo",
            Backend::Nccl => "NCCL",
        }
    }

    fn missing(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo's headers were missing when it was built; ./scripts/setup fetches them",
            Backend::Nccl => "it was built without the CUDA headers; ./scripts/setup installs them beside the CUDA build of torch",
        }
    }
}

// SAFETY: c10d's backends are made to be called from any thread, one collective at a time in
// the same order on every rank; `&self` methods below never run two at once on one rank
// because the trainer calls them from its one loop.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    /// Joins the run `launch` describes on `device`: connects to (or, as rank 0 without
    /// torchrun's agent, serves) the store, then waits for every rank to join the group: NCCL on
    /// CUDA, Gloo on the CPU (`COMPRESS_DIST_BACKEND=gloo|nccl` chooses otherwise).
    pub fn connect(launch: &Launch, device: Device) -> anyhow::Result<Group> {
        let who = format!("rank {} of {}", launch.rank, launch.world_size);
        let backend = Backend::choose(std::env::var("COMPRESS_DIST_BACKEND").ok().as_deref(), device)?;
        // SAFETY: queries without arguments.
        let built = unsafe {
            if backend == Backend::Nccl {
                ffi::cdist_has_nccl()
            } else {
                ffi::cdist_has_gloo()
            }
        };
        if built == 0 {
            anyhow::bail!("{who}: this build of compress has no {} process group ({})", backend.name(), backend.missing());
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
        let (rank, size) = (launch.rank as i32, launch.world_size as i32);
        // SAFETY: `store` is live; the rest as above.
        let group = unsafe {
            match (backend, device) {
                (Backend::Nccl, Device::Cuda(index)) => ffi::cdist_group_nccl(store, rank, size, index as i32, timeout_ms, &mut err),
                (Backend::Nccl, _) => unreachable!("Backend::choose takes NCCL for CUDA devices only"),
                (Backend::Gloo, _) => ffi::cdist_group_gloo(store, rank, size, interface.as_ptr(), timeout_ms, &mut err),
            }
        };
        if group.is_null() {
            // SAFETY: created above, not shared.
            unsafe { ffi::cdist_store_free(store) };
            anyhow::bail!(
                "{who}: the {} process group did not form within {:.0} s (every rank must start, with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE): {}",
                backend.name(),
                launch.timeout.as_secs_f64(),
                ffi::take_error(err)
            );
        }
        let device = if backend == Backend::Nccl { device } else { Device::Cpu };
        Ok(Group { group, store, rank: launch.rank, world_size: launch.world_size, backend, device, spent: AtomicU64::new(0) })
    }

    /// Seconds this process has spent in collectives so far, waiting for the other ranks
    /// included (on NCCL, the time to queue them: they run on the device).
    pub fn seconds(&self) -> f64 {
        self.spent.load(Ordering::Relaxed) as f64 / 1e9
    }

    fn count(&self, started: Instant) {
        self.spent.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// The backend the collectives run on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn who(&self) -> String {
        format!("rank {} of {}", self.rank, self.world_size)
    }

    /// Where a collective's tensors must lie: NCCL reduces CUDA tensors only, so a host tensor
    /// (a flag, a counter) goes to the group's device for the collective and comes back after.
    fn staged(&self, t: &Tensor) -> Option<Tensor> {
        match (self.backend, self.device, t.device()) {
            (Backend::Nccl, Device::Cuda(i), Device::Cpu) => Some(t.to_device(Device::Cuda(i))),
            _ => None,
        }
    }

    /// Copies staged tensors back into the originals.
    fn unstage(originals: &[&Tensor], staged: &[Option<Tensor>]) -> anyhow::Result<()> {
        for (t, s) in originals.iter().zip(staged) {
            if let Some(s) = s {
                t.shallow_clone().f_copy_(s)?;
            }
        }
        Ok(())
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
        let staged: Vec<Option<Tensor>> = tensors.iter().map(|t| self.staged(t)).collect();
        let ptrs: Vec<*mut c_void> = tensors.iter().zip(&staged).map(|(t, s)| s.as_ref().unwrap_or(t).as_ptr() as *mut c_void).collect();
        let mut err: *mut c_char = std::ptr::null_mut();
        let started = Instant::now();
        // SAFETY: `ptrs` are live `at::Tensor*` for the call's duration.
        let rc = unsafe { ffi::cdist_allreduce_sum(self.group, ptrs.as_ptr(), ptrs.len(), &mut err) };
        self.count(started);
        if rc != 0 {
            anyhow::bail!("{}: allreduce of {} tensor(s) failed: {}", self.who(), tensors.len(), ffi::take_error(err));
        }
        Group::unstage(tensors, &staged)
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
        let staged = [self.staged(tensor)];
        let target = staged[0].as_ref().unwrap_or(tensor);
        let mut err: *mut c_char = std::ptr::null_mut();
        let started = Instant::now();
        // SAFETY: a live `at::Tensor*` for the call's duration.
        let rc = unsafe { ffi::cdist_broadcast(self.group, target.as_ptr() as *mut c_void, root as i32, &mut err) };
        self.count(started);
        if rc != 0 {
            anyhow::bail!("{}: broadcast from rank {root} failed: {}", self.who(), ffi::take_error(err));
        }
        Group::unstage(&[tensor], &staged)
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

    /// Rank 0's `flag`, on every rank.
    pub fn root_says(&self, flag: bool) -> anyhow::Result<bool> {
        let shared = Tensor::from_slice(&[flag as i64]);
        self.broadcast(&shared, 0)?;
        Ok(crate::host::vec::<i64>(&shared)?.first().copied() == Some(1))
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
                let group = Group::connect(&launch(rank, 2, port, Duration::from_secs(60)), Device::Cpu)?;
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

    #[test]
    fn backend_follows_the_device() {
        assert_eq!(Backend::choose(None, Device::Cpu).unwrap(), Backend::Gloo);
        assert_eq!(Backend::choose(None, Device::Cuda(1)).unwrap(), Backend::Nccl);
        assert_eq!(Backend::choose(Some("gloo"), Device::Cuda(0)).unwrap(), Backend::Gloo);
        for (asked, device, named) in [("nccl", Device::Cpu, "CUDA"), ("mpi", Device::Cpu, "COMPRESS_DIST_BACKEND")] {
            let err = Backend::choose(Some(asked), device).unwrap_err();
            assert!(crate::error::is_bad_input(&err) && format!("{err}").contains(named), "{err}");
        }
    }

    /// A rank that never comes: the other's rendezvous ends with an error naming the wait,
    /// within the timeout, instead of hanging.
    #[test]
    fn a_missing_rank_is_a_timeout_error() {
        let started = std::time::Instant::now();
        let err = Group::connect(&launch(0, 2, free_port(), Duration::from_secs(3)), Device::Cpu).err().expect("rank 1 never joins");
        let text = format!("{err:#}");
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
        assert!(text.contains("rank 0 of 2") && text.contains("did not form"), "{text}");
    }
}
