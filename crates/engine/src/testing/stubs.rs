//! The world of a case: every effect answered by the case's stubs, or recorded as a miss.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::runner::{Call, Effect, Effects, Ending, Output, Stop};

use super::{Case, Given, Stub};

/// The world of a case: each effect answered by the case's stubs, and every effect it does
/// not stub recorded as a miss that fails the case.
#[derive(Debug)]
pub(super) struct Stubs {
    pub(super) given: HashMap<String, Given>,
    pub(super) misses: Mutex<Vec<String>>,
    /// Given id → the highest attempt it answered.
    pub(super) used: Mutex<HashMap<String, u32>>,
}

impl Stubs {
    pub(super) fn new(case: &Case) -> Stubs {
        let given = case
            .given
            .iter()
            .map(|placed| (placed.value.0.clone(), placed.value.1.clone()))
            .collect();
        Stubs { given, misses: Mutex::default(), used: Mutex::default() }
    }

    pub(super) fn first_miss(&self) -> Option<String> {
        self.misses.lock().unwrap_or_else(|e| e.into_inner()).first().cloned()
    }

    pub(super) fn miss(&self, message: String) -> Output {
        self.misses.lock().unwrap_or_else(|e| e.into_inner()).push(message.clone());
        Output::error(message)
    }
}

#[async_trait::async_trait]
impl Effects for Stubs {
    async fn execute(&self, call: Call<'_>, _stop: &mut watch::Receiver<Stop>) -> Output {
        let id = call.step_id;
        if let Effect::Sleep(duration) = call.effect {
            tokio::time::sleep(*duration).await;
            return Output::ended(Ending::Completed);
        }
        let key = if self.given.contains_key(id) {
            Some(id)
        } else {
            id.split_once('[').map(|(own, _)| own).filter(|own| self.given.contains_key(*own))
        };
        let Some((key, given)) = key.and_then(|key| Some((key, self.given.get(key)?))) else {
            return self.miss(format!(
                "`{id}` was about to run, and the case does not say what it returns: give it \
                 an answer (a test never runs a real command or request)"
            ));
        };
        {
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            let highest = used.entry(key.to_owned()).or_default();
            *highest = (*highest).max(call.attempt);
        }
        let Some(stub) = given.nth(call.attempt) else {
            return self.miss(format!(
                "`{id}` ran a {} time, and the case gives {} answer{}",
                ordinal(call.attempt),
                given.answers.len(),
                if given.answers.len() == 1 { "" } else { "s" }
            ));
        };
        let effect = match stub {
            Stub::Timeout => {
                tokio::time::sleep(call.timeout).await;
                return Output::ended(Ending::TimedOut);
            }
            Stub::Effect(effect) => effect,
            other => {
                return self.miss(format!("`{id}` ran, and is given {}", other.describe()));
            }
        };
        if let Some(takes) = effect.takes {
            if takes > call.timeout {
                tokio::time::sleep(call.timeout).await;
                return Output::ended(Ending::TimedOut);
            }
            tokio::time::sleep(takes).await;
        }
        if let Some(error) = &effect.error {
            return Output::error(error.clone());
        }
        let http = matches!(call.effect, Effect::Http { .. });
        let stdout = if http { effect.body.clone() } else { effect.stdout.clone() };
        Output {
            exit_code: (!http).then(|| effect.exit_code.unwrap_or(0)),
            http_status: http.then(|| effect.status.unwrap_or(200)),
            stdout: stdout.unwrap_or_default().into_bytes(),
            stderr: effect.stderr.clone().unwrap_or_default().into_bytes(),
            ..Output::ended(Ending::Completed)
        }
    }
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
