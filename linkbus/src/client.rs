//! `linkbus report | act | answer`: what a source system, a department and a volunteer send, from
//! the command line, as any NATS client would (used by the scenario in `docs/scenario-119.md`);
//! and [`replay_action`], the replayed and simulated actions of `linkbus replay --outcomes real`
//! and the simulated feed.

use anyhow::Context as _;
use jiff::Timestamp;
use linkbus_bus::nats;
use linkbus_wire::subjects;
use linkbus_wire::{
    self as wire, Action, ActionReply, ActionRequest, CaseReport, CloudEvent, Contact, Datum, Location, ReplayRequest,
    SourceSystem, VolunteerAnswer,
};

/// A case to report.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// Event id (and case id).
    pub id: String,
    /// CloudEvents source, e.g. `/cad-119`.
    pub source: String,
    /// Kind of system.
    pub system: SourceSystem,
    /// Category.
    pub category: String,
    /// Priority 1–4.
    pub priority: u8,
    /// Where.
    pub location: Location,
    /// The datum of `location`.
    pub datum: Datum,
    /// Street address.
    pub address: Option<String>,
    /// What is happening.
    pub description: Option<String>,
    /// The source system's own id.
    pub source_id: String,
    /// Reporter's name and phone.
    pub reporter: Option<Contact>,
    /// Vulnerability flags.
    pub flags: Vec<String>,
}

/// Publishes a case report on `ingest.<system>.<category>` (JetStream, `Nats-Msg-Id` = id) and
/// returns whether JetStream stored it as new (false: a duplicate).
pub async fn report(client: &async_nats::Client, case: NewCase) -> anyhow::Result<bool> {
    let now = Timestamp::now();
    let data = CaseReport {
        system: case.system,
        category: case.category,
        priority: case.priority,
        location: case.location,
        address: case.address,
        reporter: case.reporter,
        description: case.description,
        source_id: case.source_id.clone(),
        reported_at: now,
        flags: case.flags,
        datum: case.datum,
        received_location: None,
        area: None,
        media_url: None,
    };
    data.validate()?;
    let event = CloudEvent::new(case.id, &case.source, wire::TYPE_CASE_REPORTED, Some(case.source_id), now, data);
    let js = async_nats::jetstream::new(client.clone());
    let subject = subjects::ingest(event.data.system, &event.data.category);
    let ack = nats::publish(&js, subject, &event.id, serde_json::to_vec(&event)?.into()).await?.await?;
    Ok(!ack.duplicate)
}

/// Sends a department's action on `action.<department>` and returns the reply.
pub async fn act(
    client: &async_nats::Client,
    department: &str,
    case_id: &str,
    action: Action,
) -> anyhow::Result<ActionReply> {
    let request = ActionRequest { case_id: case_id.to_owned(), action };
    let reply = client
        .request(subjects::action(department), serde_json::to_vec(&request)?.into())
        .await
        .context("no answer from linkbus (is `linkbus up` running?)")?;
    serde_json::from_slice(&reply.payload).context("not an action reply")
}

/// Sends a replayed or simulated action on `replay.action` and returns the reply. A refusal
/// because the case book has not opened the case yet, or because the action's time has not come
/// on the case book's clock, is retried every 20 ms until `patience` has passed: the replayer
/// learns of the routing as the case book does, not after it.
pub async fn replay_action(
    client: &async_nats::Client,
    request: &ReplayRequest,
    patience: std::time::Duration,
) -> anyhow::Result<ActionReply> {
    let body = bytes::Bytes::from(serde_json::to_vec(request)?);
    let give_up = tokio::time::Instant::now() + patience;
    loop {
        let reply = client
            .request(subjects::REPLAY_ACTION, body.clone())
            .await
            .context("no answer from linkbus (is `linkbus up` running?)")?;
        let reply: ActionReply = serde_json::from_slice(&reply.payload).context("not an action reply")?;
        let early = reply.error.as_deref().is_some_and(|e| e.starts_with("no case ") || e.starts_with("not yet"));
        if !early || tokio::time::Instant::now() >= give_up {
            return Ok(reply);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Sends a volunteer's answer on `volunteer.<id>.answer` and returns the reply.
pub async fn answer(
    client: &async_nats::Client,
    volunteer: &str,
    case_id: &str,
    accept: bool,
) -> anyhow::Result<ActionReply> {
    let answer = VolunteerAnswer { case_id: case_id.to_owned(), accept };
    let reply = client
        .request(subjects::volunteer_answer(volunteer), serde_json::to_vec(&answer)?.into())
        .await
        .context("no answer from linkbus (is `linkbus up` running?)")?;
    serde_json::from_slice(&reply.payload).context("not an action reply")
}
