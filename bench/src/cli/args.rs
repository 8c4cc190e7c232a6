//! The command line of `bench`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::corpus::parse_size;

/// giva's benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "bench", about)]
pub struct Cli {
    /// The results directory: runs go to `history/<date>/` under it, and
    /// `LATEST.md` is regenerated there.
    #[arg(long, default_value = "bench/results")]
    pub results: PathBuf,
    /// What to measure.
    #[command(subcommand)]
    pub command: Command,
}

/// The measurements.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a deterministic corpus and its manifest of planted matches.
    Corpus {
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Total size (e.g. 100MiB, 1GiB).
        #[arg(long, default_value = "100MiB", value_parser = parse_size)]
        size: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate ClamAV-format signatures (.ndb, .ldb, .hdb, .hsb).
    Sigs {
        /// Seed (the corpus plants matches of the same seed's signatures).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Body signatures.
        #[arg(long, default_value_t = 1000)]
        body: usize,
        /// Hash signatures.
        #[arg(long, default_value_t = 0)]
        hashes: usize,
        /// Logical signatures.
        #[arg(long, default_value_t = 100)]
        logical: usize,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// giva scan beside clamscan (raw and default) and clamd, with the
    /// memory bandwidth as the ceiling, on one generated corpus.
    Compare {
        /// Seed of corpus and signatures.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Corpus size (the full run: 1GiB).
        #[arg(long, default_value = "100MiB", value_parser = parse_size)]
        size: u64,
        /// Body-signature counts, comma-separated (the full run: 1000,10000,100000).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        body: Vec<usize>,
        /// Logical signatures in every configuration.
        #[arg(long, default_value_t = 100)]
        logical: usize,
        /// Hash signatures in every configuration (the full run: 1000000).
        #[arg(long, default_value_t = 1_000_000)]
        hashes: usize,
        /// Where corpora and signatures are generated and kept for reuse.
        #[arg(long, default_value = "bench/results/tmp")]
        work: PathBuf,
        /// Timeout of each program run, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
        /// Skip clamd.
        #[arg(long)]
        no_clamd: bool,
        /// Skip clamscan's default (non-raw) mode.
        #[arg(long)]
        no_clamscan_default: bool,
        /// Run every scan and load this many times and keep the fastest
        /// (use 3 on a busy machine).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Directory of the giva binaries (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Manager, appliance and `giva-shim load` as real processes: events/s,
    /// verdict latency, detection → manager latency, instant-clone storm.
    E2e {
        /// VMs in the instant-clone storm.
        #[arg(long, default_value_t = 500)]
        storm_vms: usize,
        /// Events per second offered in the storm (open loop, all clones
        /// at once); the storm also runs closed loop, for its capacity.
        #[arg(long, default_value_t = 10_000.0)]
        storm_rate: f64,
        /// VM counts for the cache-hit runs, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,10,200")]
        hit_vms: Vec<usize>,
        /// Heartbeat interval of the heartbeat-only run, in seconds.
        #[arg(long, default_value_t = 10)]
        heartbeat_secs: u64,
        /// Limit of each load run, in seconds.
        #[arg(long, default_value_t = 120)]
        duration_secs: u64,
        /// Signature database for the appliance (default: bundled).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Run only these sections (storm, cache, heartbeat), comma-separated.
        /// A partial run prints its table and writes no results.
        #[arg(long, value_delimiter = ',')]
        only: Vec<crate::e2e::Section>,
        /// Scratch directory (removed and recreated).
        #[arg(long, default_value = "bench/results/tmp/e2e")]
        work: PathBuf,
        /// Directory of the giva binaries (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Archives, mail and documents: `giva scan` on one thread beside
    /// `clamscan`'s default mode, on this machine's compressed docs, on
    /// archives of its real files, and on mail and documents built around
    /// them.
    Archives {
        /// Body signatures cut from shared libraries.
        #[arg(long, default_value_t = 10_000)]
        body: usize,
        /// Runs of each tool; the best is kept.
        #[arg(long, default_value_t = 2)]
        repeat: usize,
        /// Where corpora and signatures are made and kept for reuse.
        #[arg(long, default_value = "bench/results/tmp")]
        work: PathBuf,
        /// Timeout of each run, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
        /// Directory of the giva binaries (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Real files: this machine's own files as the corpus, signatures cut
    /// from the Rust toolchain's libraries, and giva, clamscan (raw),
    /// yara, YARA-X and Hyperscan on one core, each run checked to report
    /// the same detections.
    Real {
        /// Corpus size.
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        corpus: u64,
        /// Signature counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        count: Vec<usize>,
        /// Signature seeds, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
        seeds: Vec<u64>,
        /// Runs of each engine; the fastest counts.
        #[arg(long, default_value_t = 2)]
        repeat: usize,
        /// Where the corpus, signatures and the venv are made and kept.
        #[arg(long, default_value = "bench/results/tmp")]
        work: PathBuf,
        /// Timeout of each run, in seconds.
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
        /// Directory of the giva binaries (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Above this many signatures only Hyperscan runs beside giva
        /// (clamscan takes over ten minutes a run at 100k); default: every
        /// peer at every count.
        #[arg(long)]
        all_peers_up_to: Option<usize>,
    },
    /// Regenerate `LATEST.md` from the newest run of each workload.
    Latest,
    /// The memory-read bandwidth probe alone.
    Bandwidth {
        /// Buffer size.
        #[arg(long, default_value = "256MiB", value_parser = parse_size)]
        size: u64,
    },
    /// Quarantine tagging: detection → NSX tag latency, and an outbreak.
    Tagging {
        /// Detections for the latency run.
        #[arg(long, default_value_t = 200)]
        latency_count: u32,
        /// Detections per second in the latency run.
        #[arg(long, default_value_t = 20)]
        latency_rate: u32,
        /// VMs in the outbreak.
        #[arg(long, default_value_t = 500)]
        vms: u32,
        /// Detections per Notify in the outbreak.
        #[arg(long, default_value_t = 50)]
        batch: u32,
        /// The manager's tagging concurrency.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Counts the byte pairs of real files outside the real corpus
    /// (`bench/src/bigrams.rs`) and writes the table the engine rates atoms
    /// with.
    Bigrams {
        /// Where to write it.
        #[arg(long, default_value = "engine/src/index/bigrams.bin")]
        out: std::path::PathBuf,
    },
    /// The reliability soak (`giva-tests`' ignored `soak` test): simulated
    /// VMs against one appliance for `--secs`, the manager restarted every
    /// minute and the outbox's disk (a tmpfs) full, with the manager down,
    /// for the middle sixth of the run. Needs root for the tmpfs.
    Soak {
        /// Length of the run, in seconds.
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// Simulated VMs.
        #[arg(long, default_value_t = 200)]
        vms: usize,
        /// Build the test in release mode (slower to build, faster to run).
        #[arg(long)]
        release: bool,
    },
    /// Detection → manager-commit latency, immediate notify vs heartbeat only.
    Notify {
        /// Detections per scenario at 1/s.
        #[arg(long, default_value_t = 20)]
        slow_count: u32,
        /// Detections per scenario at 100/s.
        #[arg(long, default_value_t = 1000)]
        fast_count: u32,
        /// Heartbeat interval for the heartbeat-only runs, in seconds (the
        /// product default is 600; a shorter one keeps the run short, and
        /// the latency scales with it).
        #[arg(long, default_value_t = 10)]
        heartbeat_secs: u64,
    },
}
