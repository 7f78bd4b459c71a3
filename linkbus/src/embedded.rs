//! Who may use the embedded nats-server, and how `linkbus` finds it.
//!
//! `linkbus up` starts its own nats-server when no NATS URL is configured. It asks every client
//! for an NKey: at each start [`write_users`] writes `<data>/auth/authorization.conf` with the
//! users `linkbus nats-auth` makes for a deployment ([`crate::nats_auth`]: the service `linkbus`,
//! `source-<system>`, `dept-<id>` for each department of the region, `operator-ops`; no
//! volunteers) and one more, `local-tools`, for the `linkbus` subcommands run on this machine
//! (`watch`, `report`, `act`, `answer`, `replay`, `deadletter`, `geo publish|rerun`), which may
//! do anything: whoever can read its seed can read the server's files too. The seeds,
//! `<data>/auth/nkeys/<user>.nk`, are made once and kept (`0600`, in folders only their user may
//! enter), so a department given its seed keeps it across restarts.
//!
//! [`client_settings`] is how a subcommand connects: with no URL configured, to the server running
//! from `[nats] embedded_data_dir` (on whatever port it took) as `local-tools`; with a URL, as
//! configured, unless the URL is that running server's and no credentials are configured. With no
//! `embedded_data_dir`, each region's server has a folder of its own, `.linkbus/nats-<region id>`;
//! a subcommand takes the configured region's (`[region] dir`, `--region`) if it runs, else the
//! only one running ([`client_data_dir`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use linkbus_bus::server;
use linkbus_geo_data::Region;

use crate::config::{DEFAULT_DATA_PARENT, NatsConfig, default_data_dir};
use crate::nats_access::NatsAuth;
use crate::nats_auth::{self, AuthOptions, Role};

/// The user of the `linkbus` subcommands on the machine that runs the embedded server.
pub const LOCAL_TOOLS: &str = "local-tools";

/// The seed file of `user` under the data folder `data_dir`.
pub fn seed_file(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("auth").join("nkeys").join(format!("{user}.nk"))
}

/// Writes `<data_dir>/auth/authorization.conf` (the users and what each may do) and every missing
/// seed; returns the file, for the server's configuration to include.
pub fn write_users(data_dir: &Path, region: &Region) -> anyhow::Result<PathBuf> {
    let auth = data_dir.join("auth");
    let keys = auth.join("nkeys");
    for dir in [data_dir, &auth, &keys] {
        server::private_dir(dir)
            .with_context(|| format!("cannot make {} a folder only this user may enter", dir.display()))?;
    }
    let options = AuthOptions { out: auth.clone(), operators: vec!["ops".to_owned()], volunteers: false };
    let roles = nats_auth::roles(region, &options)?;
    let mut text = format!(
        "# Written by `linkbus up` at each start: the users of its embedded nats-server (public keys;\n\
         # the seeds are in nkeys/). Region {} version {}: {} users.\nauthorization {{\n  users = [\n",
        region.manifest.id,
        region.manifest.version,
        roles.len() + 1
    );
    for role in &roles {
        let (public_key, _) = nats_auth::user_key(&seed_file(data_dir, &role.user()))?;
        nats_auth::write_user(&mut text, role, &public_key);
    }
    let (public_key, _) = nats_auth::user_key(&seed_file(data_dir, LOCAL_TOOLS))?;
    let _ = writeln!(text, "    # {LOCAL_TOOLS}: the linkbus subcommands run on this machine; may do anything");
    let _ = writeln!(text, "    {{ nkey: \"{public_key}\" }}");
    text.push_str("  ]\n}\n");
    let conf = auth.join("authorization.conf");
    std::fs::write(&conf, text).with_context(|| format!("cannot write {}", conf.display()))?;
    Ok(conf)
}

/// How `linkbus up` connects to its embedded server running from `data_dir`: as the service
/// user, `[nats]`'s other settings kept.
pub fn service_settings(nats: &NatsConfig, data_dir: &Path) -> NatsConfig {
    NatsConfig {
        url: None,
        auth: NatsAuth {
            nkey_seed_file: Some(seed_file(data_dir, nats_auth::SERVICE_USER)),
            inbox_prefix: Some(Role::Service.inbox_prefix()),
            ..NatsAuth::default()
        },
        tls: Default::default(),
        ..nats.clone()
    }
}

/// The region id in `region_dir/manifest.toml`, read alone (loading a whole region takes seconds).
fn region_id(region_dir: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let text = std::fs::read_to_string(region_dir.join(linkbus_geo_data::files::MANIFEST)).ok()?;
    toml::from_str::<Id>(&text).ok().map(|m| m.id)
}

/// The default folders (`.linkbus/nats-*`) an embedded nats-server runs from now.
fn running_defaults() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(DEFAULT_DATA_PARENT) else { return Vec::new() };
    let mut running: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("nats-"))
        .map(|e| e.path())
        .filter(|dir| server::running_url(dir).is_some())
        .collect();
    running.sort();
    running
}

