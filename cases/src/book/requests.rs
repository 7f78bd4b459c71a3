//! The request loops: departments' actions on `action.<department>`, volunteers' answers on
//! `volunteer.<id>.answer` (and the steps of the volunteer who took a case) and replayed actions on
//! `replay.action`, each answered with an [`ActionReply`]; what is not a request of the
//! right shape is dead-lettered and the sender told why.

use std::sync::Arc;

use futures::StreamExt;
use linkbus_bus::nats::{self, DeadLetter};
use linkbus_wire::subjects;
use linkbus_wire::{
    ActionReply, ActionRequest, Actor, ActorKind, CaseRecord, ReplayRequest, VolunteerAnswer, VolunteerAssignment,
    VolunteerStepReport,
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::error::{ActError, store_err};
use super::handle::CaseBook;

/// The requests the case book answers over NATS.
#[derive(Debug, Clone, Copy)]
pub(super) enum Requests {
    /// Departments' actions on `action.<department>`.
    Actions,
    /// Volunteers' answers on `volunteer.<id>.answer`.
    Answers,
    /// Replayed and simulated actions on `replay.action` (only the service's user may send them).
    Replays,
}

impl CaseBook {
    /// Answers `requests` until `shutdown`, in the queue group every replica shares.
    pub(super) async fn serve(
        self: Arc<Self>,
        requests: Requests,
        shutdown: CancellationToken,
    ) -> Result<(), ActError> {
        let client = self.js.client();
        let subject = match requests {
            Requests::Actions => subjects::action("*"),
            Requests::Answers => subjects::volunteer_answer("*"),
            Requests::Replays => subjects::REPLAY_ACTION.to_owned(),
        };
        let mut incoming = client.queue_subscribe(subject, "linkbus-cases".into()).await.map_err(store_err)?;
        while let Some(msg) = tokio::select! { _ = shutdown.cancelled() => None, m = incoming.next() => m } {
            // The department's or the volunteer's id (`action` for a replay: the actor is inside).
            let Some(id) = msg.subject.split('.').nth(1).map(str::to_owned) else { continue };
            let reply = match requests {
                Requests::Actions => self.action(id, &msg).await,
                Requests::Answers => self.volunteer_answer(id, &msg).await,
                Requests::Replays => self.replayed(&msg).await,
            };
            respond(&client, &msg, &reply).await;
        }
        Ok(())
    }

    /// A department's action request on `action.<department>`.
    async fn action(&self, department: String, msg: &async_nats::Message) -> ActionReply {
        let actor = Actor { kind: ActorKind::Department, id: department };
        match serde_json::from_slice::<ActionRequest>(&msg.payload) {
            Ok(req) => match self.act(&req.case_id, &actor, &req.action).await {
                Ok(r) => done(r, None),
                Err(e) => self.refusal(&req.case_id, e),
            },
            Err(e) => self.malformed("action", msg, &format!("not an action request: {e}")).await,
        }
    }

    /// A replayed or simulated action on `replay.action`.
    async fn replayed(&self, msg: &async_nats::Message) -> ActionReply {
        match serde_json::from_slice::<ReplayRequest>(&msg.payload) {
            Ok(req) => match self.replay(&req).await {
                Ok(r) => done(r, None),
                Err(e) => self.refusal(&req.case_id, e),
            },
            Err(e) => self.malformed("replay", msg, &format!("not a replay request: {e}")).await,
        }
    }

    /// A volunteer's answer on `volunteer.<id>.answer`, or a step of the volunteer who took the
    /// case (the two shapes share no field: `accept` or `step`).
    async fn volunteer_answer(&self, volunteer: String, msg: &async_nats::Message) -> ActionReply {
        match serde_json::from_slice::<VolunteerAnswer>(&msg.payload) {
            Ok(answer) => match self.answer(&volunteer, &answer).await {
                Ok((r, assignment)) => done(r, assignment),
                Err(e) => self.refusal(&answer.case_id, e),
            },
            Err(e) => match serde_json::from_slice::<VolunteerStepReport>(&msg.payload) {
                Ok(report) => match self.volunteer_step(&volunteer, &report).await {
                    Ok(r) => done(r, None),
                    Err(e) => self.refusal(&report.case_id, e),
                },
                Err(_) => self.malformed("answer", msg, &format!("not a volunteer answer: {e}")).await,
            },
        }
    }

    /// A request that is not what its subject takes: kept on `deadletter.<stage>`, and the
    /// sender told why.
    async fn malformed(&self, stage: &str, msg: &async_nats::Message, reason: &str) -> ActionReply {
        self.dead_letter(stage, msg, reason).await;
        ActionReply { ok: false, case_id: String::new(), state: None, error: Some(reason.to_owned()), assignment: None }
    }

    fn refusal(&self, case_id: &str, e: ActError) -> ActionReply {
        ActionReply {
            ok: false,
            case_id: case_id.to_owned(),
            state: self.get(case_id).map(|r| r.state),
            error: Some(e.to_string()),
            assignment: None,
        }
    }

    async fn dead_letter(&self, stage: &str, msg: &async_nats::Message, reason: &str) {
        let msg_id = format!("{stage}:{}", stable_id(&msg.payload, &msg.subject));
        let letter = DeadLetter {
            stage,
            reason,
            code: "malformed",
            original_subject: &msg.subject,
            original_msg_id: None,
            msg_id: &msg_id,
            payload: msg.payload.clone(),
        };
        if let Ok(ack) = nats::publish_deadletter(&self.js, letter).await
            && ack.await.is_ok()
        {
            match stage {
                "action" => self.metrics.deadletter_action.inc("malformed"),
                "answer" => self.metrics.deadletter_answer.inc("malformed"),
                "replay" => self.metrics.deadletter_replay.inc("malformed"),
                _ => {}
            }
        }
    }
}

/// The reply to a request that was done.
fn done(r: CaseRecord, assignment: Option<VolunteerAssignment>) -> ActionReply {
    ActionReply { ok: true, case_id: r.case_id, state: Some(r.state), error: None, assignment }
}

async fn respond(client: &async_nats::Client, msg: &async_nats::Message, reply: &ActionReply) {
    let Some(to) = msg.reply.clone() else { return };
    let body = serde_json::to_vec(reply).expect("wire types always serialise");
    if let Err(e) = client.publish(to, body.into()).await {
        warn!(error = %e, "could not reply");
    }
}

/// A stable id for a refused request: a hash of its subject and bytes.
fn stable_id(payload: &[u8], subject: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (subject, payload).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
