//! An in-memory adapter of every storage port, behind one mutex: the
//! reference semantics the other adapters are tested against.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{AccountStore, Clock, HoldOutcome, Message, Queue, Receipt, StoreResult, TaskQueue, TaskStore};
use crate::config::ms;
use crate::domain::{Account, AccountId, Hold, HoldState, Task, TaskState, Transition};
use crate::service::{Report, TaskId};

/// Messages received this many times move to the dead-letter queue.
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

/// Tasks, accounts, holds and queues in process memory.
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    max_receives: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tasks: HashMap<TaskId, StoredTask>,
    accounts: HashMap<AccountId, Account>,
    holds: HashMap<TaskId, Hold>,
    /// Messages per queue, keyed by a sequence number (send order).
    queues: HashMap<Queue, BTreeMap<u64, StoredMessage>>,
    next_message: u64,
}

struct StoredTask {
    task: Task,
    image: Option<Vec<u8>>,
}

struct StoredMessage {
    body: String,
    visible_at_ms: u64,
    receive_count: u32,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> MemoryStore {
        MemoryStore::with_max_receives(clock, DEFAULT_MAX_RECEIVES)
    }

    pub fn with_max_receives(clock: Arc<dyn Clock>, max_receives: u32) -> MemoryStore {
        MemoryStore { clock, max_receives: max_receives.max(1), state: Mutex::new(State::default()) }
    }

    /// Messages in a queue, visible or not (tests and diagnostics).
    pub fn queue_len(&self, queue: Queue) -> usize {
        self.state.lock().queues.get(&queue).map_or(0, |q| q.len())
    }
}

fn receipt(seq: u64, receive_count: u32) -> Receipt {
    Receipt(format!("{seq}.{receive_count}"))
}

