//! Who may sign in at the authorization server.

use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use crate::secret::Secret;
use crate::verify::BoxFuture;

/// A signed-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserIdentity {
    /// The stable subject (`sub`).
    pub subject: String,
    /// Identity claims put into access tokens (`email`, `name`, `preferred_username`, …).
    pub claims: Map<String, Value>,
}

/// Checks credentials typed into the login page.
pub trait LoginBackend: Send + Sync + 'static {
    /// The user for this user name and password, if they match.
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Option<UserIdentity>>;

    /// The user an auto-approving server signs in as.
    fn auto_login(&self) -> Option<UserIdentity>;
}

struct DevUser {
    username: String,
    password: Secret,
    identity: UserIdentity,
}

/// Development users from flags or a file. The default has one user, `dev` with password
/// `dev`.
pub struct DevUsers {
    users: Vec<DevUser>,
}

impl std::fmt::Debug for DevUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.users.iter().map(|u| &u.username))
            .finish()
    }
}

impl Default for DevUsers {
    fn default() -> Self {
        Self::new().user("dev", "dev")
    }
}

impl DevUsers {
    /// No users.
    pub fn new() -> Self {
        Self { users: Vec::new() }
    }

    /// Adds a user whose subject is its name, with `preferred_username`, `name` and an
    /// `email` of `<name>@example.com`.
    #[must_use]
    pub fn user(mut self, username: &str, password: &str) -> Self {
        let mut claims = Map::new();
        claims.insert("preferred_username".into(), username.into());
        claims.insert("name".into(), username.into());
        claims.insert("email".into(), format!("{username}@example.com").into());
        self.users.push(DevUser {
            username: username.to_owned(),
            password: Secret::from(password),
            identity: UserIdentity {
                subject: username.to_owned(),
                claims,
            },
        });
        self
    }

    /// The user names.
    pub fn usernames(&self) -> Vec<&str> {
        self.users.iter().map(|u| u.username.as_str()).collect()
    }
}

impl LoginBackend for DevUsers {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Option<UserIdentity>> {
        // Compare every user's password in constant time, so timing tells nothing.
        let mut found = None;
        for user in &self.users {
            let name_ok = user.username.as_bytes().ct_eq(username.as_bytes());
            let pass_ok = user.password.expose().ct_eq(password.as_bytes());
            if bool::from(name_ok & pass_ok) {
                found = Some(user.identity.clone());
            }
        }
        Box::pin(std::future::ready(found))
    }

    fn auto_login(&self) -> Option<UserIdentity> {
        self.users.first().map(|u| u.identity.clone())
    }
}
