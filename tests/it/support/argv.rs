//! Every process's argv, sampled every 20 ms from `/proc` while a test
//! runs: what a secret must never be found in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct ArgvSampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ArgvSampler {
    /// Samples the argv of processes whose command line names one of
    /// `programs`.
    pub fn start(programs: &'static [&'static str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if let Ok(argv) = std::fs::read(e.path().join("cmdline")) {
                        let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
                        if programs.iter().any(|p| argv.contains(p)) {
                            v.lock().unwrap().push(argv);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        ArgvSampler {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Stops sampling: every argv seen.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for ArgvSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
