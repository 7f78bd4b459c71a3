//! Acting on a case: departments', dispatchers', residents' and sources' actions, a dispatcher's
//! split of a merged report, volunteers' answers — each a revision-checked transition.

use jiff::Timestamp;
use linkbus_wire::{
    self as wire, Action, Actor, ActorKind, CaseRecord, ReplayRequest, VolunteerAnswer, VolunteerAssignment,
    VolunteerStepReport,
};

use super::error::ActError;
use super::handle::CaseBook;
use crate::lifecycle::{self, Refused};

impl CaseBook {
    /// Applies an action by `actor` (see [`lifecycle::act`]; `Split` goes through [`lifecycle::split`]).
    pub async fn act(&self, case_id: &str, actor: &Actor, action: &Action) -> Result<CaseRecord, ActError> {
        if let Action::Split { report_id } = action {
            return self.split(case_id, report_id, actor).await;
        }
        let now = Timestamp::now();
        self.transact(case_id, |r| {
            if lifecycle::is_repeat(r, actor, action) {
                return Ok(None);
            }
            lifecycle::act(r, actor, action, now, &self.config.policy, &self.ladder).map(Some)
        })
        .await
    }

    /// Applies a replayed or simulated action at the time it happened (see [`lifecycle::replay()`]).
    pub async fn replay(&self, req: &ReplayRequest) -> Result<CaseRecord, ActError> {
        let now = Timestamp::now();
        self.transact(&req.case_id, |r| lifecycle::replay(r, req, now, &self.config.policy, &self.ladder).map(Some))
            .await
    }

    async fn split(&self, case_id: &str, report_id: &str, actor: &Actor) -> Result<CaseRecord, ActError> {
        if actor.kind != ActorKind::Dispatcher {
            return Err(Refused::Forbidden("only dispatchers split merged cases".into()).into());
        }
        let now = Timestamp::now();
        let report = self.load(report_id).await?.0.record;
        let primary = self
            .transact(case_id, |p| {
                let (p, _) = lifecycle::split(p, &report, actor, now, &self.config.policy)?;
                Ok(Some(p))
            })
            .await?;
        self.transact(report_id, |r| {
            if r.merged_into.is_none() {
                return Ok(None);
            }
            Ok(Some(lifecycle::split(&primary, r, actor, now, &self.config.policy)?.1))
        })
        .await?;
        Ok(primary)
    }

    /// A volunteer's answer to an offer; an accept gets where to go and the nearest facility.
    pub async fn answer(
        &self,
        volunteer_id: &str,
        answer: &VolunteerAnswer,
    ) -> Result<(CaseRecord, Option<VolunteerAssignment>), ActError> {
        let now = Timestamp::now();
        let record = self
            .transact(&answer.case_id, |r| {
                lifecycle::answer(r, volunteer_id, answer.accept, now, &self.config.policy, |already| {
                    self.next_volunteers(r, already, now)
                })
                .map(Some)
            })
            .await?;
        let assignment = answer.accept.then(|| VolunteerAssignment {
            location: record.case.location,
            address: record.case.address.clone(),
            facility: record.decision.facility.clone(),
        });
        Ok((record, assignment))
    }

    /// A step reported by the volunteer who took the case (see [`lifecycle::volunteer_step`]).
    pub async fn volunteer_step(
        &self,
        volunteer_id: &str,
        report: &VolunteerStepReport,
    ) -> Result<CaseRecord, ActError> {
        let now = Timestamp::now();
        self.transact(&report.case_id, |r| lifecycle::volunteer_step(r, volunteer_id, report.step, now).map(Some)).await
    }

    /// The next volunteers to offer `r` to, passing over those `already` offered it; none when
    /// its decision looked for no skill.
    pub(super) fn next_volunteers(
        &self,
        r: &CaseRecord,
        already: &[&str],
        now: Timestamp,
    ) -> Vec<wire::VolunteerChoice> {
        let Some(skill) = r.decision.volunteer_search.skill.as_deref() else { return vec![] };
        self.volunteers.next_volunteers(&r.case, skill, already, now)
    }
}
