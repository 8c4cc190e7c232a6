//! Work split over the machine's cores, for loading: results come back in
//! the order of the input, so that what is loaded, and the first error
//! reported, do not depend on the number of cores.

/// Most threads [`chunks`] starts.
const MAX_THREADS: usize = 8;

/// Splits `items` into one run per core (at most [`MAX_THREADS`], and none
/// shorter than `min_per_thread` unless there is only one), calls `f` on
/// each on its own thread, and returns the results in order. A panic in
/// `f` is raised again here.
pub fn chunks<T: Sync, R: Send>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_THREADS)
        .min(items.len() / min_per_thread.max(1))
        .max(1);
    if threads == 1 {
        return vec![f(items)];
    }
    let f = &f;
    std::thread::scope(|s| {
        let runs: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|run| s.spawn(move || f(run)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Splits `items` into runs of `per_run`, calls `f` on each on the
/// machine's cores (at most [`MAX_THREADS`] threads), and hands the
/// results to `consume` on the calling thread in the order of the runs, as
/// soon as each and those before it are done: what `consume` does overlaps
/// with the work on later runs. The first error of `consume` stops the
/// work (runs already started finish) and is returned. A panic in `f` is
/// raised again here.
///
/// # Errors
///
/// The first error `consume` returns.
pub fn in_order<T: Sync, R: Send, E>(
    items: &[T],
    per_run: usize,
    f: impl Fn(&[T]) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let runs: Vec<&[T]> = items.chunks(per_run.max(1)).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_THREADS)
        .min(runs.len());
    if threads <= 1 {
        return runs.into_iter().try_for_each(|run| consume(f(run)));
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (f, runs, next, stop) = (&f, &runs, &next, &stop);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, R)>();
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let tx = tx.clone();
            workers.push(s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(i) else { break };
                    if tx.send((i, f(run))).is_err() {
                        break;
                    }
                }
            }));
        }
        // Only the workers send: when they are all gone, so is the channel.
        drop(tx);
        let mut done: Vec<Option<R>> = std::iter::repeat_with(|| None).take(runs.len()).collect();
        let mut want = 0;
        let result = (|| {
            for (i, r) in &rx {
                done[i] = Some(r);
                while let Some(r) = done.get_mut(want).and_then(Option::take) {
                    consume(r)?;
                    want += 1;
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        // A worker that panicked left its run undone: its panic is raised
        // rather than a result missing a run.
        for w in workers {
            if let Err(e) = w.join() {
                std::panic::resume_unwind(e);
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_split() {
        let items: Vec<u32> = (0..10_000).collect();
        for min in [1, 100, 20_000] {
            let out: Vec<u32> = chunks(&items, min, |run| {
                run.iter().map(|x| x * 2).collect::<Vec<_>>()
            })
            .into_iter()
            .flatten()
            .collect();
            assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert_eq!(chunks(&[] as &[u32], 10, <[u32]>::len), vec![0]);
    }

    #[test]
    fn results_are_consumed_in_order_and_the_first_error_stops_the_work() {
        let items: Vec<u32> = (0..10_000).collect();
        for per_run in [1, 7, 100, 20_000] {
            let mut seen = Vec::new();
            let r: Result<(), ()> = in_order(
                &items,
                per_run,
                |run| run.iter().map(|x| x * 2).collect::<Vec<_>>(),
                |v| {
                    seen.extend(v);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert_eq!(seen, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        let mut consumed = 0;
        let r = in_order(
            &items,
            10,
            |run| run[0],
            |first| {
                consumed += 1;
                if first == 50 { Err(first) } else { Ok(()) }
            },
        );
        assert_eq!(r, Err(50));
        assert_eq!(consumed, 6);
        let mut none = 0;
        assert_eq!(
            in_order(&[] as &[u32], 10, <[u32]>::len, |_| {
                none += 1;
                Ok::<(), ()>(())
            }),
            Ok(())
        );
        assert_eq!(none, 0);
    }

    #[test]
    #[should_panic(expected = "run 3")]
    fn a_panic_in_the_work_is_raised_again() {
        let items: Vec<u32> = (0..100).collect();
        let _ = in_order(
            &items,
            10,
            |run| {
                assert!(run[0] != 30, "run 3");
                run[0]
            },
            |_| Ok::<(), ()>(()),
        );
    }
}
