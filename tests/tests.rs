//! osprey's integration tests: one crate, one binary, one link step.
//!
//! Tests that need a local service (redis-server, kinesis-local, moto) sit behind the
//! `integration-tests` feature and read the service address from the environment; the README's
//! test command (`scripts/test.sh`) starts them. Under `CI=true` an unreachable service fails.

// Shared helpers: temp jobs, running the binary, reading published output.
mod util;

// The source tree's shape: layers import downwards only, no file over 600 lines.
mod layout;

// The `Checkpoint complete.` and `Progress.` log lines.
mod progress;
// Bad input: every bad line dead-lettered with its reason, every good record processed.
mod pipeline;
// SIGKILL at random moments, restart, byte-identical output; graceful SIGTERM.
mod checkpoint_restore;
// The process's life: one process per data directory, a second signal, the shutdown timeout.
mod lifecycle;
// `osprey validate`, `osprey checkpoints`, unusable checkpoints, --help/--version.
mod cli;
// discord and rcf on the sine generator; bit-identical continuation after SIGKILL.
mod operators;
// Enrichment through Redis and a local HTTP origin: merge, write-back, negative caching,
// ordering, Redis outage and recovery, retries and timeouts, SIGKILL + restart.
#[cfg(feature = "integration-tests")]
mod enrich_it;
// `osprey eval`: DAMP's golden top-1 discords, the AWS sample side by side.
mod eval;
// `osprey eval nab`: NAB's published scores of three detectors, per file and in total.
mod nab;
// Kinesis source and sink against kinesis-local: shards, resharding, KPL, SIGKILL end to end.
#[cfg(feature = "integration-tests")]
mod kinesis_it;
// Image classification from S3 (moto) end to end: accuracy, bad images, SIGKILL + restart.
#[cfg(all(feature = "integration-tests", feature = "s3", feature = "onnx"))]
mod classify_it;
// Sinks under consumers, lost data directories and refused records: restore after output was
// consumed, output identity, staging collisions, Kinesis record limits, short AWS errors.
#[cfg(feature = "integration-tests")]
mod sinks_it;
// The operations kit: promtool on the shipped rules and their unit tests, the compose file,
// a real Prometheus scraping osprey, and the rules' metric names against live scrapes.
#[cfg(feature = "integration-tests")]
mod ops_it;
// Durable state: S3 checkpoints (moto), incremental upload, crash at each step, outages,
// restore on a fresh machine, rollbacks that survive a crash.
#[cfg(all(feature = "integration-tests", feature = "s3"))]
mod durable_it;
// Sources that cannot read: a missing bucket or stream stops the job after `fail_after` with
// the service's error (readyz 503 meanwhile); an archived object is a dead letter.
#[cfg(all(feature = "integration-tests", feature = "s3"))]
mod source_failures_it;
// Process-level fuzz: every source under 100,000 random and adversarial inputs mixed with
// good ones; nothing crashes, every good input is out once, every bad one dead-lettered.
mod fuzz_it;
