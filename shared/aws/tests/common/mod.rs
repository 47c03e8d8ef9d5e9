//! Fresh AWS resources per test, on LocalStack.
//!
//! The stack `infra/deploy-localstack.sh` deployed (names in the `CAPTCHA_*`
//! variables) is the model: each test clones its tables (key schema, GSIs)
//! and queues (redrive policy with the same `maxReceiveCount`) under a random
//! prefix, so tests start empty, may run in parallel, and the shapes are the
//! template's, never a copy of it. The clones are deleted when the test's
//! guard drops.
//!
//! The shared suite moves time with a manual clock, but SQS hides messages in
//! real time. [`ClockedQueue`] bridges the two: it receives with a long real
//! visibility, remembers when each delivery is due by the manual clock, and
//! makes due messages visible (`ChangeMessageVisibility 0`) before the next
//! receive. It also drops deletes with a superseded receipt: SQS documents
//! that such a delete *may* remove the message (LocalStack always does),
//! while the suite pins the SQLite adapter's stricter behaviour.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, Projection, TableStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use captcha_aws::{AccountTables, DynamoAccounts, DynamoTasks, QueueUrls, Retention, SqsQueue, TaskTables};
use captcha_core::ports::{Clock, ManualClock, Message, Ports, Queue, Receipt, StoreResult, TaskQueue};
use captcha_core::testkit::Guard;
use parking_lot::Mutex;
use rand::Rng;

/// The real visibility of a delivery the manual clock governs.
const REAL_VISIBILITY: Duration = Duration::from_secs(3600);

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/aws.sh"))
}

/// Blocks on `f` from inside the test's (multi-threaded) runtime.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// Resources created for one test.
pub struct Fresh {
    pub sdk: aws_config::SdkConfig,
    pub prefix: String,
    pub tasks: TaskTables,
    pub accounts: AccountTables,
    pub urls: QueueUrls,
}

/// Clones the deployed tables and queues under a random prefix.
pub async fn fresh() -> Fresh {
    let sdk = captcha_aws::sdk_config().await;
    let prefix = format!("t{:08x}-", rand::thread_rng().gen::<u32>());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut names = HashMap::new();
    for var in ["CAPTCHA_TASKS_TABLE", "CAPTCHA_IMAGES_TABLE", "CAPTCHA_ACCOUNTS_TABLE", "CAPTCHA_HOLDS_TABLE"] {
        let model = env(var);
        let name = format!("{prefix}{model}");
        clone_table(&ddb, &model, &name).await;
        names.insert(var, name);
    }
    let mut urls = QueueUrls::new();
    let intake_model = env("CAPTCHA_INTAKE_QUEUE_URL");
    for q in QueueUrls::known_queues() {
        let base = q.name().to_ascii_uppercase();
        // A pool the stack does not deploy yet (native) is modelled on intake.
        let model = std::env::var(format!("CAPTCHA_{base}_QUEUE_URL")).unwrap_or_else(|_| intake_model.clone());
        let (url, dlq) = clone_queue(&sqs, &model, &prefix, &q.name()).await;
        urls.insert(q, url);
        urls.insert(q.dead(), dlq);
    }
    Fresh {
        sdk,
        tasks: TaskTables {
            tasks: names["CAPTCHA_TASKS_TABLE"].clone(),
            images: names["CAPTCHA_IMAGES_TABLE"].clone(),
        },
        accounts: AccountTables {
            accounts: names["CAPTCHA_ACCOUNTS_TABLE"].clone(),
            holds: names["CAPTCHA_HOLDS_TABLE"].clone(),
        },
        urls,
        prefix,
    }
}

