//! The ceiling: how fast one core (and all cores) can read memory.

use std::time::Instant;

/// Reads a `size`-byte buffer `passes` times on `threads` threads (each its
/// own buffer) and returns the best pass in GB/s (10^9 bytes per second),
/// summed over the threads.
pub fn read_bandwidth(size: usize, passes: usize, threads: usize) -> f64 {
    let words = size / 8;
    let per_thread: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                s.spawn(move || {
                    let buf: Vec<u64> = (0..words as u64).map(|i| i ^ t as u64).collect();
                    let mut best = 0f64;
                    let mut sink = 0u64;
                    for _ in 0..passes {
                        let start = Instant::now();
                        sink = sink.wrapping_add(sum(&buf));
                        let secs = start.elapsed().as_secs_f64();
                        best = best.max((words * 8) as f64 / secs / 1e9);
                    }
                    std::hint::black_box(sink);
                    best
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0.0))
            .collect()
    });
    per_thread.iter().sum()
}

fn sum(buf: &[u64]) -> u64 {
    // Eight independent accumulators so the loop is bound by loads, not by
    // the add chain; the compiler vectorizes it.
    let mut acc = [0u64; 8];
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(c[i]);
        }
    }
    let mut s = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, &b| a.wrapping_add(b));
    for a in acc {
        s = s.wrapping_add(a);
    }
    s
}
