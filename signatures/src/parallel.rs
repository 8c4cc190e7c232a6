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
}
