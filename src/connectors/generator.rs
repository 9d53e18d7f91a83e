//! Deterministic built-in generators reproducing the AWS samples' workloads.
//!
//! Record `t` is a pure function of `(seed, t)`, so the position is just the next `t` and a
//! restored generator continues with exactly the records an uninterrupted one would emit.
//!
//! - `sine`: the Random Cut Forest sample's stream: `rad = (t/100) % 360`,
//!   `value = 10*sin(rad) + 10`, and `value = -17` while `2.4 < rad < 2.6`.
//! - `sensors`: the Kinesis Data Analytics Studio sample's sensor stream: `sensor_id` 1..=100,
//!   `current_temperature` uniform in 10..180, `status` OK/WARNING/ERROR, `event_time`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use crate::connectors::{Poll, RawItem, Source, SourceSpec};
use crate::core::hash::{splitmix64, unit_f64};
use crate::core::time;
use crate::core::{ConfigError, Duration, Origin, RecordConfig};
use crate::{Error, Result};

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorKind {
    /// The RCF sample's sine wave with its −17 drop.
    Sine,
    /// The KDA Studio sample's sensor readings.
    Sensors,
}

/// `type = "generator"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// `sine` or `sensors`.
    pub generator: GeneratorKind,
    /// Seed of the pseudo-random parts.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Records to emit; absent means unbounded.
    pub count: Option<u64>,
    /// Records per second; absent means as fast as possible.
    pub rate: Option<f64>,
    /// Number of sensors for `sensors`.
    #[serde(default = "default_sensors")]
    pub sensors: u64,
    /// Event time of record 0 (RFC 3339). Default 2024-01-01T00:00:00Z.
    pub start_time: Option<String>,
    /// Event-time step between records. Default 100ms.
    #[serde(default = "default_step")]
    pub step: Duration,
}

fn default_seed() -> u64 {
    42
}
fn default_sensors() -> u64 {
    100
}
fn default_step() -> Duration {
    Duration::from_millis(100)
}

impl SourceSpec for GeneratorConfig {
    fn type_name(&self) -> &'static str {
        "generator"
    }

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            errors.push(ConfigError::new(
                "source.rate",
                "must be a positive number of records per second",
            ));
        }
        if self.sensors == 0 {
            errors.push(ConfigError::new("source.sensors", "must be at least 1"));
        }
        if let Some(t) = &self.start_time
            && time::parse_time(t, time::TimeUnit::Millis).is_err()
        {
            errors.push(ConfigError::new(
                "source.start_time",
                format!("`{t}` is not RFC 3339 time"),
            ));
        }
        errors
    }

    fn max_record_bytes(&self) -> usize {
        crate::connectors::default_max_record_bytes()
    }

    /// The generator's schema.
    fn fill_record_defaults(&self, r: &mut RecordConfig) {
        match self.generator {
            GeneratorKind::Sine => {
                if r.key.is_none() {
                    r.key = Some("series".into());
                }
                if r.values.is_empty() {
                    r.values = vec!["value".into()];
                }
            }
            GeneratorKind::Sensors => {
                if r.key.is_none() {
                    r.key = Some("sensor_id".into());
                }
                if r.values.is_empty() {
                    r.values = vec!["current_temperature".into()];
                }
                if r.time.is_none() {
                    r.time = Some("event_time".into());
                }
            }
        }
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(Generator::new(self.clone())))
    }
}

/// The sine value of the RCF sample at step `t`.
pub fn sine_value(t: u64) -> f64 {
    let rad = (t as f64 / 100.0) % 360.0;
    if rad > 2.4 && rad < 2.6 {
        -17.0
    } else {
        10.0 * rad.sin() + 10.0
    }
}

/// A float in [0, 1) for `lane` of record `t`: splitmix64 is counter-based, so record `t`
/// needs no generator state.
fn unit(seed: u64, t: u64, lane: u64) -> f64 {
    unit_f64(splitmix64(
        seed ^ splitmix64(t.wrapping_mul(4).wrapping_add(lane)),
    ))
}

/// Writes record `t` of a generator as JSON.
pub fn render(cfg: &GeneratorConfig, start_ms: i64, t: u64, out: &mut String) {
    match cfg.generator {
        GeneratorKind::Sine => {
            out.push_str("{\"series\":\"sine\",\"t\":");
            let _ = write!(out, "{t}");
            out.push_str(",\"value\":");
            crate::core::record::write_f64(out, sine_value(t));
            out.push('}');
        }
        GeneratorKind::Sensors => {
            let id = 1 + (unit(cfg.seed, t, 0) * cfg.sensors as f64) as u64;
            let temp = (10.0 + unit(cfg.seed, t, 1) * 170.0) * 100.0;
            let temp = temp.round() / 100.0;
            let status = match (unit(cfg.seed, t, 2) * 3.0) as u32 {
                0 => "OK",
                1 => "WARNING",
                _ => "ERROR",
            };
            let step = i64::try_from(cfg.step.as_std().as_millis()).unwrap_or(i64::MAX);
            let time =
                time::format_rfc3339_millis(start_ms.saturating_add(step.saturating_mul(t as i64)));
            let _ = write!(
                out,
                "{{\"sensor_id\":{id},\"current_temperature\":{temp:?},\"status\":\"{status}\",\"event_time\":\"{time}\"}}"
            );
        }
    }
}

