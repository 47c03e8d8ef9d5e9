//! Account administration for operators (the `captchad account …` CLI):
//! create an account (the plain key is shown once), top up, list, find,
//! rotate the callback signing secret.

use std::sync::Arc;

use crate::domain::{new_callback_secret, Account, AccountId, ApiKey};
use crate::ports::{AccountStore, Clock, StoreError};

/// A freshly created account and its key — the only time the key is known.
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    /// The plain API key to hand to the customer; only its hash is stored.
    pub key: String,
    pub account: Account,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no account matches {0:?}")]
    NotFound(String),
    #[error("{0:?} matches more than one account; give more of the id")]
    Ambiguous(String),
    #[error("{0:?} is neither a 32-character key nor at least 6 hex digits of an account id")]
    BadSelector(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Account administration over an [`AccountStore`]; needs no other port, so
/// a CLI can build it without a queue or a task store.
#[derive(Clone)]
pub struct AccountAdmin {
    accounts: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
}

/// The shortest id prefix accepted as a selector.
const MIN_PREFIX: usize = 6;

impl AccountAdmin {
    pub fn new(accounts: Arc<dyn AccountStore>, clock: Arc<dyn Clock>) -> AccountAdmin {
        AccountAdmin { accounts, clock }
    }

    /// Creates an account with a new random key and `initial_micros` on it.
    pub async fn create(&self, initial_micros: u64) -> Result<CreatedAccount, AdminError> {
        loop {
            let key = ApiKey::generate();
            let account = Account {
                id: key.account_id(),
                balance_micros: initial_micros,
                held_micros: 0,
                open_holds: 0,
                created_ms: self.clock.now_ms(),
                callback_secret: new_callback_secret(),
                pingback_urls: Vec::new(),
            };
            // A 128-bit key collision is impossible in practice; loop anyway.
            if self.accounts.create(&account).await? {
                return Ok(CreatedAccount { key: key.as_str().to_string(), account });
            }
        }
    }

    /// Adds `amount_micros` to the account `selector` names (see [`AccountAdmin::find`]).
    pub async fn top_up(&self, selector: &str, amount_micros: u64) -> Result<Account, AdminError> {
        let account = self.find(selector).await?;
        self.accounts
            .top_up(&account.id, amount_micros)
            .await?
            .ok_or_else(|| AdminError::NotFound(selector.to_string()))
    }

    /// Gives the account `selector` names a new callback signing secret and
    /// returns the account with it (the old secret stops verifying at once).
    pub async fn rotate_secret(&self, selector: &str) -> Result<Account, AdminError> {
        let mut account = self.find(selector).await?;
        let secret = new_callback_secret();
        if !self.accounts.set_callback_secret(&account.id, &secret).await? {
            return Err(AdminError::NotFound(selector.to_string()));
        }
        account.callback_secret = secret;
        Ok(account)
    }

    /// Every account, oldest first.
    pub async fn list(&self) -> Result<Vec<Account>, AdminError> {
        Ok(self.accounts.list().await?)
    }

    /// The account of a plain API key, if any.
    pub async fn find_by_key(&self, key: &str) -> Result<Option<Account>, AdminError> {
        match ApiKey::parse(key) {
            Some(key) => Ok(self.accounts.get(&key.account_id()).await?),
            None => Ok(None),
        }
    }

    /// The account a selector names: a plain 32-character key, a full account
    /// id (64 hex digits), or a unique prefix of an id (at least 6 hex digits).
    pub async fn find(&self, selector: &str) -> Result<Account, AdminError> {
        let s = selector.trim().to_ascii_lowercase();
        if let Some(account) = self.find_by_key(&s).await? {
            return Ok(account);
        }
        if s.len() < MIN_PREFIX || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AdminError::BadSelector(selector.to_string()));
        }
        if s.len() == 64 {
            if let Some(account) = self.accounts.get(&AccountId(s.clone())).await? {
                return Ok(account);
            }
        }
        let mut matches: Vec<Account> =
            self.accounts.list().await?.into_iter().filter(|a| a.id.as_str().starts_with(&s)).collect();
        match matches.len() {
            0 => Err(AdminError::NotFound(selector.to_string())),
            1 => Ok(matches.remove(0)),
            _ => Err(AdminError::Ambiguous(selector.to_string())),
        }
    }
}
