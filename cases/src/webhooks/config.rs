//! One department's webhook as configured (`[[webhooks]]`), checked, with its secret resolved.

use std::fmt;
use std::time::Duration;

use linkbus_wire::is_token;
use serde::{Deserialize, Deserializer};

/// One department's webhook: an entry of `[[webhooks]]` in the configuration file.
///
/// ```toml
/// [[webhooks]]
/// department = "puc-sewer-ops"
/// url = "https://sewer.example.org/linkbus"
/// secret_env = "LINKBUS_WEBHOOK_SECRET_PUC_SEWER_OPS"
/// timeout_ms = 10000
/// max_attempts = 12
/// backoff_ms = [1000, 5000, 30000, 120000, 600000, 1800000, 3600000]
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The department id (as in the region's `departments.json`): its cases, on
    /// `routed.dept.<department>.>`, are delivered.
    pub department: String,
    /// Where to POST, `http://` or `https://` (https in production: the body holds the
    /// reporter's contact).
    pub url: String,
    /// The shared secret that signs each request. Leave empty and set `secret_env` to keep it out
    /// of the file.
    #[serde(default)]
    pub secret: String,
    /// Name of an environment variable holding the secret, read when the webhook starts; used
    /// when `secret` is empty (setting both is refused).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long to wait for the receiver's answer, from connecting to the end of the response
    /// headers (`timeout_ms` in the file, milliseconds).
    #[serde(default = "default_timeout", rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
    /// Attempts before a message is given up and dead-lettered, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i64,
    /// Delay after the n-th failed attempt before the next; the last repeats
    /// (`backoff_ms` in the file, milliseconds).
    #[serde(default = "default_backoff", rename = "backoff_ms", deserialize_with = "millis_list")]
    pub backoff: Vec<Duration>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_attempts() -> i64 {
    12
}

fn default_backoff() -> Vec<Duration> {
    [1, 5, 30, 120, 600, 1800, 3600].into_iter().map(Duration::from_secs).collect()
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

fn millis_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<u64>::deserialize(d).map(|v| v.into_iter().map(Duration::from_millis).collect())
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("department", &self.department)
            .field("url", &self.url)
            .field("secret", &if self.secret.is_empty() { "" } else { "<redacted>" })
            .field("secret_env", &self.secret_env)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl WebhookConfig {
    /// A webhook with the default timeout, attempts and backoff.
    pub fn new(department: &str, url: &str, secret: &str) -> Self {
        Self {
            department: department.to_owned(),
            url: url.to_owned(),
            secret: secret.to_owned(),
            secret_env: None,
            timeout: default_timeout(),
            max_attempts: default_max_attempts(),
            backoff: default_backoff(),
        }
    }

    /// Checks the department id, the URL, the secret (reading `secret_env` if named) and the
    /// retry settings; the error says which and why.
    pub fn validate(&self) -> Result<(), String> {
        if !is_token(&self.department, 64, b"-_") {
            return Err(format!("department {:?} must be 1-64 ASCII letters, digits, '-' or '_'", self.department));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("url {:?}: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!("url {:?} must be http:// or https:// with a host", self.url));
        }
        self.signing_secret()?;
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err("timeout_ms must be 1 ms to 5 minutes".into());
        }
        if self.max_attempts < 1 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.backoff.is_empty() || self.backoff.iter().any(|d| d.is_zero() || *d > Duration::from_secs(86_400)) {
            return Err("backoff_ms must list at least one delay, each 1 ms to 1 day".into());
        }
        Ok(())
    }

    /// The secret: `secret`, or the value of the environment variable `secret_env` names.
    pub fn signing_secret(&self) -> Result<String, String> {
        resolve_secret(&self.secret, self.secret_env.as_deref())
    }

    /// `webhook-<department>`: the durable consumer.
    pub fn durable(&self) -> String {
        format!("webhook-{}", self.department)
    }

    /// The delay after failed attempt number `attempt` (from 1): its backoff entry, the last
    /// one repeating.
    pub fn delay_after(&self, attempt: i64) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
        self.backoff.get(index).or(self.backoff.last()).copied().unwrap_or(Duration::from_secs(1))
    }
}

/// A shared secret given in the configuration either as `secret` or as the name of the
/// environment variable holding it (`secret_env`), not both.
pub fn resolve_secret(secret: &str, secret_env: Option<&str>) -> Result<String, String> {
    match (secret.is_empty(), secret_env) {
        (false, None) => Ok(secret.to_owned()),
        (false, Some(_)) => Err("set secret or secret_env, not both".into()),
        (true, None) => Err("secret (or secret_env) is required".into()),
        (true, Some(var)) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(value),
            _ => Err(format!("secret_env names {var:?}, which is not set or empty")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_with_defaults_and_validates() {
        let config: WebhookConfig =
            toml::from_str("department = \"puc-sewer-ops\"\nurl = \"https://example.org/hook\"\nsecret = \"k\"\n")
                .expect("parses");
        assert_eq!(config, WebhookConfig::new("puc-sewer-ops", "https://example.org/hook", "k"));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.durable(), "webhook-puc-sewer-ops");
        assert_eq!(config.delay_after(1), Duration::from_secs(1));
        assert_eq!(config.delay_after(7), Duration::from_secs(3600));
        assert_eq!(config.delay_after(50), Duration::from_secs(3600));
        assert!(!format!("{config:?}").contains("\"k\""), "the secret is not printed");

        let tuned: WebhookConfig = toml::from_str(
            "department = \"d\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"k\"\ntimeout_ms = 1500\nmax_attempts = 3\nbackoff_ms = [200, 400]\n",
        )
        .expect("parses");
        assert_eq!(tuned.timeout, Duration::from_millis(1500));
        assert_eq!(tuned.backoff, vec![Duration::from_millis(200), Duration::from_millis(400)]);
        assert!(
            toml::from_str::<WebhookConfig>("department = \"d\"\nurl = \"http://x\"\nsecret = \"k\"\nretries = 3\n")
                .is_err()
        );

        let bad = |f: &dyn Fn(&mut WebhookConfig)| {
            let mut c = config.clone();
            f(&mut c);
            c.validate().expect_err("refused")
        };
        assert!(bad(&|c| c.department = "a.b".into()).contains("department"));
        assert!(bad(&|c| c.url = "ftp://example.org".into()).contains("url"));
        assert!(bad(&|c| c.url = "not a url".into()).contains("url"));
        assert!(bad(&|c| c.secret = String::new()).contains("secret"));
        assert!(bad(&|c| c.secret_env = Some("X".into())).contains("not both"));
        assert!(bad(&|c| c.max_attempts = 0).contains("max_attempts"));
        assert!(bad(&|c| c.backoff.clear()).contains("backoff"));
        assert!(bad(&|c| c.timeout = Duration::ZERO).contains("timeout"));
    }

    #[test]
    fn secret_can_come_from_the_environment() {
        let mut config = WebhookConfig::new("d", "https://example.org", "");
        config.secret_env = Some("LINKBUS_TEST_WEBHOOK_SECRET_UNSET_7F3A".into());
        assert!(config.validate().expect_err("unset").contains("not set"));
        config.secret_env = Some("PATH".into()); // always set: stands in for a real secret variable
        assert_eq!(config.signing_secret(), std::env::var("PATH").map_err(|e| e.to_string()));
    }
}
