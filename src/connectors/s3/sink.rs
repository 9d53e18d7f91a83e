//! `type = "s3"` sink: JSON lines under
//! `prefix/dt=YYYY-MM-DD/hour=HH/part-<job>-<run>-<component>-<epoch>.jsonl`, uploaded only
//! when the checkpoint covering them completes (exactly-once). `<job>-<run>` is the job's
//! output identity ([`crate::connectors::output`]): a job whose data directory was lost starts
//! its epochs again under a new run id and cannot overwrite the objects written before.
//!
//! Records are staged in local files, one per (epoch, UTC hour of writing), under
//! `<staging>/<job>-<run>/<sink|dead_letter>/<component>/`: per job, per role and per
//! component, so neither another job, nor the job's dead-letter sink, nor another partition
//! ever writes (or recovers away) the same staged file. On a barrier
//! [`Sink::precommit`] fsyncs them and returns [`Commit::Upload`]s. After the checkpoint's
//! manifest is on disk the coordinator hands them back to the sink config's
//! [`SinkSpec::commit`] (PUT, then delete the staged file), and again after a restart, so an
//! upload interrupted by a crash is repeated: a PUT of the same key with the same bytes is
//! harmless. Staged files of epochs that never completed are deleted by
//! [`SinkSpec::recover`]: their records are replayed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use super::client::S3Connection;
use crate::connectors::{Sink, SinkSpec};
use crate::core::{ConfigError, Record};
use crate::state::checkpoint::{Commit, sync_dir};
use crate::{Error, Result};

/// `type = "s3"`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfig {
    /// Bucket to write to.
    pub bucket: String,
    /// Key prefix (`results/`); the `dt=…/hour=…/` partitions go under it.
    #[serde(default)]
    pub prefix: String,
    /// Local folder for staged part files until their checkpoint completes. Default
    /// `<state.dir>/s3-staging`; it must survive a crash (not a tmpfs that is wiped). Each job,
    /// role (sink, dead letters) and partition stages in a folder of its own under it.
    pub staging_dir: Option<PathBuf>,
    /// Endpoint override for S3-compatible servers; path-style addressing when set.
    pub endpoint_url: Option<String>,
    /// Region. Default: the standard AWS SDK chain, else `us-east-1`.
    pub region: Option<String>,
    /// What [`crate::connectors::SinkConfig::for_job`] fills in; never read from the job file.
    #[serde(skip)]
    pub bound: Option<S3SinkJob>,
}

/// The job an S3 sink writes for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3SinkJob {
    /// The job's output identity, `<job>-<run>`.
    pub identity: String,
    /// This sink's own staging folder: `<staging>/<job>-<run>/<role>`.
    pub staging: PathBuf,
}

impl S3SinkConfig {
    /// This sink's staging folder (each component stages in a subfolder of its own). Outside
    /// a job: `staging_dir`, else `.osprey/s3-staging/<bucket>`.
    pub fn staging(&self) -> PathBuf {
        if let Some(b) = &self.bound {
            return b.staging.clone();
        }
        self.staging_dir.clone().unwrap_or_else(|| {
            PathBuf::from(".osprey")
                .join("s3-staging")
                .join(&self.bucket)
        })
    }

    /// Binds the sink to the job whose output identity is `identity`, as `role`.
    pub fn for_job(&self, identity: &str, role: &str, data_dir: &std::path::Path) -> Self {
        let root = self
            .staging_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("s3-staging"));
        S3SinkConfig {
            bound: Some(S3SinkJob {
                identity: identity.to_string(),
                staging: root.join(identity).join(role),
            }),
            ..self.clone()
        }
    }

    /// `part-<job>-<run>-`, or `part-` outside a job.
    fn part_prefix(&self) -> String {
        match &self.bound {
            Some(b) => format!("part-{}-", b.identity),
            None => "part-".to_string(),
        }
    }

    /// The name uploads carry in [`Commit::Upload::sink`].
    pub fn commit_name(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Where the bucket is.
    pub fn connection(&self) -> S3Connection {
        S3Connection {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
        }
    }
}