async fn clone_table(ddb: &aws_sdk_dynamodb::Client, model: &str, name: &str) {
    let d = ddb.describe_table().table_name(model).send().await.expect("describe the deployed table");
    let t = d.table().expect("table description");
    let attrs: Vec<AttributeDefinition> = t.attribute_definitions().to_vec();
    let keys: Vec<KeySchemaElement> = t.key_schema().to_vec();
    let gsis: Vec<GlobalSecondaryIndex> = t
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(g.index_name().expect("index name"))
                .set_key_schema(Some(g.key_schema().to_vec()))
                .projection(g.projection().cloned().unwrap_or_else(|| Projection::builder().build()))
                .build()
                .expect("gsi")
        })
        .collect();
    ddb.create_table()
        .table_name(name)
        .set_attribute_definitions(Some(attrs))
        .set_key_schema(Some(keys))
        .set_global_secondary_indexes(if gsis.is_empty() { None } else { Some(gsis) })
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    for _ in 0..100 {
        let d = ddb.describe_table().table_name(name).send().await.expect("describe");
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("table {name} did not become active");
}

/// Creates `<prefix><name>-dlq` and `<prefix><name>` redriving to it with the
/// model queue's `maxReceiveCount`; returns (queue URL, DLQ URL).
async fn clone_queue(sqs: &aws_sdk_sqs::Client, model_url: &str, prefix: &str, name: &str) -> (String, String) {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(model_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("deployed queue attributes");
    let attrs = attrs.attributes().expect("attributes");
    let redrive = attrs.get(&QueueAttributeName::RedrivePolicy).expect("the deployed queue has a redrive policy");
    let max_receive: serde_like::MaxReceive = serde_like::parse_max_receive(redrive);
    let dlq = sqs.create_queue().queue_name(format!("{prefix}{name}-dlq")).send().await.expect("create dlq");
    let dlq_url = dlq.queue_url().expect("dlq url").to_string();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq arn");
    let dlq_arn = dlq_arn.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).expect("arn").clone();
    let q = sqs
        .create_queue()
        .queue_name(format!("{prefix}{name}"))
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":{}}}"#, max_receive.0),
        )
        .send()
        .await
        .expect("create queue");
    (q.queue_url().expect("url").to_string(), dlq_url)
}

mod serde_like {
    /// `maxReceiveCount` from a redrive policy (JSON; the number may be quoted).
    pub struct MaxReceive(pub u32);

    pub fn parse_max_receive(policy: &str) -> MaxReceive {
        let at = policy.find("maxReceiveCount").expect("maxReceiveCount in redrive policy");
        let digits: String =
            policy[at..].chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
        MaxReceive(digits.parse().expect("a number"))
    }
}

/// Deletes the test's tables and queues when dropped.
pub struct Cleanup {
    sdk: aws_config::SdkConfig,
    tables: Vec<String>,
    queues: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sdk = self.sdk.clone();
        let tables = std::mem::take(&mut self.tables);
        let queues = std::mem::take(&mut self.queues);
        // Drop may run on a runtime thread: clean up from a thread of our own.
        let t = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let ddb = aws_sdk_dynamodb::Client::new(&sdk);
                let sqs = aws_sdk_sqs::Client::new(&sdk);
                for t in tables {
                    let _ = ddb.delete_table().table_name(t).send().await;
                }
                for q in queues {
                    let _ = sqs.delete_queue().queue_url(q).send().await;
                }
            });
        });
        let _ = t.join();
    }
}

impl Fresh {
    pub fn cleanup(&self) -> Cleanup {
        Cleanup {
            sdk: self.sdk.clone(),
            tables: vec![
                self.tasks.tasks.clone(),
                self.tasks.images.clone(),
                self.accounts.accounts.clone(),
                self.accounts.holds.clone(),
            ],
            queues: self.urls.iter().map(|(_, u)| u.to_string()).collect(),
        }
    }

    pub fn sqs(&self) -> SqsQueue {
        SqsQueue::new(aws_sdk_sqs::Client::new(&self.sdk), self.urls.clone())
    }

    pub fn tasks(&self) -> DynamoTasks {
        DynamoTasks::new(aws_sdk_dynamodb::Client::new(&self.sdk), self.tasks.clone(), Retention::default())
    }

    pub fn accounts(&self) -> DynamoAccounts {
        DynamoAccounts::new(aws_sdk_dynamodb::Client::new(&self.sdk), self.accounts.clone(), Retention::default())
    }
}

