//! Who did something — a person with an account, the operator at the terminal, or Steady
//! itself — and the text it is stored as: `user:<name>`, `local:<os user>` or `steady`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who did something. Stored, hashed into audit events and shown in the API as its text
/// (`user:alice`, `local:root`, `steady`), which [`Display`](fmt::Display) writes and
/// [`FromStr`] reads back.
///
/// The variants are declared in the order of their texts, so that the derived `Ord` sorts
/// actors exactly as their stored text sorts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    /// The person at this terminal, by operating-system user name: trusted like anyone with
    /// write access to the database.
    Local(String),
    /// Steady itself: timeouts, recoveries, the executor.
    Steady,
    /// A person with an account, by account name.
    User(String),
}

/// Stored actor text that is none of `user:…`, `local:…` or `steady`: a corrupt row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown actor `{0}`: not `user:…`, `local:…` or `steady`")]
pub struct UnknownActor(pub String);

impl Actor {
    /// The person at this terminal, trusted like anyone with write access to the database.
    pub fn local(os_user: &str) -> Actor {
        Actor::Local(os_user.to_owned())
    }

    /// The person with the account `name`.
    pub fn user(name: &str) -> Actor {
        Actor::User(name.to_owned())
    }

    /// A person as typed by people: `alice` is the account `user:alice`; `user:…`, `local:…`
    /// and `steady` are taken as they are.
    pub fn person(text: &str) -> Actor {
        text.parse().unwrap_or_else(|_| Actor::user(text))
    }

    /// Steady itself: timeouts, recoveries, the executor.
    pub fn steady() -> Actor {
        Actor::Steady
    }

    /// The account name, when this is a person with an account.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Actor::User(name) => Some(name),
            Actor::Local(_) | Actor::Steady => None,
        }
    }

    /// The operator at the terminal.
    pub fn is_local(&self) -> bool {
        matches!(self, Actor::Local(_))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(name) => write!(f, "user:{name}"),
            Actor::Local(os_user) => write!(f, "local:{os_user}"),
            Actor::Steady => f.write_str("steady"),
        }
    }
}

impl FromStr for Actor {
    type Err = UnknownActor;

    /// Reads the stored text back; anything but the three forms is an error, never a guess.
    fn from_str(text: &str) -> Result<Actor, UnknownActor> {
        if text == "steady" {
            Ok(Actor::Steady)
        } else if let Some(name) = text.strip_prefix("user:") {
            Ok(Actor::user(name))
        } else if let Some(os_user) = text.strip_prefix("local:") {
            Ok(Actor::local(os_user))
        } else {
            Err(UnknownActor(text.to_owned()))
        }
    }
}

impl TryFrom<String> for Actor {
    type Error = UnknownActor;

    fn try_from(text: String) -> Result<Actor, UnknownActor> {
        text.parse()
    }
}

// As its text, so that audit event bodies, whose hashes are stored, read and write the same.
impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Actor, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_is_stored_as_the_text_it_always_was() {
        for (actor, text) in [
            (Actor::user("alice"), "user:alice"),
            (Actor::local("root"), "local:root"),
            (Actor::steady(), "steady"),
            (Actor::user("a:b"), "user:a:b"),
        ] {
            assert_eq!(actor.to_string(), text);
            assert_eq!(text.parse::<Actor>(), Ok(actor.clone()));
            assert_eq!(serde_json::to_value(&actor).ok(), Some(serde_json::json!(text)));
            assert_eq!(serde_json::from_value::<Actor>(text.into()).ok(), Some(actor));
        }
    }

    #[test]
    fn people_are_typed_without_their_prefix_but_storage_is_strict() {
        assert_eq!(Actor::person("alice"), Actor::user("alice"));
        assert_eq!(Actor::person("local:root"), Actor::local("root"));
        assert_eq!(Actor::person("steady"), Actor::steady());
        assert_eq!("alice".parse::<Actor>(), Err(UnknownActor("alice".into())));
        assert!(serde_json::from_value::<Actor>("robot:x".into()).is_err());
    }

    #[test]
    fn actors_sort_as_their_text_sorts() {
        let mut actors = [
            Actor::user("b"),
            Actor::steady(),
            Actor::user("a"),
            Actor::local("z"),
            Actor::local("a"),
        ];
        let mut texts: Vec<String> = actors.iter().map(Actor::to_string).collect();
        actors.sort();
        texts.sort();
        assert_eq!(actors.iter().map(Actor::to_string).collect::<Vec<_>>(), texts);
    }
}
