//! Progress of a run: on a terminal an indicatif bar whose ETA weighs every job by its cost
//! (large-n fits count for more than small ones); without one (a Slurm `.out` file, `nohup`), a
//! log line on stderr every 5% of the work or every minute, whichever comes first, with jobs
//! done, failures, elapsed time and the time left at the rate so far.
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Progress {
    pub multi: MultiProgress,
    bar: ProgressBar,
    what: String,
    jobs: usize,
    units: u64,
    started: Instant,
    jobs_done: AtomicUsize,
    failed: AtomicUsize,
    /// Without a terminal: when the last line was written, and at which share of the work.
    log: Option<Mutex<(Instant, u64)>>,
}

/// Log lines without a terminal: every this share of the work ...
const BUCKETS: u64 = 20;
/// ... or after this long without one.
const EVERY: Duration = Duration::from_secs(60);

/// Whole units of work of each job, in proportion to `costs` (the cheapest job is one unit).
pub fn units(costs: &[f64]) -> Vec<u64> {
    let min = costs
        .iter()
        .copied()
        .filter(|c| c.is_finite() && *c > 0.0)
        .fold(f64::INFINITY, f64::min);
    costs
        .iter()
        .map(|c| {
            if min.is_finite() && c.is_finite() && *c > 0.0 {
                ((c / min).round() as u64).max(1)
            } else {
                1
            }
        })
        .collect()
}

pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    /// `what`: the run's name in log lines; `units`: the total units of work of `jobs` jobs.
    pub fn new(what: String, jobs: usize, units: u64) -> anyhow::Result<Progress> {
        Self::with_terminal(what, jobs, units, std::io::stderr().is_terminal())
    }

    pub fn with_terminal(
        what: String,
        jobs: usize,
        units: u64,
        terminal: bool,
    ) -> anyhow::Result<Progress> {
        let multi = if terminal {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let bar = multi.add(ProgressBar::new(units.max(1)));
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40.cyan/blue}] {msg}, ETA {eta} (jobs weighted by cost)",
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .progress_chars("=> "),
        );
        bar.set_message(format!("0/{jobs} jobs"));
        let now = Instant::now();
        Ok(Progress {
            multi,
            bar,
            what,
            jobs,
            units,
            started: now,
            jobs_done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            log: (!terminal).then(|| Mutex::new((now, 0))),
        })
    }

    /// A line above the bar (or on stderr without a terminal).
    pub fn println(&self, line: String) {
        if self.log.is_some() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// One job of `units` units finished (`failed`: without a record).
    pub fn job_done(&self, units: u64, failed: bool) {
        // Counted under the log's lock (or alone on a terminal), so lines never go backwards.
        let guard = self
            .log
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        self.bar.inc(units);
        let jobs = self.jobs_done.fetch_add(1, Ordering::Relaxed) + 1;
        let failures = self.failed.fetch_add(failed as usize, Ordering::Relaxed) + failed as usize;
        self.bar.set_message(format!("{jobs}/{} jobs", self.jobs));
        let Some(mut state) = guard else {
            return;
        };
        let done = self.bar.position();
        let bucket = done * BUCKETS / self.units.max(1);
        let now = Instant::now();
        if bucket > state.1 || now - state.0 >= EVERY || jobs == self.jobs {
            *state = (now, bucket);
            let elapsed = now - self.started;
            let left = if done > 0 && done < self.units {
                let per_unit = elapsed.as_secs_f64() / done as f64;
                let rest = Duration::from_secs_f64(per_unit * (self.units - done) as f64);
                format!(", about {} left", duration(rest))
            } else {
                String::new()
            };
            eprintln!(
                "{}: {jobs}/{} jobs ({:.0}% of the work), {failures} failed, {} elapsed{left}",
                self.what,
                self.jobs,
                100.0 * done as f64 / self.units.max(1) as f64,
                duration(elapsed)
            );
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_proportional_to_cost() {
        assert_eq!(units(&[316.0, 1000.0, 100_000.0]), vec![1, 3, 316]);
        assert_eq!(units(&[0.0, f64::NAN, 2.0]), vec![1, 1, 1]);
        assert_eq!(duration(Duration::from_secs(3725)), "1h02m");
        assert_eq!(duration(Duration::from_secs(75)), "1m15s");
    }

    #[test]
    fn without_a_terminal_every_job_is_counted() {
        let p = Progress::with_terminal("x".into(), 3, 5, false).unwrap();
        p.job_done(1, false);
        p.job_done(1, true);
        p.job_done(3, false);
        assert_eq!(p.jobs_done.load(Ordering::Relaxed), 3);
        assert_eq!(p.failed.load(Ordering::Relaxed), 1);
        assert_eq!(p.bar.position(), 5);
    }
}
