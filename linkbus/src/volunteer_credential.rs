//! `linkbus volunteer-credential --id V [--revoke]`: issues (or revokes) a volunteer's credential
//! for the volunteers' app through a running linkbus's API
//! (`POST`/`DELETE /api/volunteers/{id}/credential`), with a dispatcher's or operator's key.

use std::time::Duration;

use anyhow::Context as _;
use linkbus_http::volunteer::Issued;

/// Issues volunteer `id` a credential at the API `api` (e.g. `http://127.0.0.1:8080`) with `key`,
/// or revokes its credential (`None`).
pub async fn run(api: &str, key: &str, id: &str, revoke: bool) -> anyhow::Result<Option<Issued>> {
    let url = format!("{}/api/volunteers/{id}/credential", api.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let request = if revoke { client.delete(&url) } else { client.post(&url) };
    let response = request.bearer_auth(key).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.with_context(|| format!("reading the answer of {url}"))?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {text}");
    if revoke {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("{url} answered {text}"))?))
}