/// The suite's `make`: fresh tables and queues, SQS visibility on the manual clock.
pub fn make(clock: Arc<ManualClock>) -> (Ports, Guard) {
    let fresh = block(fresh());
    let queue = ClockedQueue { inner: fresh.sqs(), clock: clock.clone(), state: Mutex::default() };
    let ports =
        Ports { queue: Arc::new(queue), tasks: Arc::new(fresh.tasks()), accounts: Arc::new(fresh.accounts()), clock };
    (ports, Box::new(fresh.cleanup()))
}

/// The message id inside a LocalStack receipt handle (base64 of
/// `<uid> <queue arn> <message id> <time>`), if it is one.
fn message_id(receipt: &Receipt) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(&receipt.0).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let parts: Vec<&str> = text.split(' ').collect();
    (parts.len() == 4).then(|| parts[2].to_string())
}

#[derive(Default)]
struct Deliveries {
    /// receipt → (queue, due by the manual clock)
    due: HashMap<Receipt, (Queue, u64)>,
    /// message id → its latest receipt
    latest: HashMap<String, Receipt>,
}

/// [`SqsQueue`] with visibility measured on the manual clock (see the module docs).
pub struct ClockedQueue {
    inner: SqsQueue,
    clock: Arc<ManualClock>,
    state: Mutex<Deliveries>,
}

impl ClockedQueue {
    fn is_stale(&self, receipt: &Receipt) -> bool {
        let st = self.state.lock();
        match message_id(receipt) {
            Some(id) => st.latest.get(&id).is_some_and(|r| r != receipt),
            None => false,
        }
    }

    fn track(&self, queue: Queue, receipt: &Receipt, visibility: Duration) {
        let due = self.clock.now_ms() + u64::try_from(visibility.as_millis()).unwrap_or(u64::MAX / 2);
        let mut st = self.state.lock();
        st.due.insert(receipt.clone(), (queue, due));
        if let Some(id) = message_id(receipt) {
            st.latest.insert(id, receipt.clone());
        }
    }

    fn forget(&self, receipt: &Receipt) {
        self.state.lock().due.remove(receipt);
    }
}

#[async_trait]
impl TaskQueue for ClockedQueue {
    async fn send(&self, queue: Queue, body: &str) -> StoreResult<()> {
        self.inner.send(queue, body).await
    }

    async fn send_batch(&self, queue: Queue, bodies: &[String]) -> StoreResult<()> {
        self.inner.send_batch(queue, bodies).await
    }

    async fn receive(&self, queue: Queue, max: usize, visibility: Duration) -> StoreResult<Vec<Message>> {
        let now = self.clock.now_ms();
        let due: Vec<Receipt> = {
            let mut st = self.state.lock();
            let due: Vec<Receipt> =
                st.due.iter().filter(|(_, (q, at))| *q == queue && *at <= now).map(|(r, _)| r.clone()).collect();
            for r in &due {
                st.due.remove(r);
            }
            due
        };
        for r in due {
            self.inner.change_visibility(queue, &r, Duration::ZERO).await?;
        }
        let real = if visibility.is_zero() { Duration::ZERO } else { REAL_VISIBILITY };
        let got = self.inner.receive(queue, max, real).await?;
        for m in &got {
            self.track(queue, &m.receipt, visibility);
        }
        Ok(got)
    }

    async fn delete(&self, queue: Queue, receipt: &Receipt) -> StoreResult<()> {
        if self.is_stale(receipt) {
            return Ok(());
        }
        self.forget(receipt);
        self.inner.delete(queue, receipt).await
    }

    async fn delete_batch(&self, queue: Queue, receipts: &[Receipt]) -> StoreResult<()> {
        let current: Vec<Receipt> = receipts.iter().filter(|r| !self.is_stale(r)).cloned().collect();
        for r in &current {
            self.forget(r);
        }
        self.inner.delete_batch(queue, &current).await
    }

    async fn change_visibility(&self, queue: Queue, receipt: &Receipt, visibility: Duration) -> StoreResult<()> {
        if self.is_stale(receipt) {
            return Ok(());
        }
        if visibility.is_zero() {
            self.forget(receipt);
            self.inner.change_visibility(queue, receipt, Duration::ZERO).await
        } else {
            self.track(queue, receipt, visibility);
            self.inner.change_visibility(queue, receipt, REAL_VISIBILITY).await
        }
    }
}
