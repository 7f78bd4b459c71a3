//! The authorization `linkbus nats-auth` generates, on a real nats-server: the service runs under
//! its user, and each other role (source system, department, volunteer, operator) does what it
//! should and is refused what it should not. A refusal is observed as the server's permissions
//! violation (an `Event::ServerError` on the client), and a refused JetStream publish gets no ack.
//! TLS: with the client's certificate verified by the server and the server's by the client.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use linkbus::config::{Config, NatsConfig};
use linkbus::nats_access::{self, NatsAuth, NatsTls};
use linkbus::nats_auth::{self, AuthOptions, Role};
use linkbus::service::{self, Service};
use linkbus_bus::nats::{BUCKET_VOLUNTEERS, OBJECTS_SNAPSHOTS, STREAM_ROUTED};
use linkbus_routers::volunteer_snapshot::SNAPSHOT_OBJECT;
use linkbus_tests::nats_process::{NatsProcess, free_port};
use linkbus_tests::{WAIT, case, sf_region, sf_region_dir, wait_for_case};
use linkbus_wire::{self as wire, SourceSystem};
use tokio::sync::mpsc;

const MISSION: (f64, f64) = (-122.4194, 37.7599);
/// Department that sewer cases at MISSION go to.
const SEWER: &str = "puc-sewer-ops";
/// How long a test client waits for a reply or an ack; a refused one never comes.
const REPLY_WAIT: Duration = Duration::from_secs(2);

/// A client connected as one generated user, with the server errors it is sent.
struct Party {
    client: async_nats::Client,
    js: jetstream::Context,
    errors: mpsc::UnboundedReceiver<String>,
    user: String,
}

impl Party {
    async fn connect(url: &str, dir: &std::path::Path, role: &Role) -> Self {
        let auth = auth_for(dir, role);
        let (tx, errors) = mpsc::unbounded_channel();
        let options = nats_access::connect_options(&auth, &NatsTls::default())
            .await
            .expect("options")
            .request_timeout(Some(REPLY_WAIT))
            .event_callback(move |event| {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
                std::future::ready(())
            });
        let client = options.connect(url).await.unwrap_or_else(|e| panic!("{} connects: {e}", role.user()));
        let js = jetstream::new(client.clone());
        Self { client, js, errors, user: role.user() }
    }

    /// Waits (bounded) for the server to report that `what` ("publish to" or "subscription to")
    /// `subject` was refused.
    async fn refused(&mut self, what: &str, subject: &str) {
        let expected = format!("permissions violation for {what} \"{subject}\"");
        let found = tokio::time::timeout(WAIT, async {
            while let Some(error) = self.errors.recv().await {
                if error.to_lowercase().contains(&expected.to_lowercase()) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "{}: no refusal of {what} {subject}", self.user);
    }

    /// Everything the server reported so far (a role doing only what it may gets nothing).
    fn errors_so_far(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.errors.try_recv().ok()).collect()
    }
}

fn auth_for(dir: &std::path::Path, role: &Role) -> NatsAuth {
    NatsAuth {
        nkey_seed_file: Some(dir.join("nkeys").join(format!("{}.nk", role.user()))),
        inbox_prefix: Some(role.inbox_prefix()),
        ..Default::default()
    }
}

fn linkbus_command() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_its_part_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let region = sf_region();
    let auth_dir = dir.path().join("auth");
    // The command line, as an operator runs it (its unit tests cover the library call).
    let status = linkbus_command()
        .args(["nats-auth", "--operator", "noc", "--out"])
        .arg(&auth_dir)
        .arg("--region")
        .arg(sf_region_dir())
        .env_remove("LINKBUS_CONFIG")
        .status()
        .expect("linkbus nats-auth runs");
    assert!(status.success());
    let roles = nats_auth::roles(&region, &AuthOptions { out: auth_dir.clone(), operators: vec![], volunteers: true })
        .expect("roles");
    assert!(roles.len() > 1000, "a user per roster volunteer");

