//! How this process was launched, read from the environment variables torchrun sets (and any
//! launcher can: Slurm, MPI or a shell script map their own onto them): RANK, WORLD_SIZE,
//! LOCAL_RANK, MASTER_ADDR, MASTER_PORT, and torchrun's agent variables. A process without
//! WORLD_SIZE, or with WORLD_SIZE=1, runs alone, unless COMPRESS_DIST_BACKEND names a backend:
//! then even one process forms its group (to check a backend on one GPU).

use std::time::Duration;

/// The c10d operations' timeout when `COMPRESS_DIST_TIMEOUT` does not set one: torch's own
/// default for its process groups.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One process of a data-parallel run.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    /// The process's index on its node: its GPU is `cuda:local_rank`.
    pub local_rank: usize,
    /// Where the TCPStore is served: by rank 0, or by torchrun's agent.
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent serves the store (TORCHELASTIC_USE_AGENT_STORE=True): every worker,
    /// rank 0 included, is its client.
    pub agent_store: bool,
    /// torchrun's restart count: the store keys of each attempt are kept apart.
    pub restart_count: u64,
    /// Gloo binds to this network interface (GLOO_SOCKET_IFNAME), else to the address of the
    /// host's name.
    pub gloo_interface: Option<String>,
    /// How long a collective or the rendezvous may wait for the other ranks.
    pub timeout: Duration,
}

impl Launch {
    /// This process's launch, from the environment; `None` when it runs alone.
    pub fn from_env() -> anyhow::Result<Option<Launch>> {
        Launch::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Launch::from_env`], with the variables read by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Launch>> {
        let number = |name: &str| -> anyhow::Result<Option<u64>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| crate::bad_input!("environment variable {name}={v:?} is not a whole number")),
            }
        };
        let world_size = number("WORLD_SIZE")?.unwrap_or(1) as usize;
        if world_size == 0 {
            return Err(crate::bad_input!("environment variable WORLD_SIZE=0: a run has at least one process"));
        }
        if world_size == 1 && var("COMPRESS_DIST_BACKEND").is_none_or(|v| v.trim().is_empty()) {
            return Ok(None);
        }
        let required = |name: &str| {
            var(name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                crate::bad_input!("WORLD_SIZE={world_size} but environment variable {name} is not set (torchrun sets it; another launcher must)")
            })
        };
        let rank = number("RANK")?.ok_or_else(|| required("RANK").unwrap_err())? as usize;
        if rank >= world_size {
            return Err(crate::bad_input!("environment variable RANK={rank} is not below WORLD_SIZE={world_size}"));
        }
        let local_rank = match number("LOCAL_RANK")? {
            Some(r) => r as usize,
            None => match number("LOCAL_WORLD_SIZE")? {
                Some(0) => return Err(crate::bad_input!("environment variable LOCAL_WORLD_SIZE=0")),
                Some(n) => rank % n as usize,
                None => rank,
            },
        };
        let master_addr = required("MASTER_ADDR")?.trim().to_string();
        let port = number("MASTER_PORT")?.ok_or_else(|| required("MASTER_PORT").unwrap_err())?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| crate::bad_input!("environment variable MASTER_PORT={port} is not a TCP port (1 to 65535)"))?;
        let agent_store = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let restart_count = number("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0);
        let gloo_interface = var("GLOO_SOCKET_IFNAME").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let timeout = match var("COMPRESS_DIST_TIMEOUT") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
                _ => return Err(crate::bad_input!("environment variable COMPRESS_DIST_TIMEOUT={v:?} is not a positive number of seconds")),
            },
        };
        Ok(Some(Launch { rank, world_size, local_rank, master_addr, master_port, agent_store, restart_count, gloo_interface, timeout }))
    }

    /// Whether this process is the one that evaluates, exports and writes.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> anyhow::Result<Option<Launch>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn alone_without_a_world() {
        assert_eq!(launch(&[]).unwrap(), None);
        assert_eq!(launch(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        // Asking for a backend forms a group of one.
        let one = [("WORLD_SIZE", "1"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1"), ("COMPRESS_DIST_BACKEND", "nccl")];
        assert_eq!(launch(&one).unwrap().unwrap().world_size, 1);
    }

    /// What torchrun sets for the second worker of `--nproc-per-node=2`.
    #[test]
    fn torchrun_worker() {
        let got = launch(&[
            ("WORLD_SIZE", "2"),
            ("RANK", "1"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
            ("COMPRESS_DIST_TIMEOUT", "15"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((got.rank, got.world_size, got.local_rank, got.master_port), (1, 2, 1, 29500));
        assert!(got.agent_store && !got.is_main());
        assert_eq!((got.restart_count, got.timeout), (2, Duration::from_secs(15)));
        assert_eq!(got.gloo_interface, None);
    }

    /// A launcher that sets no LOCAL_RANK: the node-local index follows from LOCAL_WORLD_SIZE,
    /// else it is the rank (one node).
    #[test]
    fn local_rank_defaults() {
        let base = [("WORLD_SIZE", "4"), ("RANK", "3"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")];
        assert_eq!(launch(&base).unwrap().unwrap().local_rank, 3);
        let mut two = base.to_vec();
        two.push(("LOCAL_WORLD_SIZE", "2"));
        assert_eq!(launch(&two).unwrap().unwrap().local_rank, 1);
        assert_eq!(launch(&base).unwrap().unwrap().timeout, DEFAULT_TIMEOUT);
    }

    /// Every wrong or missing variable is bad input that names it.
    #[test]
    fn bad_variables_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("WORLD_SIZE", "two")], "WORLD_SIZE"),
            (&[("WORLD_SIZE", "0")], "WORLD_SIZE=0"),
            (&[("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")], "RANK is not set"),
            (&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")], "RANK=2"),
            (&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "1")], "MASTER_ADDR is not set"),
            (&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h")], "MASTER_PORT is not set"),
            (&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")], "MASTER_PORT=70000"),
            (&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1"), ("COMPRESS_DIST_TIMEOUT", "-1")], "COMPRESS_DIST_TIMEOUT"),
        ];
        for (vars, want) in cases {
            let err = launch(vars).unwrap_err();
            assert!(crate::error::is_bad_input(&err), "{vars:?}");
            assert!(format!("{err}").contains(want), "{vars:?}: {err}");
        }
    }
}
