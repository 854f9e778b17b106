//! The demo's business data: observations, employees and feedback posts, partitioned
//! by (organization, environment) so test keys never see live data and organizations
//! never see each other's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{Map, Value};
use tower_api_key::Principal;

/// Which slice of the data a key may reach.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Partition {
    pub organization: String,
    pub environment: String,
}

impl Partition {
    pub fn of(principal: &Principal) -> Self {
        Self {
            organization: principal.owner().id().to_owned(),
            environment: principal
                .environment()
                .map_or_else(String::new, |e| e.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Default)]
pub struct Collection {
    prefix: &'static str,
    rows: Mutex<HashMap<Partition, Vec<Map<String, Value>>>>,
    next: AtomicU64,
}

impl Collection {
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            ..Self::default()
        }
    }

    /// Stores `object` with a fresh `id`, returning the stored object.
    pub fn insert(
        &self,
        partition: &Partition,
        mut object: Map<String, Value>,
    ) -> Map<String, Value> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        object.insert(
            "id".into(),
            Value::String(format!("{}_{n:06}", self.prefix)),
        );
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rows.entry(partition.clone())
            .or_default()
            .push(object.clone());
        object
    }

    pub fn list(&self, partition: &Partition, limit: usize) -> Vec<Map<String, Value>> {
        let rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rows.get(partition)
            .map(|r| r.iter().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// The object with this id, only inside the partition: another organization's or
    /// environment's object is indistinguishable from a missing one.
    pub fn get(&self, partition: &Partition, id: &str) -> Option<Map<String, Value>> {
        let rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rows.get(partition)?
            .iter()
            .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
            .cloned()
    }
}

#[derive(Debug)]
pub struct Data {
    pub observations: Collection,
    pub employees: Collection,
    pub posts: Collection,
}

impl Default for Data {
    fn default() -> Self {
        Self {
            observations: Collection::new("obs"),
            employees: Collection::new("emp"),
            posts: Collection::new("post"),
        }
    }
}