    let port = free_port();
    let conf = dir.path().join("nats-server.conf");
    std::fs::write(
        &conf,
        format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: {:?} }}\ninclude \"auth/authorization.conf\"\n",
            dir.path().join("js").display().to_string()
        ),
    )
    .expect("server config");
    let server = NatsProcess::start(&conf, port, &[], &dir.path().join("nats-server.log")).await;
    let url = server.url();

    // No credentials, or a key the server does not know: not in at all.
    let anonymous = async_nats::connect(&url).await.expect_err("anonymous refused");
    assert_eq!(anonymous.kind(), async_nats::ConnectErrorKind::AuthorizationViolation);
    let stranger = dir.path().join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed().expect("seed")).expect("write");
    let mut config = Config { storage: linkbus_tests::test_storage(), ..Default::default() };
    config.nats.url = Some(url.clone());
    config.nats.auth.nkey_seed_file = Some(stranger);
    let err = service::connect_configured(&url, &config.nats, WAIT, None).await.expect_err("unknown key refused");
    assert!(format!("{err:#}").contains("refused the credentials"), "{err:#}");

    // The service, under its own user, as `linkbus up` would connect; the test's cases (`perm-…`
    // from `/tests`) are no system's ids: accepted (trust_ids:: tests the claims).
    config.region.dir = sf_region_dir();
    config.ingest.unclaimed = linkbus_wire::claims::Unclaimed::Accept;
    config.nats.auth = auth_for(&auth_dir, &Role::Service);
    config.router.volunteer_snapshot_secs = 1;
    let client = service::connect_configured(&url, &config.nats, WAIT, None).await.expect("the service connects");
    let service = Service::start(&config, &region, client, "/linkbus/perm".into()).await.expect("service starts");

    let mut operator = Party::connect(&url, &auth_dir, &Role::Operator("noc".into())).await;
    let mut timeline = operator.client.subscribe("case.>").await.expect("operator follows the timeline");
    let mut sewer = Party::connect(&url, &auth_dir, &Role::Department(SEWER.into())).await;
    let mut routed_here = sewer.client.subscribe(format!("routed.dept.{SEWER}.>")).await.expect("own routed");
    operator.client.flush().await.expect("flush");
    sewer.client.flush().await.expect("flush");

    // A source system reports on its own ingest subjects, and only there.
    let mut public = Party::connect(&url, &auth_dir, &Role::Source(SourceSystem::PublicService)).await;
    let report = case("perm-sewer", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    let ack =
        linkbus_bus::nats::publish(&public.js, "ingest.public_service.sewer_issues".into(), &report.id, json(&report))
            .await
            .expect("publish")
            .await;
    assert!(ack.is_ok(), "own ingest subject: stored ({ack:?})");
    let foreign = case("perm-forged", SourceSystem::Emergency, "fire", MISSION.0, MISSION.1);
    let ack = linkbus_bus::nats::publish(&public.js, "ingest.emergency.fire".into(), &foreign.id, json(&foreign))
        .await
        .expect("publish")
        .await;
    assert!(ack.is_err(), "another system's ingest subject: no ack");
    public.refused("publish to", "ingest.emergency.fire").await;
    public.client.publish("routed.dept.puc-sewer-ops.sewer_issues", "forged".into()).await.expect("sent");
    public.refused("publish to", "routed.dept.puc-sewer-ops.sewer_issues").await;
    let _denied = public.client.subscribe("routed.>").await.expect("sent");
    public.refused("subscription to", "routed.>").await;

    // The department gets its case (plain subscription and its durable consumer) and acts on it.
    let msg = tokio::time::timeout(WAIT, routed_here.next()).await.expect("routed in time").expect("a message");
    assert!(msg.subject.starts_with(&format!("routed.dept.{SEWER}.")));
    let consumer: jetstream::consumer::PullConsumer = sewer
        .js
        .get_stream(STREAM_ROUTED)
        .await
        .expect("stream info")
        .get_consumer(&format!("dept-{SEWER}"))
        .await
        .expect("own durable");
    let mut batch = consumer.fetch().max_messages(10).expires(Duration::from_secs(1)).messages().await.expect("fetch");
    let pulled = tokio::time::timeout(WAIT, batch.next()).await.expect("in time").expect("one").expect("ok");
    pulled.ack().await.expect("acked");
    let reply = linkbus_tests::department_action(&sewer.client, SEWER, "perm-sewer", wire::Action::Accept {}).await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(sewer.errors_so_far(), Vec::<String>::new(), "the department did only what it may");
    let other = region.departments.departments.iter().map(|d| d.id.as_str()).find(|id| *id != SEWER).expect("two");
    let taken = sewer.client.request(format!("action.{other}"), "{}".into()).await;
    assert!(taken.is_err(), "no acting for another department");
    sewer.refused("publish to", &format!("action.{other}")).await;
    // Nor dating its own actions back: replayed actions are the service's alone.
    let backdated = sewer.client.request(wire::subjects::REPLAY_ACTION, "{}".into()).await;
    assert!(backdated.is_err(), "no replayed actions from a department");
    sewer.refused("publish to", wire::subjects::REPLAY_ACTION).await;
    let steal = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM_ROUTED}.dept-{other}");
    sewer.client.publish(steal.clone(), "1".into()).await.expect("sent");
    sewer.refused("publish to", &steal).await;
    let _denied = sewer.client.subscribe(format!("routed.dept.{other}.>")).await.expect("sent");
    sewer.refused("subscription to", &format!("routed.dept.{other}.>")).await;

    // Volunteers: a cardiac arrest is offered to the five nearest.
    let mut emergency = Party::connect(&url, &auth_dir, &Role::Source(SourceSystem::Emergency)).await;
    let cpr = case("perm-cpr", SourceSystem::Emergency, "cardiac_arrest", MISSION.0, MISSION.1);
    let ack = linkbus_bus::nats::publish(&emergency.js, "ingest.emergency.cardiac_arrest".into(), &cpr.id, json(&cpr))
        .await
        .expect("publish")
        .await;
    assert!(ack.is_ok(), "{ack:?}");
    assert_eq!(emergency.errors_so_far(), Vec::<String>::new());
    let offered = wait_for_case(&service, "perm-cpr", "offers", |r| r.offers.len() >= 2).await;
    let (first, second) = (offered.offers[0].volunteer_id.clone(), offered.offers[1].volunteer_id.clone());
    let mut waiting = Party::connect(&url, &auth_dir, &Role::Volunteer(first.clone())).await;
    let mut closed = waiting.client.subscribe(format!("volunteer.{first}.offer_closed")).await.expect("own offers");
    waiting.client.flush().await.expect("flush");
    let mut taker = Party::connect(&url, &auth_dir, &Role::Volunteer(second.clone())).await;
    let reply = linkbus_tests::volunteer_answer(&taker.client, &second, "perm-cpr", true).await;
    assert!(reply.ok, "{reply:?}");
    let notice = tokio::time::timeout(WAIT, closed.next()).await.expect("closed in time").expect("notice");
    assert_eq!(notice.subject.as_str(), format!("volunteer.{first}.offer_closed"));
    assert_eq!(waiting.errors_so_far(), Vec::<String>::new(), "the volunteer did only what it may");
    // Their own live state: read and written back; another's: neither.
    let store = taker.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("bucket info");
    let own = store.get(&second).await.expect("read own").expect("own entry");
    store.put(&second, own).await.expect("own key put");
    assert_eq!(taker.errors_so_far(), Vec::<String>::new(), "the volunteer did only what it may");
    let put = store.put(&first, "{}".into()).await;
    assert!(put.is_err(), "another volunteer's key: no ack");
    taker.refused("publish to", &format!("$KV.{BUCKET_VOLUNTEERS}.{first}")).await;
    let answer = taker.client.request(format!("volunteer.{first}.answer"), "{}".into()).await;
    assert!(answer.is_err(), "no answering for another volunteer");
    taker.refused("publish to", &format!("volunteer.{first}.answer")).await;
    let _denied = taker.client.subscribe(format!("volunteer.{first}.offer")).await.expect("sent");
    taker.refused("subscription to", &format!("volunteer.{first}.offer")).await;
    // Nor write the routers' snapshot of everyone's.
    taker.client.publish(format!("$O.{OBJECTS_SNAPSHOTS}.C.forged"), "{}".into()).await.expect("sent");
    taker.refused("publish to", &format!("$O.{OBJECTS_SNAPSHOTS}.C.forged")).await;

    // The operator saw it all happen and may look at the streams, but change nothing.
    let event = tokio::time::timeout(WAIT, timeline.next()).await.expect("timeline in time").expect("event");
    assert!(event.subject.starts_with("case."), "{}", event.subject);
    let info = operator.js.get_stream(STREAM_ROUTED).await.expect("stream info");
    assert!(info.cached_info().state.messages >= 1);
    assert_eq!(operator.errors_so_far(), Vec::<String>::new(), "the operator did only what it may");
    operator.client.publish("ingest.emergency.fire", "forged".into()).await.expect("sent");
    operator.refused("publish to", "ingest.emergency.fire").await;
    let create = operator
        .js
        .create_consumer_on_stream(
            jetstream::consumer::pull::Config { durable_name: Some("noc".into()), ..Default::default() },
            STREAM_ROUTED,
        )
        .await;
    assert!(create.is_err(), "no consumer made by an operator");
    operator.refused("publish to", &format!("$JS.API.CONSUMER.CREATE.{STREAM_ROUTED}.noc")).await;
    let _denied = operator.client.subscribe("action.*").await.expect("sent");
    operator.refused("subscription to", "action.*").await;
    drop(emergency);

    // The service never strayed either: every case it saw was routed.
    let r = wait_for_case(&service, "perm-sewer", "accepted", |r| r.accepted_by.is_some()).await;
    assert_eq!(r.accepted_by.as_deref(), Some(SEWER));
    // And saved its volunteer snapshot under its own user.
    let own = Party::connect(&url, &auth_dir, &Role::Service).await;
    let objects = own.js.get_object_store(OBJECTS_SNAPSHOTS).await.expect("the snapshot store");
    let deadline = tokio::time::Instant::now() + WAIT;
    while objects.info(SNAPSHOT_OBJECT).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the service saved no volunteer snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.stop().await;
    drop(server);
}