/// See the module docs.
pub struct Generator {
    cfg: GeneratorConfig,
    next: u64,
    start_ms: i64,
    stream: Arc<str>,
    /// Rate limiting: when we started and at which `t`.
    paced_from: Option<(Instant, u64)>,
}

impl Generator {
    /// A generator at `t = 0`.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let start_ms = cfg
            .start_time
            .as_deref()
            .and_then(|t| time::parse_time(t, time::TimeUnit::Millis).ok())
            .unwrap_or(1_704_067_200_000);
        let stream = Arc::from(match cfg.generator {
            GeneratorKind::Sine => "sine",
            GeneratorKind::Sensors => "sensors",
        });
        Generator {
            cfg,
            next: 0,
            start_ms,
            stream,
            paced_from: None,
        }
    }
}

#[async_trait]
impl Source for Generator {
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        self.next = position
            .get("next")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::Source {
                component: "generator".into(),
                message: format!("bad checkpoint position {position}"),
                retry: crate::Retry::No,
            })?;
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Poll> {
        let mut n = max as u64;
        if let Some(count) = self.cfg.count {
            if self.next >= count {
                return Ok(Poll::End);
            }
            n = n.min(count - self.next);
        }
        if let Some(rate) = self.cfg.rate {
            let (since, t0) = *self.paced_from.get_or_insert((Instant::now(), self.next));
            let due = t0 + (since.elapsed().as_secs_f64() * rate) as u64;
            if due <= self.next {
                let secs = (self.next + 1 - t0) as f64 / rate - since.elapsed().as_secs_f64();
                return Ok(Poll::Idle(StdDuration::from_secs_f64(secs.max(0.001))));
            }
            n = n.min(due - self.next);
        }
        let mut items = Vec::with_capacity(n as usize);
        let mut text = String::with_capacity(128);
        for t in self.next..self.next + n {
            text.clear();
            render(&self.cfg, self.start_ms, t, &mut text);
            let mut item = RawItem::new(text.as_bytes().to_vec(), Arc::clone(&self.stream));
            item.origin = Origin {
                stream: None,
                position: None,
            };
            items.push(item);
        }
        self.next += n;
        Ok(Poll::Items(items))
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({"next": self.next})
    }

    fn progress(&self) -> Option<(u64, u64)> {
        self.cfg.count.map(|c| (self.next.min(c), c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_has_the_drop() {
        assert_eq!(sine_value(0), 10.0);
        assert_eq!(sine_value(250), -17.0);
        assert!((sine_value(157) - (10.0 * 1.57f64.sin() + 10.0)).abs() < 1e-12);
        let drops: Vec<u64> = (0..40_000).filter(|&t| sine_value(t) == -17.0).collect();
        assert_eq!(drops.first(), Some(&241));
        assert_eq!(drops.len(), 2 * 19);
    }

    #[test]
    fn sensors_are_deterministic_and_in_range() {
        let cfg: GeneratorConfig = toml::from_str("generator = \"sensors\"").unwrap();
        let mut a = String::new();
        let mut b = String::new();
        for t in 0..1000 {
            a.clear();
            b.clear();
            render(&cfg, 0, t, &mut a);
            render(&cfg, 0, t, &mut b);
            assert_eq!(a, b);
            let v: serde_json::Value = serde_json::from_str(&a).unwrap();
            let id = v["sensor_id"].as_u64().unwrap();
            let temp = v["current_temperature"].as_f64().unwrap();
            assert!((1..=100).contains(&id));
            assert!((10.0..=180.0).contains(&temp));
            assert!(["OK", "WARNING", "ERROR"].contains(&v["status"].as_str().unwrap()));
        }
    }

    #[tokio::test]
    async fn progress_counts_records_of_a_known_count() {
        let cfg: GeneratorConfig = toml::from_str("generator = \"sine\"\ncount = 250").unwrap();
        let mut g = Generator::new(cfg);
        assert_eq!(g.progress(), Some((0, 250)));
        let mut seen = Vec::new();
        while let Poll::Items(items) = g.poll(100).await.unwrap() {
            assert!(!items.is_empty());
            seen.push(g.progress());
        }
        assert_eq!(seen, [Some((100, 250)), Some((200, 250)), Some((250, 250))]);
        let endless: GeneratorConfig = toml::from_str("generator = \"sine\"").unwrap();
        assert_eq!(Generator::new(endless).progress(), None);
    }
}
