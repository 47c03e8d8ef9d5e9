//! [`TaskQueue`] on the `messages` table.
//!
//! A receive hides a message until `visible_at` and counts the receive; a
//! message found with `max_receives` receives already moves to the queue's
//! dead-letter queue instead. A receipt is `<message id>.<receive count>`, so
//! it only matches the delivery it came from.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use captcha_core::ports::{Message, Queue, Receipt, StoreResult, TaskQueue};
use rusqlite::{params, TransactionBehavior};

use crate::{to_i64, EmbeddedStore};

fn receipt(id: i64, count: i64) -> Receipt {
    Receipt(format!("{id}.{count}"))
}

fn parse_receipt(r: &Receipt) -> Option<(i64, i64)> {
    let (a, b) = r.0.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl TaskQueue for EmbeddedStore {
    async fn send(&self, queue: Queue, body: &str) -> StoreResult<()> {
        let body = body.to_string();
        self.write("send", move |c, now| {
            c.prepare_cached("INSERT INTO messages(queue, body, visible_at) VALUES (?1, ?2, ?3)")?.execute(params![
                queue.name(),
                body,
                to_i64(now)
            ])?;
            Ok(())
        })
        .await
    }

    async fn send_batch(&self, queue: Queue, bodies: &[String]) -> StoreResult<()> {
        if bodies.is_empty() {
            return Ok(());
        }
        let bodies = bodies.to_vec();
        self.write("send_batch", move |c, now| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt =
                    tx.prepare_cached("INSERT INTO messages(queue, body, visible_at) VALUES (?1, ?2, ?3)")?;
                let name = queue.name();
                for body in &bodies {
                    stmt.execute(params![name, body, to_i64(now)])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn receive(&self, queue: Queue, max: usize, visibility: Duration) -> StoreResult<Vec<Message>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max_receives = i64::from(self.inner.max_receives);
        self.write("receive", move |c, now| {
            let now = to_i64(now);
            let name = queue.name();
            let dead = queue.dead().name();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            {
                let mut select = tx.prepare_cached(
                    "SELECT id, body, receive_count FROM messages
                     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
                )?;
                let mut hide = tx.prepare_cached(
                    "UPDATE messages SET visible_at = ?2, receive_count = receive_count + 1 WHERE id = ?1",
                )?;
                let mut bury = tx.prepare_cached(
                    "UPDATE messages SET queue = ?2, visible_at = ?3, receive_count = 0 WHERE id = ?1",
                )?;
                // Dead-lettering may use up rows of a batch; look again until
                // the batch is full or nothing visible is left.
                loop {
                    let want = i64::try_from(max - out.len()).unwrap_or(i64::MAX);
                    let rows: Vec<(i64, String, i64)> = select
                        .query_map(params![name, now, want], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<Result<_, _>>()?;
                    let mut buried = 0;
                    for (id, body, count) in rows {
                        if !seen.insert(id) {
                            continue;
                        }
                        if !queue.dead_letter && count >= max_receives {
                            bury.execute(params![id, dead, now])?;
                            buried += 1;
                            tracing::warn!(queue = %name, message = id, body, "dead-lettered after {count} receives");
                        } else {
                            hide.execute(params![id, now.saturating_add(ms(visibility))])?;
                            out.push(Message {
                                body,
                                receipt: receipt(id, count + 1),
                                receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                            });
                        }
                    }
                    if buried == 0 || out.len() >= max {
                        break;
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn delete(&self, queue: Queue, receipt: &Receipt) -> StoreResult<()> {
        self.delete_batch(queue, std::slice::from_ref(receipt)).await
    }

    async fn delete_batch(&self, queue: Queue, receipts: &[Receipt]) -> StoreResult<()> {
        let ids: Vec<(i64, i64)> = receipts.iter().filter_map(parse_receipt).collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.write("delete", move |c, _| {
            let name = queue.name();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt =
                    tx.prepare_cached("DELETE FROM messages WHERE id = ?1 AND receive_count = ?2 AND queue = ?3")?;
                for (id, count) in &ids {
                    stmt.execute(params![id, count, name])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn change_visibility(&self, queue: Queue, receipt: &Receipt, visibility: Duration) -> StoreResult<()> {
        let Some((id, count)) = parse_receipt(receipt) else { return Ok(()) };
        self.write("change_visibility", move |c, now| {
            c.prepare_cached(
                "UPDATE messages SET visible_at = ?4 WHERE id = ?1 AND receive_count = ?2 AND queue = ?3",
            )?
            .execute(params![id, count, queue.name(), to_i64(now).saturating_add(ms(visibility))])?;
            Ok(())
        })
        .await
    }
}
