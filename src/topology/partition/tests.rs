//! The partition runner against an operator that panics on some records (issue 14.2).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{PartitionRunner, Slot};
use crate::connectors::Sink;
use crate::core::{Batch, Record};
use crate::operators::{Barrier, Context, Operator};
use crate::state::MemoryBackend;
use crate::state::checkpoint::Commit;
use crate::topology::fill::{Bounds, Fill};
use crate::topology::source::tests::Kept;
use crate::topology::{Ack, Message};

/// Passes records on; panics on the value 13 and dead-letters the value 7. Counts the records
/// it was called with.
struct Poison {
    calls: Arc<Mutex<Vec<usize>>>,
}

#[async_trait]
impl Operator for Poison {
    fn name(&self) -> &str {
        "poison"
    }

    async fn process(
        &mut self,
        batch: Batch,
        cx: &mut Context,
        out: &mut Batch,
    ) -> crate::Result<()> {
        self.calls.lock().unwrap().push(batch.len());
        for r in batch {
            match r.values[0] {
                13.0 => panic!("thirteen"),
                7.0 => cx.dead_letter("seven", "seven is unlucky", &r),
                _ => out.push(r),
            }
        }
        Ok(())
    }
}

/// Keeps the first value of every record written.
#[derive(Clone, Default)]
struct Values(Arc<Mutex<Vec<f64>>>);

#[async_trait]
impl Sink for Values {
    async fn write(&mut self, records: &[Record]) -> crate::Result<()> {
        let mut v = self.0.lock().unwrap();
        v.extend(records.iter().map(|r| r.values[0]));
        Ok(())
    }
    async fn precommit(&mut self, _epoch: u64) -> crate::Result<Vec<Commit>> {
        Ok(vec![])
    }
}

fn batch(values: std::ops::Range<u32>) -> Batch {
    values
        .map(|v| Record::new(format!("k{v}"), vec![f64::from(v)]))
        .collect()
}

/// Issue 14.2: a panic inside an operator dead-letters the record it panicked on, with
/// reason `internal_error` and the panic's message, and every other record of its batch
/// and of the batches after it is written. (Before: the partition task died with the panic
/// and the job failed; on restart it replayed into the same panic.)
#[tokio::test]
async fn r14_2_an_operator_panic_dead_letters_that_record_and_the_job_goes_on() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let backend = Arc::new(MemoryBackend::default());
    let cx = Context::new(0, backend);
    let op = Box::new(Poison {
        calls: Arc::clone(&calls),
    });
    let (sink, dead) = (Values::default(), Kept::default());
    let (tx, rx) = mpsc::channel(8);
    let (ack_tx, mut ack_rx) = mpsc::channel(8);
    let runner = PartitionRunner {
        name: "p000".into(),
        index: 0,
        ops: vec![Slot::new(op, &cx).unwrap()],
        cx,
        sink: Box::new(sink.clone()),
        dead_letter: Box::new(dead.clone()),
        input: rx,
        acks: ack_tx,
        fill: Arc::new(Fill::new(Bounds {
            target: Duration::ZERO,
            max_bytes: usize::MAX,
            batch_size: 20,
        })),
        key_groups: vec![0],
        sweep_next: 0,
    };
    let task = tokio::spawn(runner.run());
    tx.send(Message::Batch(batch(0..20))).await.unwrap();
    tx.send(Message::Batch(batch(20..30))).await.unwrap();
    let stop = Barrier {
        epoch: 1,
        then_stop: true,
    };
    tx.send(Message::Barrier(stop)).await.unwrap();
    task.await
        .expect("the partition task does not panic")
        .unwrap();
    assert!(matches!(
        ack_rx.recv().await,
        Some(Ack::Partition { epoch: 1, .. })
    ));

    let written = sink.0.lock().unwrap().clone();
    let expected: Vec<f64> = (0..30)
        .filter(|v| ![7, 13].contains(v))
        .map(f64::from)
        .collect();
    assert_eq!(written, expected);
    let dead = dead.0.lock().unwrap().clone();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let dead: Vec<serde_json::Value> = dead
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(dead[0]["reason"], "seven", "the retry dead-letters 7 once");
    assert_eq!(dead[1]["reason"], "internal_error");
    assert_eq!(dead[1]["component"], "p000");
    let message = dead[1]["error"].as_str().unwrap();
    assert!(
        message.contains("poison panicked") && message.contains("thirteen"),
        "{message}"
    );
    assert!(dead[1]["data"].as_str().unwrap().contains("k13"));
    // The batch, then its 20 records one at a time, then the next batch whole.
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 22, "{calls:?}");
    assert_eq!((calls[0], calls[1], calls[21]), (20, 1, 10));
}