fn parse_receipt(r: &Receipt) -> Option<(u64, u32)> {
    let (a, b) = r.0.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[async_trait]
impl TaskQueue for MemoryStore {
    async fn send(&self, queue: Queue, body: &str) -> StoreResult<()> {
        self.send_batch(queue, &[body.to_string()]).await
    }

    async fn send_batch(&self, queue: Queue, bodies: &[String]) -> StoreResult<()> {
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        for body in bodies {
            st.next_message += 1;
            let seq = st.next_message;
            st.queues
                .entry(queue)
                .or_default()
                .insert(seq, StoredMessage { body: body.clone(), visible_at_ms: now, receive_count: 0 });
        }
        Ok(())
    }

    async fn receive(&self, queue: Queue, max: usize, visibility: Duration) -> StoreResult<Vec<Message>> {
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        let State { queues, next_message, .. } = &mut *st;
        let mut out = Vec::new();
        let mut dead = Vec::new();
        if let Some(q) = queues.get_mut(&queue) {
            for (&seq, m) in q.iter_mut() {
                if out.len() >= max {
                    break;
                }
                if m.visible_at_ms > now {
                    continue;
                }
                if !queue.dead_letter && m.receive_count >= self.max_receives {
                    dead.push(seq);
                    continue;
                }
                m.receive_count += 1;
                m.visible_at_ms = now.saturating_add(ms(visibility));
                out.push(Message {
                    body: m.body.clone(),
                    receipt: receipt(seq, m.receive_count),
                    receive_count: m.receive_count,
                });
            }
            let moved: Vec<StoredMessage> = dead.iter().filter_map(|seq| q.remove(seq)).collect();
            let dlq = queues.entry(queue.dead()).or_default();
            for m in moved {
                *next_message += 1;
                dlq.insert(*next_message, StoredMessage { body: m.body, visible_at_ms: now, receive_count: 0 });
            }
        }
        Ok(out)
    }

    async fn delete(&self, queue: Queue, receipt: &Receipt) -> StoreResult<()> {
        self.delete_batch(queue, std::slice::from_ref(receipt)).await
    }

    async fn delete_batch(&self, queue: Queue, receipts: &[Receipt]) -> StoreResult<()> {
        let mut st = self.state.lock();
        if let Some(q) = st.queues.get_mut(&queue) {
            for r in receipts {
                if let Some((seq, count)) = parse_receipt(r) {
                    if q.get(&seq).is_some_and(|m| m.receive_count == count) {
                        q.remove(&seq);
                    }
                }
            }
        }
        Ok(())
    }

    async fn change_visibility(&self, queue: Queue, receipt: &Receipt, visibility: Duration) -> StoreResult<()> {
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        if let (Some(q), Some((seq, count))) = (st.queues.get_mut(&queue), parse_receipt(receipt)) {
            if let Some(m) = q.get_mut(&seq).filter(|m| m.receive_count == count) {
                m.visible_at_ms = now.saturating_add(ms(visibility));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn put_new(&self, task: &Task, image: &[u8]) -> StoreResult<bool> {
        let mut st = self.state.lock();
        if st.tasks.contains_key(&task.id) {
            return Ok(false);
        }
        st.tasks.insert(task.id, StoredTask { task: task.clone(), image: Some(image.to_vec()) });
        Ok(true)
    }

    async fn get(&self, id: TaskId) -> StoreResult<Option<Task>> {
        Ok(self.state.lock().tasks.get(&id).map(|t| t.task.clone()))
    }

    async fn image(&self, id: TaskId) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.state.lock().tasks.get(&id).and_then(|t| t.image.clone()))
    }

    async fn transition(&self, id: TaskId, t: &Transition) -> StoreResult<bool> {
        let mut st = self.state.lock();
        match st.tasks.get_mut(&id) {
            Some(stored) if t.matches(&stored.task) => {
                t.apply(&mut stored.task);
                if t.to.is_terminal() {
                    stored.image = None;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_report(&self, id: TaskId, report: Report, at_ms: u64) -> StoreResult<bool> {
        let mut st = self.state.lock();
        match st.tasks.get_mut(&id) {
            Some(stored) if stored.task.report.is_none() => {
                stored.task.report = Some(report);
                stored.task.reported_ms = Some(at_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn stuck(&self, state: TaskState, updated_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>> {
        let st = self.state.lock();
        Ok(st
            .tasks
            .values()
            .filter(|t| t.task.state == state && t.task.updated_ms < updated_before_ms)
            .take(limit)
            .map(|t| t.task.clone())
            .collect())
    }

    async fn overdue(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Task>> {
        let st = self.state.lock();
        Ok(st
            .tasks
            .values()
            .filter(|t| !t.task.state.is_terminal() && t.task.created_ms < created_before_ms)
            .take(limit)
            .map(|t| t.task.clone())
            .collect())
    }

    async fn purge(&self, ended_before_ms: u64, created_before_ms: u64, limit: usize) -> StoreResult<usize> {
        let mut st = self.state.lock();
        let doomed: Vec<TaskId> = st
            .tasks
            .values()
            .filter(|t| {
                t.task.state.is_terminal()
                    && t.task.ended_ms.is_some_and(|e| e < ended_before_ms)
                    && t.task.created_ms < created_before_ms
            })
            .take(limit)
            .map(|t| t.task.id)
            .collect();
        for id in &doomed {
            st.tasks.remove(id);
        }
        Ok(doomed.len())
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn create(&self, account: &Account) -> StoreResult<bool> {
        let mut st = self.state.lock();
        if st.accounts.contains_key(&account.id) {
            return Ok(false);
        }
        st.accounts.insert(account.id.clone(), account.clone());
        Ok(true)
    }

    async fn get(&self, id: &AccountId) -> StoreResult<Option<Account>> {
        Ok(self.state.lock().accounts.get(id).cloned())
    }

    async fn list(&self) -> StoreResult<Vec<Account>> {
        let mut all: Vec<Account> = self.state.lock().accounts.values().cloned().collect();
        all.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(all)
    }

    async fn top_up(&self, id: &AccountId, amount_micros: u64) -> StoreResult<Option<Account>> {
        let mut st = self.state.lock();
        Ok(st.accounts.get_mut(id).map(|a| {
            a.balance_micros = a.balance_micros.saturating_add(amount_micros);
            a.clone()
        }))
    }

    async fn hold(
        &self,
        id: &AccountId,
        task: TaskId,
        amount_micros: u64,
        max_open: u32,
        now_ms: u64,
    ) -> StoreResult<HoldOutcome> {
        let mut st = self.state.lock();
        let State { accounts, holds, .. } = &mut *st;
        let Some(account) = accounts.get_mut(id) else {
            return Ok(HoldOutcome::NoAccount);
        };
        if holds.contains_key(&task) {
            return Ok(HoldOutcome::DuplicateTask);
        }
        if account.open_holds >= max_open {
            return Ok(HoldOutcome::TooManyOpen);
        }
        if account.available_micros() < amount_micros {
            return Ok(HoldOutcome::InsufficientFunds);
        }
        account.held_micros += amount_micros;
        account.open_holds += 1;
        holds.insert(
            task,
            Hold {
                task_id: task,
                account: id.clone(),
                amount_micros,
                state: HoldState::Held,
                created_ms: now_ms,
                closed_ms: None,
            },
        );
        Ok(HoldOutcome::Held)
    }

    async fn settle(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        Ok(self.close_hold(task, now_ms, HoldState::Settled))
    }

    async fn release(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        Ok(self.close_hold(task, now_ms, HoldState::Released))
    }

    async fn refund(&self, task: TaskId, now_ms: u64) -> StoreResult<bool> {
        let mut st = self.state.lock();
        let State { accounts, holds, .. } = &mut *st;
        let Some(hold) = holds.get_mut(&task).filter(|h| h.state == HoldState::Settled) else {
            return Ok(false);
        };
        if let Some(account) = accounts.get_mut(&hold.account) {
            account.balance_micros = account.balance_micros.saturating_add(hold.amount_micros);
        }
        hold.state = HoldState::Refunded;
        hold.closed_ms = Some(now_ms);
        Ok(true)
    }

    async fn hold_of(&self, task: TaskId) -> StoreResult<Option<Hold>> {
        Ok(self.state.lock().holds.get(&task).cloned())
    }

    async fn open_holds(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<Hold>> {
        let st = self.state.lock();
        Ok(st
            .holds
            .values()
            .filter(|h| h.state == HoldState::Held && h.created_ms < created_before_ms)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn purge_holds(&self, closed_before_ms: u64, limit: usize) -> StoreResult<usize> {
        let mut st = self.state.lock();
        let doomed: Vec<TaskId> = st
            .holds
            .values()
            .filter(|h| h.closed_ms.is_some_and(|c| c < closed_before_ms))
            .take(limit)
            .map(|h| h.task_id)
            .collect();
        for id in &doomed {
            st.holds.remove(id);
        }
        Ok(doomed.len())
    }

    async fn set_callback_secret(&self, id: &AccountId, secret: &str) -> StoreResult<bool> {
        let mut st = self.state.lock();
        Ok(st.accounts.get_mut(id).map(|a| a.callback_secret = secret.to_string()).is_some())
    }

    async fn set_pingback_urls(&self, id: &AccountId, urls: &[String]) -> StoreResult<bool> {
        let mut st = self.state.lock();
        Ok(st.accounts.get_mut(id).map(|a| a.pingback_urls = urls.to_vec()).is_some())
    }
}

impl MemoryStore {
    /// Moves an open hold to `Settled` (charging it) or `Released`.
    fn close_hold(&self, task: TaskId, now_ms: u64, to: HoldState) -> bool {
        let mut st = self.state.lock();
        let State { accounts, holds, .. } = &mut *st;
        let Some(hold) = holds.get_mut(&task).filter(|h| h.state == HoldState::Held) else {
            return false;
        };
        if let Some(account) = accounts.get_mut(&hold.account) {
            account.held_micros = account.held_micros.saturating_sub(hold.amount_micros);
            account.open_holds = account.open_holds.saturating_sub(1);
            if to == HoldState::Settled {
                account.balance_micros = account.balance_micros.saturating_sub(hold.amount_micros);
            }
        }
        hold.state = to;
        hold.closed_ms = Some(now_ms);
        true
    }
}