#[async_trait]
impl SinkSpec for S3SinkConfig {
    fn type_name(&self) -> &'static str {
        "s3"
    }

    fn validate(&self, at: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.bucket.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.bucket"),
                "must name a bucket",
            ));
        }
        errors
    }

    /// Deletes staged files left by epochs that never completed. Runs after the restored
    /// checkpoint's uploads were applied again, so what is left was never committed.
    fn recover(&self, _epoch: Option<u64>) -> Result<()> {
        let dir = self.staging();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("clearing", &dir, e))?;
        }
        Ok(())
    }

    fn build(&self, component: &str, first_epoch: u64) -> Result<Box<dyn Sink>> {
        Ok(Box::new(S3Sink::new(self.clone(), component, first_epoch)?))
    }

    fn owns(&self, commit: &Commit) -> bool {
        matches!(commit, Commit::Upload { sink, .. } if *sink == self.commit_name())
    }

    /// Uploads each staged file, then deletes it. A commit whose staged file is gone was
    /// uploaded already.
    async fn commit(&self, commits: &[&Commit]) -> Result<()> {
        let mut client: Option<aws_sdk_s3::Client> = None;
        for c in commits {
            let Commit::Upload { from, key, .. } = c else {
                continue;
            };
            let body = match tokio::fs::read(from).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading", from, e)),
            };
            if client.is_none() {
                client = Some(self.connection().client().await);
            }
            let client = client.as_ref().expect("created above");
            client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/x-ndjson")
                .body(body.into())
                .send()
                .await
                .map_err(|e| Error::Sink {
                    component: "s3".into(),
                    message: crate::connectors::aws::describe(
                        &e,
                        "PutObject",
                        &format!("s3://{}/{key}", self.bucket),
                        self.endpoint_url.as_deref(),
                    ),
                    retry: crate::Retry::WithBackoff,
                })?;
            match tokio::fs::remove_file(from).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", from, e)),
            }
        }
        Ok(())
    }
}

/// See the module docs.
pub struct S3Sink {
    cfg: S3SinkConfig,
    component: String,
    dir: PathBuf,
    epoch: u64,
    /// Open staged files of this epoch by `dt=…/hour=…` partition.
    open: BTreeMap<String, (std::io::BufWriter<std::fs::File>, PathBuf)>,
    buf: String,
}

impl S3Sink {
    /// A sink instance whose part files are named after `component`, starting at `epoch`.
    pub fn new(cfg: S3SinkConfig, component: &str, epoch: u64) -> Result<Self> {
        let dir = cfg.staging().join(component);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        Ok(S3Sink {
            cfg,
            component: component.to_string(),
            dir,
            epoch,
            open: BTreeMap::new(),
            buf: String::new(),
        })
    }
}

/// `dt=YYYY-MM-DD/hour=HH` of a Unix time in milliseconds (UTC).
pub fn partition_of_ms(ms: i64) -> String {
    let (y, m, d, hour) = crate::core::time::utc_date_hour(ms);
    format!("dt={y:04}-{m:02}-{d:02}/hour={hour:02}")
}

#[async_trait]
impl Sink for S3Sink {
    async fn write(&mut self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let part = partition_of_ms((crate::metrics::now_secs() * 1000.0) as i64);
        crate::connectors::render_json_lines(records, &mut self.buf);
        if !self.open.contains_key(&part) {
            let name = format!("{:010}-{}.jsonl", self.epoch, part.replace('/', "-"));
            let path = self.dir.join(name);
            let f = std::fs::File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
            self.open.insert(
                part.clone(),
                (std::io::BufWriter::with_capacity(64 * 1024, f), path),
            );
        }
        let (w, path) = self.open.get_mut(&part).expect("opened above");
        w.write_all(self.buf.as_bytes())
            .map_err(|e| Error::io("writing", &*path, e))?;
        crate::connectors::count_written(&self.component, records.len());
        Ok(())
    }

