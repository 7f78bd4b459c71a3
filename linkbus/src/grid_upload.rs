//! `linkbus grid-upload FILE`: a patrol app's batch (CSV, or JSON lines) posted to a running
//! linkbus's grid adapter (`POST /api/adapters/grid/batch`), as the app itself would; prints what
//! became of each row.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use linkbus_adapters::grid::{BATCH_PATH, BatchResult, Outcome};

/// Uploads `file` to the API at `api` (e.g. `http://127.0.0.1:8080`) with the source `key`;
/// the result, once printed. The media type follows the file's extension: `.csv` is CSV,
/// `.jsonl` / `.ndjson` JSON lines.
pub async fn upload(api: &str, key: &str, file: &Path) -> anyhow::Result<BatchResult> {
    let media_type = match file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => "text/csv",
        Some("jsonl" | "ndjson") => "application/x-ndjson",
        _ => anyhow::bail!("{}: name a .csv, .jsonl or .ndjson file", file.display()),
    };
    let body = tokio::fs::read(file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let url = format!("{}{BATCH_PATH}", api.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let response = client
        .post(&url)
        .bearer_auth(key)
        .header("content-type", media_type)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.with_context(|| format!("reading the answer of {url}"))?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {text}");
    let result: BatchResult = serde_json::from_str(&text).with_context(|| format!("{url} answered {text}"))?;
    for row in &result.rows {
        if let Outcome::Refused { row, error } = row {
            eprintln!("row {row}: {error}");
        }
    }
    eprintln!("{} rows taken ({} already known), {} refused", result.accepted, result.duplicates, result.rejected);
    Ok(result)
}
