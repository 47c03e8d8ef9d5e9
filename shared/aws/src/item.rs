//! Item codecs (attribute values in and out, malformed → `Corrupt`) and the
//! mapping of SDK errors to [`StoreError`].

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Debug;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use captcha_core::ports::{StoreError, StoreResult};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl Into<u64>) -> AttributeValue {
    AttributeValue::N(v.into().to_string())
}

/// Unix ms → Unix seconds (the TTL attribute's unit), rounded up.
pub(crate) fn secs_ceil(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// Error codes that mean "try again later", whatever the service.
fn is_transient(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "Throttling"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionInProgressException"
                | "RequestThrottled"
                | "KMSThrottled"
                | "AWS.SimpleQueueService.RequestThrottled"
        )
    )
}

/// An SDK failure as a [`StoreError`]: network, timeouts and throttling are
/// `Unavailable` (retryable), the rest `Backend` with the source kept.
pub(crate) fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> StoreError
where
    E: Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ServiceError(se) => is_transient(se.err().code()),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(format!("{what}: {}", DisplayErrorContext(&e)))
    } else {
        let context = format!("{what}: {}", DisplayErrorContext(&e));
        StoreError::backend(context, e)
    }
}

/// Typed access to one item's attributes; anything missing or of the wrong
/// type is [`StoreError::Corrupt`] naming the table, key and attribute.
pub(crate) struct Fields<'a> {
    item: &'a Item,
    table: &'a str,
    key: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(table: &'a str, key: &'static str, item: &'a Item) -> Fields<'a> {
        Fields { item, table, key }
    }

    pub(crate) fn corrupt(&self, attr: &str, why: &str) -> StoreError {
        let id = match self.item.get(self.key) {
            Some(AttributeValue::S(v)) => v.clone(),
            Some(AttributeValue::N(v)) => v.clone(),
            _ => "?".to_string(),
        };
        StoreError::Corrupt(format!("{} item {}={id}: attribute {attr} {why}", self.table, self.key))
    }

    pub(crate) fn s(&self, attr: &str) -> StoreResult<&'a str> {
        match self.item.get(attr) {
            Some(AttributeValue::S(v)) => Ok(v.as_str()),
            Some(_) => Err(self.corrupt(attr, "is not a string")),
            None => Err(self.corrupt(attr, "is missing")),
        }
    }

    pub(crate) fn opt_s(&self, attr: &str) -> StoreResult<Option<String>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.corrupt(attr, "is not a string")),
        }
    }

    pub(crate) fn n(&self, attr: &str) -> StoreResult<u64> {
        self.opt_n(attr)?.ok_or_else(|| self.corrupt(attr, "is missing"))
    }

    pub(crate) fn opt_n(&self, attr: &str) -> StoreResult<Option<u64>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => {
                v.parse::<u64>().map(Some).map_err(|_| self.corrupt(attr, &format!("{v:?} is not a u64")))
            }
            Some(_) => Err(self.corrupt(attr, "is not a number")),
        }
    }

    pub(crate) fn u32(&self, attr: &str) -> StoreResult<u32> {
        let v = self.n(attr)?;
        u32::try_from(v).map_err(|_| self.corrupt(attr, &format!("{v} is out of range")))
    }

    pub(crate) fn b(&self, attr: &str) -> StoreResult<&'a [u8]> {
        match self.item.get(attr) {
            Some(AttributeValue::B(v)) => Ok(v.as_ref()),
            Some(_) => Err(self.corrupt(attr, "is not binary")),
            None => Err(self.corrupt(attr, "is missing")),
        }
    }

    /// A list of strings (`L` of `S`); missing = empty.
    pub(crate) fn str_list(&self, attr: &str) -> StoreResult<Vec<String>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::L(vs)) => vs
                .iter()
                .map(|v| match v {
                    AttributeValue::S(s) => Ok(s.clone()),
                    _ => Err(self.corrupt(attr, "has a non-string element")),
                })
                .collect(),
            Some(AttributeValue::Ss(vs)) => Ok(vs.clone()),
            Some(_) => Err(self.corrupt(attr, "is not a list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_attributes_are_corrupt_not_panics() {
        let item: Item = HashMap::from([
            ("task_id".to_string(), s("7")),
            ("a".to_string(), AttributeValue::N("-1".into())),
            ("b".to_string(), s("x")),
            ("c".to_string(), n(5u64)),
        ]);
        let f = Fields::new("tasks", "task_id", &item);
        assert!(
            matches!(f.n("a"), Err(StoreError::Corrupt(m)) if m.contains("task_id=7") && m.contains("attribute a"))
        );
        assert!(matches!(f.n("b"), Err(StoreError::Corrupt(_))));
        assert!(matches!(f.s("missing"), Err(StoreError::Corrupt(_))));
        assert_eq!(f.n("c").ok(), Some(5));
        assert_eq!(f.opt_n("missing").ok(), Some(None));
        assert_eq!(secs_ceil(1_001), 2);
        assert_eq!(secs_ceil(2_000), 2);
    }
}
