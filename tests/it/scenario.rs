//! `docs/scenario-119.sh` runs as written against `linkbus up` started with
//! `docs/scenario-119.toml` (its embedded nats-server and API moved to free ports and a
//! temporary folder, its streams given the tests' storage limits), and walks its case to `closed`.

use std::process::Command;

use linkbus_tests::repo_root;

#[test]
fn the_119_scenario_runs_as_written_against_linkbus_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = std::fs::read_to_string(repo_root().join("docs/scenario-119.toml")).expect("scenario config");
    let config = scenario
        .replace(".linkbus/scenario-119", &dir.path().join("nats").display().to_string())
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("[nats]\n", "[nats]\nembedded_port = 0\n");
    let config_path = dir.path().join("scenario.toml");
    std::fs::write(&config_path, format!("{config}\n{}", linkbus_tests::storage_toml())).expect("write config");

    let bin = env!("CARGO_BIN_EXE_linkbus-under-test");
    let (_up, announced) = linkbus_tests::start_up(
        Command::new(bin)
            .current_dir(repo_root())
            .args(["up", "--config"])
            .arg(&config_path)
            .env_remove("LINKBUS_NATS_URL"),
    );
    let nats = announced.nats_url().to_owned();
    let api = format!("http://{}", announced.api());

    let out = Command::new("bash")
        .current_dir(repo_root())
        .arg("docs/scenario-119.sh")
        .env("LINKBUS", bin)
        .env("LINKBUS_CONFIG", &config_path)
        .env("LINKBUS_NATS_URL", &nats)
        .env("LINKBUS_API", &api)
        .output()
        .expect("the scenario runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scenario failed:\n{stdout}\n{stderr}");
    for expected in ["accepted", "volunteer_accepted", "progress", "resolved", "rated", "closed", "final state: closed"]
    {
        assert!(stdout.contains(expected), "no {expected:?} in the scenario's output:\n{stdout}");
    }
    assert!(stdout.contains("Priority raised from 2 to 1"), "{stdout}");
}