fn json(event: &wire::CloudEvent<wire::CaseReport>) -> bytes::Bytes {
    serde_json::to_vec(event).expect("json").into()
}

fn with_tls(tls: NatsTls) -> NatsConfig {
    NatsConfig { tls, ..NatsConfig::default() }
}

/// Runs `openssl` in `dir` (certificates for the TLS test; Debian's `openssl` package).
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A certificate signed by the test CA, for `name` with the given extensions.
fn signed(dir: &std::path::Path, name: &str, extensions: &str) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let (key, csr, pem, ext) =
        (format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    std::fs::write(dir.join(&ext), extensions).expect("extensions");
    openssl(dir, &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]].concat());
    openssl(
        dir,
        &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "1"]
            .into_iter()
            .chain(["-out", &pem, "-extfile", &ext])
            .collect::<Vec<_>>(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_is_required_and_verified() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = ["-x509", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1", "-subj", "/CN=linkbus test CA"];
    openssl(d, &[&["req"][..], &ec, &ca].concat());
    signed(d, "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    signed(d, "client", "extendedKeyUsage=clientAuth\n");

    let port = free_port();
    let conf = d.join("nats-server.conf");
    let tls = |f: &str| format!("{:?}", d.join(f).display().to_string());
    let text = format!(
        "host: 127.0.0.1\nport: {port}\ntls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: true\n}}\n",
        tls("server.pem"),
        tls("server-key.pem"),
        tls("ca.pem")
    );
    std::fs::write(&conf, text).expect("server config");
    let server = NatsProcess::start(&conf, port, &[], &d.join("nats-server.log")).await;
    let url = server.url();

    // Everything configured: in, and working.
    let nats = with_tls(NatsTls {
        ca_file: Some(d.join("ca.pem")),
        cert_file: Some(d.join("client.pem")),
        key_file: Some(d.join("client-key.pem")),
        required: true,
    });
    let client = service::connect_configured(&url, &nats, WAIT, None).await.expect("a TLS client with its certificate");
    let mut sub = client.subscribe("tls.check").await.expect("subscribe");
    client.publish("tls.check", "over TLS".into()).await.expect("publish");
    let msg = tokio::time::timeout(WAIT, sub.next()).await.expect("in time").expect("a message");
    assert_eq!(&msg.payload[..], b"over TLS");

    // No client certificate: the server, verifying clients, refuses the handshake.
    let without_cert = NatsTls { cert_file: None, key_file: None, ..nats.tls.clone() };
    let refused = service::connect_configured(&url, &with_tls(without_cert), Duration::from_millis(500), None).await;
    let err = format!("{:#}", refused.expect_err("no client certificate"));
    // nats-server 2.9 answers BadCertificate; servers built with a newer Go, CertificateRequired.
    assert!(err.contains("BadCertificate") || err.contains("CertificateRequired"), "{err}");
    // The system's roots do not know the test CA: the client refuses the server.
    let unknown_ca = NatsTls { ca_file: None, ..nats.tls.clone() };
    let refused = service::connect_configured(&url, &with_tls(unknown_ca), Duration::from_millis(500), None).await;
    let err = format!("{:#}", refused.expect_err("a server certificate from an unknown CA"));
    assert!(err.contains("UnknownIssuer"), "{err}");
    drop(server);
}

#[test]
fn config_check_names_the_missing_credential_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = linkbus_tests::write_config(
        dir.path(),
        &format!(
            "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[nats.auth]\nnkey_seed_file = \"{0}/linkbus.nk\"\n\
             [nats.tls]\nca_file = \"{0}/ca.pem\"\n[region]\ndir = \"{1}\"\n",
            dir.path().display(),
            sf_region_dir().display()
        ),
    );
    let out = linkbus_command().args(["config", "check"]).arg(&config).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("nats.auth.nkey_seed_file") && stderr.contains("linkbus.nk"), "{stderr}");
    assert!(stderr.contains("nats.tls.ca_file"), "{stderr}");
    // Once they are there, it passes.
    std::fs::write(dir.path().join("linkbus.nk"), nkeys::KeyPair::new_user().seed().expect("seed")).expect("seed");
    std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").expect("ca");
    let out = linkbus_command().args(["config", "check"]).arg(&config).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_from_the_environment_overrides_the_file_and_a_wrong_one_fails_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let port = free_port();
    let conf = d.join("nats-server.conf");
    let text = format!(
        "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: {:?} }}\n\
         authorization {{ users = [ {{ user: linkbus, password: \"s3cret-from-env\" }} ] }}\n",
        d.join("js").display().to_string()
    );
    std::fs::write(&conf, text).expect("server config");
    let server = NatsProcess::start(&conf, port, &[], &d.join("nats-server.log")).await;
    let config = linkbus_tests::write_config(
        d,
        &format!("[nats]\nurl = \"{}\"\n[nats.auth]\nuser = \"linkbus\"\npassword = \"not-this-one\"\n", server.url()),
    );
    // Streams first, as linkbus up would make them.
    let mut nats = NatsConfig::default();
    nats.auth.user = Some("linkbus".into());
    nats.auth.password = Some("s3cret-from-env".into());
    let client = service::connect_configured(&server.url(), &nats, WAIT, None).await.expect("connects");
    linkbus_bus::nats::provision(&jetstream::new(client), &linkbus_tests::test_stream_settings())
        .await
        .expect("provision");

    let report = |password: Option<&str>| {
        let mut command = linkbus_command();
        command.args(["report", "--config"]).arg(&config).args([
            "--id",
            "env-1",
            "--system",
            "emergency",
            "--category",
            "fire",
            "--lon=-122.4194",
            "--lat=37.7599",
        ]);
        command.env_remove("LINKBUS_NATS_URL").env_remove(nats_access::ENV_PASSWORD);
        if let Some(password) = password {
            command.env(nats_access::ENV_PASSWORD, password);
        }
        command.output().expect("linkbus report runs")
    };
    // The file's password is wrong; the environment's overrides it.
    let refused = report(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the credentials"));
    let accepted = report(Some("s3cret-from-env"));
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
    assert_eq!(String::from_utf8_lossy(&accepted.stdout).trim(), "reported");
}