/// The data folder of the embedded server a subcommand connects to: `[nats] embedded_data_dir`;
/// without it, the folder of the region in `region_dir` if its server runs, else the only
/// default folder whose server runs, else the region's (to wait for).
pub fn client_data_dir(nats: &NatsConfig, region_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &nats.embedded_data_dir {
        return Ok(dir.clone());
    }
    let ours = region_id(region_dir).map(|id| default_data_dir(&id));
    if let Some(ours) = ours.as_ref().filter(|dir| server::running_url(dir).is_some()) {
        return Ok(ours.clone());
    }
    match running_defaults().as_slice() {
        [only] => Ok(only.clone()),
        [] => ours.with_context(|| {
            format!(
                "cannot read the region id from {}: name the region (--region NAME or [region] dir) or the \
                 data folder ([nats] embedded_data_dir)",
                region_dir.join(linkbus_geo_data::files::MANIFEST).display()
            )
        }),
        several => anyhow::bail!(
            "embedded nats-servers of several regions are running ({}) and none is the configured region's \
             ({}): say which with --region NAME",
            several.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            region_dir.display()
        ),
    }
}

/// Where a `linkbus` subcommand connects and with which settings: see the module's map. With no
/// URL configured, waits up to `patience` for the embedded server running from `data` (see
/// [`client_data_dir`]).
pub async fn client_settings(
    nats: &NatsConfig,
    data: &Path,
    patience: Duration,
) -> anyhow::Result<(String, NatsConfig)> {
    let seed = seed_file(data, LOCAL_TOOLS);
    let local = || NatsConfig {
        auth: NatsAuth { nkey_seed_file: Some(seed.clone()), ..NatsAuth::default() },
        tls: Default::default(),
        ..nats.clone()
    };
    if let Some(url) = &nats.url {
        let ours = nats.auth == NatsAuth::default()
            && seed.is_file()
            && server::running_url(data).is_some_and(|running| same_endpoint(&running, url));
        return Ok((url.clone(), if ours { local() } else { nats.clone() }));
    }
    let deadline = tokio::time::Instant::now() + patience;
    let url = loop {
        if let Some(url) = server::running_url(data) {
            break url;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no embedded nats-server is running from {} ([nats] embedded_data_dir, by default \
             .linkbus/nats-<region id>): start `linkbus up` with this configuration and region, or give the \
             NATS URL (--nats-url, LINKBUS_NATS_URL or [nats] url)",
            data.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    anyhow::ensure!(
        seed.is_file(),
        "the embedded nats-server at {url} asks for a key, and {} is missing or not readable by this user: \
         run this as the user that runs `linkbus up`",
        seed.display()
    );
    Ok((url, local()))
}

/// Whether two single-server URLs name the same loopback endpoint (`localhost` = `127.0.0.1`).
fn same_endpoint(a: &str, b: &str) -> bool {
    let endpoint = |url: &str| {
        let rest = url.trim().trim_start_matches("nats://").trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':')?;
        let host = if host == "localhost" { "127.0.0.1" } else { host };
        Some((host.to_owned(), port.parse::<u16>().ok()?))
    };
    !b.contains(',') && endpoint(a).is_some_and(|a| endpoint(b).is_some_and(|b| a == b && a.0 == "127.0.0.1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_running_servers_loopback_url_counts_as_ours() {
        assert!(same_endpoint("nats://127.0.0.1:4223", "nats://localhost:4223"));
        assert!(same_endpoint("nats://127.0.0.1:4223", "127.0.0.1:4223"));
        assert!(!same_endpoint("nats://127.0.0.1:4223", "nats://127.0.0.1:4222"));
        assert!(!same_endpoint("nats://127.0.0.1:4223", "nats://10.0.0.1:4223"));
        assert!(!same_endpoint("nats://127.0.0.1:4223", "nats://127.0.0.1:4223,nats://127.0.0.1:4224"));
    }

    #[test]
    fn seeds_are_private_and_kept_across_starts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("nats");
        let region = Region::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../geo-data/san-francisco")).expect("region");
        let conf = write_users(&data, &region).expect("users written");
        let text = std::fs::read_to_string(&conf).expect("read");
        assert!(text.contains("# linkbus\n") && text.contains("# dept-puc-sewer-ops\n"), "{text}");
        let seed = std::fs::read_to_string(seed_file(&data, LOCAL_TOOLS)).expect("seed");
        assert!(text.contains(LOCAL_TOOLS) && !text.contains(seed.trim()), "public keys only");
        write_users(&data, &region).expect("written again");
        assert_eq!(std::fs::read_to_string(seed_file(&data, LOCAL_TOOLS)).expect("seed"), seed, "kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(&data.join("auth/nkeys")), 0o700);
            assert_eq!(mode(&seed_file(&data, "linkbus")), 0o600);
        }
    }
}
