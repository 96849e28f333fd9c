//! Numbers: percentiles, medians over repetitions, and what the kernel says a process costs (CPU, memory).

use std::time::Duration;

/// Clock ticks per second of /proc/<pid>/stat's utime and stime; 100 on every Linux configuration we run on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU time a process has used so far (all its threads, living and exited).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of a process and every process below it: a server that runs through a launcher or spawns workers is
/// charged for all of them. The tree is read at the moment of the call; a process that ended in between is lost.
pub fn tree_cpu_time(pid: u32) -> Option<Duration> {
    let mut total = cpu_time(pid)?;
    let mut todo = children(pid);
    // Bounded: a process tree on this machine is small, and a pid cannot be its own descendant.
    let mut seen = 0;
    while let Some(child) = todo.pop() {
        seen += 1;
        if seen > 10_000 {
            break;
        }
        total += cpu_time(child).unwrap_or_default();
        todo.extend(children(child));
    }
    Some(total)
}

/// The direct children of a process, from every one of its threads' /proc children list.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// User plus system CPU time of this process's living threads called `name` (a tokio runtime names its threads):
/// the bench's clients' share of its CPU, apart from its other threads.
pub fn threads_cpu_time(name: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        // A thread may end between the listing and the reads; it is then no longer one of the server's.
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        if let Some(cpu) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|stat| stat_cpu_time(&stat))
        {
            total += cpu;
        }
    }
    Some(total)
}

/// The machine's CPU time so far from /proc/stat's first line, in clock ticks: (idle and waiting for I/O, all).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((idle, ticks.iter().take(8).sum()))
}

/// Context switches of a process's living threads so far: (voluntary, involuntary). A voluntary switch is a thread
/// that ran out of work and slept; an involuntary one, a thread taken off its core with work left (preempted by a
/// task it woke, or at the end of its slice).
pub fn context_switches(pid: u32) -> Option<(u64, u64)> {
    let (mut voluntary, mut involuntary) = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread may end between the listing and the read; its switches leave with it.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        voluntary += status_field(&status, "voluntary_ctxt_switches").unwrap_or(0);
        involuntary += status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Some((voluntary, involuntary))
}

/// Inter-processor interrupts the machine has taken so far, all CPUs: rescheduling (a task woken onto, or
/// preempting on, another core) and function-call ones (a wake-up queued to another core, a TLB shootdown). In a
/// virtual machine each one costs its sender and its receiver an exit to the hypervisor, so they price wake-ups.
pub fn machine_ipis() -> Option<u64> {
    let interrupts = std::fs::read_to_string("/proc/interrupts").ok()?;
    let total = interrupts
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            line.strip_prefix("RES:")
                .or_else(|| line.strip_prefix("CAL:"))
        })
        .flat_map(|counts| {
            // One count per CPU, then the interrupt's name.
            counts
                .split_whitespace()
                .map_while(|field| field.parse::<u64>().ok())
        })
        .sum();
    Some(total)
}

/// The postmaster's pid, from the first line of `postmaster.pid` in the cluster's data directory.
pub fn postmaster_pid(data_dir: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// utime + stime of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat line.
fn stat_cpu_time(stat: &str) -> Option<Duration> {
    // The command name is in parentheses and may contain spaces: fields are counted after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, i.e. 12 and 13 after the name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) / CLOCK_TICKS_PER_SECOND,
    ))
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    status_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        field,
    )
}

/// A numeric field of a /proc status file (a process's or one thread's), its unit (`kB`) dropped.
fn status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// The latencies of every task of a parallel load, in one list.
pub async fn gather(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
) -> anyhow::Result<Vec<Duration>> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(
            task.await
                .map_err(|e| anyhow::anyhow!("a load task failed: {e}"))??,
        );
    }
    Ok(all)
}

/// Latencies of one run, sorted once.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort();
        Latencies(samples)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.0.len() as f64 - 1.0)).round() as usize;
        self.0[rank.min(self.0.len() - 1)]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Median and range of one figure over several repetitions.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// A tiny deterministic generator for random ids, so runs are repeatable without another dependency.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    /// A value in 1..=max.
    pub fn next_in(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % max.max(1) + 1
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The machine's 1-minute load average, sampled every 5 s while the bench runs: on a shared machine the figures
/// belong to the load they were measured under.
pub struct LoadSampler {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Vec<f64>>,
}

impl LoadSampler {
    pub fn start() -> LoadSampler {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                if let Some(load) = std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|text| text.split_whitespace().next()?.parse().ok())
                {
                    samples.push(load);
                }
                match stopped.recv_timeout(Duration::from_secs(5)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return samples,
                }
            }
        });
        LoadSampler { stop, thread }
    }

    /// "load average (1 min) 2.1–4.3, median 3.0 during the run".
    pub fn finish(self) -> String {
        let _ = self.stop.send(());
        let samples = self.thread.join().unwrap_or_default();
        match Spread::of(&samples) {
            Some(s) => format!(
                "load average (1 min) {:.1}–{:.1}, median {:.1}, during the run",
                s.min, s.max, s.median
            ),
            None => "load average unknown".into(),
        }
    }
}
