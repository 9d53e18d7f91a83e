//! `osprey produce`: publishes a JSON-lines file or a built-in generator to a Kinesis stream at
//! a given rate (what the AWS samples do with small Python scripts).

use std::time::{Duration, Instant};

use super::sink::{MAX_BATCH_RECORDS, Producer, Pushed};
use crate::cli::{GeneratorArg, ProduceArgs};
use crate::connectors::generator::{Generator, GeneratorConfig, GeneratorKind};
use crate::connectors::{Poll, Source};
use crate::core::{ConfigError, Duration as JobDuration};
use crate::{Error, Result};

/// The partition key of one JSON line: the value of `field` (strings as they are, numbers as
/// written), else `fallback`.
pub fn partition_key(line: &str, field: Option<&str>, fallback: u64) -> String {
    field
        .and_then(|f| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            match v.get(f)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        })
        .unwrap_or_else(|| fallback.to_string())
}

/// Runs `osprey produce`; returns the number of records sent.
pub async fn run(args: ProduceArgs) -> Result<u64> {
    let mut producer = Producer::new(
        &args.stream,
        args.endpoint_url.as_deref(),
        "produce",
        args.aggregate,
        MAX_BATCH_RECORDS,
        10,
    );
    let field = args.partition_key_field.clone().or_else(|| {
        args.generator.map(|g| match g {
            GeneratorArg::Sensors => "sensor_id".to_string(),
            GeneratorArg::Sine => "series".to_string(),
        })
    });
    let lines: Box<dyn Iterator<Item = Result<String>> + Send> = match (&args.file, args.generator)
    {
        (Some(path), None) => {
            use std::io::BufRead;
            let f = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
            let path = path.clone();
            Box::new(
                std::io::BufReader::new(f)
                    .lines()
                    .map(move |l| l.map_err(|e| Error::io("reading", &path, e)))
                    .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty())),
            )
        }
        (None, Some(g)) => {
            let cfg = GeneratorConfig {
                generator: match g {
                    GeneratorArg::Sensors => GeneratorKind::Sensors,
                    GeneratorArg::Sine => GeneratorKind::Sine,
                },
                seed: args.seed,
                count: args.count,
                rate: None,
                sensors: 100,
                start_time: None,
                step: JobDuration::from_millis(100),
            };
            Box::new(GeneratorLines {
                generator: Generator::new(cfg),
                buffered: Vec::new().into_iter(),
                done: false,
            })
        }
        _ => {
            return Err(Error::Config(vec![ConfigError::new(
                "produce",
                "give exactly one of --file and --generator",
            )]));
        }
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let mut too_large = 0u64;
    for line in lines {
        let line = line?;
        if let Some(count) = args.count
            && args.file.is_some()
            && sent >= count
        {
            break;
        }
        if let Some(rate) = args.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let elapsed = started.elapsed();
            // Sleep in slices of at least 20 ms, so small PutRecords calls don't set the pace.
            if due > elapsed + Duration::from_millis(20) {
                // Send what is buffered before sleeping, so the rate is seen on the stream.
                producer.flush().await?;
                tokio::time::sleep(due - elapsed).await;
            }
        }
        let pk = partition_key(&line, field.as_deref(), sent);
        match producer.push(pk, line.into_bytes()).await? {
            Pushed::Queued => sent += 1,
            Pushed::TooLarge(n) => {
                too_large += 1;
                tracing::warn!(bytes = n, "Record over 1 MiB: skipped.");
            }
            Pushed::BadKey(why) => {
                too_large += 1;
                tracing::warn!(reason = %why, "Record skipped.");
            }
        }
    }
    producer.flush().await?;
    tracing::info!(records = sent, skipped = too_large, stream = %args.stream, seconds = started.elapsed().as_secs_f64(), "Produced.");
    Ok(sent)
}

struct GeneratorLines {
    generator: Generator,
    buffered: std::vec::IntoIter<String>,
    done: bool,
}

impl Iterator for GeneratorLines {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        loop {
            if let Some(l) = self.buffered.next() {
                return Some(Ok(l));
            }
            if self.done {
                return None;
            }
            // The generator's poll never waits (no rate is set), so it is driven here directly.
            let polled = poll_now(self.generator.poll(1024));
            match polled {
                Ok(Poll::Items(items)) => {
                    self.buffered = items
                        .into_iter()
                        .map(|i| String::from_utf8_lossy(&i.data).into_owned())
                        .collect::<Vec<_>>()
                        .into_iter();
                }
                Ok(Poll::End) => self.done = true,
                Ok(Poll::Idle(_)) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Drives a future that completes without waiting.
fn poll_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_from_fields() {
        assert_eq!(
            partition_key("{\"sensor_id\":7}", Some("sensor_id"), 3),
            "7"
        );
        assert_eq!(partition_key("{\"s\":\"a\"}", Some("s"), 3), "a");
        assert_eq!(partition_key("{\"s\":\"a\"}", Some("t"), 3), "3");
        assert_eq!(partition_key("not json", None, 9), "9");
    }

    #[test]
    fn generator_lines_end_at_count() {
        let cfg = GeneratorConfig {
            generator: GeneratorKind::Sine,
            seed: 1,
            count: Some(2500),
            rate: None,
            sensors: 100,
            start_time: None,
            step: JobDuration::from_millis(100),
        };
        let lines = GeneratorLines {
            generator: Generator::new(cfg),
            buffered: Vec::new().into_iter(),
            done: false,
        };
        let v: Vec<String> = lines.map(|l| l.unwrap()).collect();
        assert_eq!(v.len(), 2500);
        assert!(v[0].contains("\"t\":0"));
    }
}
