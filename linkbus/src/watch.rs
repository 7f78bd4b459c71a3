//! `linkbus watch`: a plain NATS subscriber that prints one line per routed case (or the raw
//! message for other subjects) — what a department's own client would see.

use futures::StreamExt;
use linkbus_wire::{CloudEvent, RoutedCase};

/// Subscribes to `subjects` and prints until ctrl-c or `limit` messages.
pub async fn watch(client: &async_nats::Client, subjects: &[String], limit: Option<usize>) -> anyhow::Result<()> {
    let mut subs = Vec::new();
    for s in subjects {
        subs.push(client.subscribe(s.clone()).await?);
    }
    // Said once the server has the subscriptions, so a script can publish after this line.
    client.flush().await?;
    eprintln!("watching {}", subjects.join(" "));
    let mut all = futures::stream::select_all(subs);
    let mut seen = 0;
    loop {
        let msg = tokio::select! {
            msg = all.next() => match msg { Some(m) => m, None => break },
            _ = tokio::signal::ctrl_c() => break,
        };
        println!("{}", describe(&msg));
        seen += 1;
        if limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(())
}

/// One line for a message: a routed case summarised, anything else as subject and payload.
pub fn describe(msg: &async_nats::Message) -> String {
    match serde_json::from_slice::<CloudEvent<RoutedCase>>(&msg.payload) {
        Ok(ev) => {
            let r = &ev.data;
            let community = r.decision.community.community.as_ref().map_or("-", |c| c.name.as_str());
            let departments: Vec<&str> = r.decision.departments.iter().map(|d| d.id.as_str()).collect();
            let volunteers: Vec<String> =
                r.decision.volunteers.iter().map(|v| format!("{}@{:.0}m", v.id, v.distance_m)).collect();
            format!(
                "{subject}  case {id}  {category}  p{priority}  community: {community} ({outcome:?})  departments: {departments}  volunteers: {volunteers}",
                subject = msg.subject,
                id = r.case_id,
                category = r.case.category,
                priority = r.case.priority,
                outcome = r.decision.community.outcome,
                departments = departments.join(","),
                volunteers = if volunteers.is_empty() { "-".to_owned() } else { volunteers.join(",") },
            )
        }
        Err(_) => format!("{}  {}", msg.subject, String::from_utf8_lossy(&msg.payload)),
    }
}