    async fn precommit(&mut self, epoch: u64) -> Result<Vec<Commit>> {
        let mut commits = Vec::new();
        for (part, (w, path)) in std::mem::take(&mut self.open) {
            let f = w
                .into_inner()
                .map_err(|e| Error::io("writing", &path, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io("syncing", &path, e))?;
            commits.push(Commit::Upload {
                sink: self.cfg.commit_name(),
                from: path,
                key: format!(
                    "{}{part}/{}{}-{:010}.jsonl",
                    self.cfg.prefix,
                    self.cfg.part_prefix(),
                    self.component,
                    self.epoch
                ),
            });
        }
        if !commits.is_empty() {
            sync_dir(&self.dir)?;
        }
        self.epoch = epoch + 1;
        Ok(commits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_utc_day_and_hour() {
        assert_eq!(partition_of_ms(0), "dt=1970-01-01/hour=00");
        // 2024-02-29T23:59:59.999Z
        assert_eq!(partition_of_ms(1_709_251_199_999), "dt=2024-02-29/hour=23");
        // 2000-03-01T05:00:00Z
        assert_eq!(partition_of_ms(951_886_800_000), "dt=2000-03-01/hour=05");
        // 1969-12-31T23:00:00Z: before the epoch.
        assert_eq!(partition_of_ms(-3_600_000), "dt=1969-12-31/hour=23");
    }

    #[test]
    fn owns_only_its_own_uploads() {
        let cfg: S3SinkConfig = toml::from_str("bucket = \"b\"\nprefix = \"out/\"").unwrap();
        let upload = |sink: &str| Commit::Upload {
            sink: sink.into(),
            from: "x".into(),
            key: "k".into(),
        };
        assert!(cfg.owns(&upload("s3://b/out/")));
        assert!(!cfg.owns(&upload("s3://other/out/")));
        let rename = Commit::Rename {
            from: "a".into(),
            to: "b".into(),
        };
        assert!(!cfg.owns(&rename));
    }

    #[tokio::test]
    async fn staging_is_per_job_role_and_component_and_keys_carry_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let cfg: S3SinkConfig = toml::from_str("bucket = \"b\"\nprefix = \"out/\"").unwrap();
        let sink = cfg.for_job("j-abc", "sink", dir.path());
        let dead = cfg.for_job("j-abc", "dead_letter", dir.path());
        let other_job = cfg.for_job("k-def", "sink", dir.path());
        let mut staged = Vec::new();
        let mut keys = Vec::new();
        for (c, component) in [
            (&sink, "p000"),
            (&sink, "p001"),
            (&dead, "p000"),
            (&other_job, "p000"),
        ] {
            let mut s = S3Sink::new(c.clone(), component, 1).unwrap();
            s.write(&[Record::new("k", vec![1.0])]).await.unwrap();
            for commit in s.precommit(1).await.unwrap() {
                let Commit::Upload { from, key, .. } = commit else {
                    panic!()
                };
                staged.push(from);
                keys.push(key);
            }
        }
        assert_eq!(staged.len(), 4);
        for (i, a) in staged.iter().enumerate() {
            assert!(a.starts_with(dir.path().join("s3-staging")), "{a:?}");
            assert!(staged[i + 1..].iter().all(|b| b != a), "{staged:?}");
        }
        assert!(keys[0].starts_with("out/dt="), "{}", keys[0]);
        assert!(
            keys[0].ends_with("/part-j-abc-p000-0000000001.jsonl"),
            "{}",
            keys[0]
        );
        assert!(
            keys[3].ends_with("/part-k-def-p000-0000000001.jsonl"),
            "{}",
            keys[3]
        );
        // Recovering the dead-letter sink leaves the sink's staged files alone.
        dead.recover(Some(1)).unwrap();
        assert!(staged[0].exists() && staged[1].exists() && !staged[2].exists());
    }
}
