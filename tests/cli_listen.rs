//! Start checks of `run` and `demo`, and the listen addresses in
//! `check-config`. A milter or status page address in use, a unix socket
//! included, stops `run` with an error that names it as the configuration
//! writes it, and so does a state directory that another daemon serves.
//! `demo` rejects `--config` and hides it from its help, and a second `demo`
//! fails before it writes a file while a daemon serves the demo directory.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{config_head, config_sections, free_port, Daemon};

/// Exit status, standard output and standard error of a finished command.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` and waits at most 30 s for it to exit. A
/// process still running then is killed, and the test fails.
fn run_binary(args: &[&str]) -> Finished {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the ioc-milter binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect the output");
            panic!(
                "ioc-milter {args:?} still ran after 30 s:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("collect the output");
    Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits at most 10 s until the unix socket `socket` accepts a connection.
fn wait_until_accepting(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not accept within 10 s",
            socket.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a configuration with the milter on `milter_listen` and the
/// status page on `http_listen`, and returns its path.
fn write_config(dir: &Path, milter_listen: &str, http_listen: &str) -> String {
    let text =
        config_sections(dir, milter_listen) + &format!("\n[http]\nlisten = \"{http_listen}\"\n");
    let path = dir.join("ioc-milter.toml");
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn run_status_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = occupied.local_addr().unwrap().to_string();
    let config = write_config(
        dir.path(),
        &format!("inet:127.0.0.1:{}", free_port()),
        &address,
    );

    let finished = run_binary(&["--config", &config, "run"]);

    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert_eq!(
        finished.stderr.lines().last(),
        Some(format!("ioc-milter: error: cannot listen on {address} for the status page ([http] listen): the address is in use by another process; stop that process (`ss -ltnp` shows it), or set [http] listen in {config} to a free port, or to \"off\"").as_str())
    );
    assert!(
        !finished.stderr.contains("milter listening on"),
        "{}",
        finished.stderr
    );
}

/// The error quotes `milter.listen` as written, so Sendmail's form
/// `inet:PORT@HOST` is not shown as `inet:HOST:PORT`.
#[test]
fn run_milter_port_in_use() {
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    for listen in [
        format!("inet:127.0.0.1:{port}"),
        format!("inet:{port}@127.0.0.1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &listen, "off");

        let finished = run_binary(&["--config", &config, "run"]);

        assert_eq!(finished.code, Some(2), "{listen}: {}", finished.stderr);
        assert_eq!(
            finished.stderr.lines().last(),
            Some(format!("ioc-milter: error: cannot listen on {listen} for the milter (milter.listen): the address is in use by another process; stop that process (`ss -ltnp` shows it), or set milter.listen in {config} to a free port, and smtpd_milters in Postfix's main.cf to the same").as_str()),
            "{listen}"
        );
    }
}

#[test]
fn run_unix_socket_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let occupied = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let config = write_config(dir.path(), &format!("unix:{}", socket.display()), "off");

    let finished = run_binary(&["--config", &config, "run"]);

    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert_eq!(
        finished.stderr.lines().last(),
        Some(format!("ioc-milter: error: cannot listen on unix:{} for the milter (milter.listen): the address is in use by another process; stop that process (`ss -lxp` shows it), or set milter.listen in {config} to another socket path, and smtpd_milters in Postfix's main.cf to the same", socket.display()).as_str())
    );
    // The socket of the process that listens stays in place.
    assert!(socket.exists());
    drop(occupied);
}

/// A socket in a directory that does not exist fails with the system's
/// reason, and `local:` (Sendmail's name for `unix:`) is quoted as written.
#[test]
fn run_socket_directory_missing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("missing/milter.sock");
    let config = write_config(dir.path(), &format!("local:{}", socket.display()), "off");

    let finished = run_binary(&["--config", &config, "run"]);

    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert_eq!(
        finished.stderr.lines().last(),
        Some(format!("ioc-milter: error: cannot listen on local:{} for the milter (milter.listen): No such file or directory (os error 2); create the socket's directory, or set milter.listen in {config} to another socket path, and smtpd_milters in Postfix's main.cf to the same", socket.display()).as_str())
    );
}

/// Writes a configuration with `sections` after the `[milter]`, `[state]`
/// and `[match_log]` sections of `milter_listen`, runs `check-config` on it
/// and returns the result and the configuration's path.
fn check_config(dir: &Path, milter_listen: &str, sections: &str) -> (Finished, String) {
    let config = dir.join("ioc-milter.toml");
    fs::write(&config, config_sections(dir, milter_listen) + sections).unwrap();
    let config = config.to_str().unwrap().to_string();
    (run_binary(&["--config", &config, "check-config"]), config)
}

#[test]
fn check_config_listen_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "inet:8894@127.0.0.1",
            "",
            "  milter listen: inet:8894@127.0.0.1\n  http listen: 127.0.0.1:8895 (status page http://127.0.0.1:8895/, metrics http://127.0.0.1:8895/metrics)\n",
        ),
        (
            "inet:127.0.0.1:8894",
            "\n[http]\nlisten = \"[::1]:8895\"\n",
            "  milter listen: inet:127.0.0.1:8894\n  http listen: [::1]:8895 (status page http://[::1]:8895/, metrics http://[::1]:8895/metrics)\n",
        ),
        (
            "unix:/run/ioc-milter/milter.sock",
            "\n[http]\nlisten = \"off\"\n",
            "  milter listen: unix:/run/ioc-milter/milter.sock\n  http listen: off (no status page or metrics endpoint)\n",
        ),
    ];
    for (milter_listen, sections, expected) in cases {
        let (finished, config) = check_config(dir.path(), milter_listen, sections);
        assert_eq!(finished.code, Some(0), "{}", finished.stderr);
        let head = format!("{config}: configuration is valid\n{expected}");
        assert!(
            finished.stdout.starts_with(&head),
            "{milter_listen}:\n{}",
            finished.stdout
        );
    }
}

#[test]
fn check_config_port_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "inet:127.0.0.1:70000",
            "",
            "milter.listen: invalid address \"inet:127.0.0.1:70000\": port 70000 is out of range (0 to 65535); write a port in that range, such as \"inet:127.0.0.1:8894\"",
        ),
        (
            "inet:70000@127.0.0.1",
            "",
            "milter.listen: invalid address \"inet:70000@127.0.0.1\": port 70000 is out of range (0 to 65535); write a port in that range, such as \"inet:8894@127.0.0.1\"",
        ),
        (
            "inet:127.0.0.1:8894",
            "\n[http]\nlisten = \"127.0.0.1:70000\"\n",
            "http.listen: invalid address \"127.0.0.1:70000\": port 70000 is out of range (0 to 65535); write a port in that range, such as \"127.0.0.1:8895\", or \"off\"",
        ),
    ];
    for (milter_listen, sections, message) in cases {
        let (finished, config) = check_config(dir.path(), milter_listen, sections);
        assert_eq!(finished.code, Some(2), "{}", finished.stdout);
        assert_eq!(finished.stdout, "", "{milter_listen}");
        assert_eq!(
            finished.stderr,
            format!("ioc-milter: error: {config}: {message}\n"),
            "{milter_listen}"
        );
    }
}

#[test]
fn run_state_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let first_addr = format!("127.0.0.1:{}", free_port());
    let first = dir.path().join("first.toml");
    fs::write(&first, config_head(dir.path(), &first_addr)).unwrap();
    let _daemon = Daemon::start_at(&first, &first_addr);
    let socket = dir.path().join("state/control.sock");
    wait_until_accepting(&socket);

    // Another milter address, the same state directory.
    let second = dir.path().join("second.toml");
    let second_addr = format!("127.0.0.1:{}", free_port());
    fs::write(&second, config_head(dir.path(), &second_addr)).unwrap();
    let finished = run_binary(&["--config", second.to_str().unwrap(), "run"]);

    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    let state = dir.path().join("state");
    assert_eq!(
        finished.stderr.lines().last(),
        Some(format!("ioc-milter: error: another ioc-milter daemon uses the state directory {}: its control socket {} accepts connections; stop that daemon, or set [state] directory in {} to another path", state.display(), socket.display(), second.display()).as_str())
    );
}

#[test]
fn demo_rejects_config_option() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("demo");
    let dir_text = dir.to_str().unwrap();

    let finished = run_binary(&[
        "--config",
        "/etc/ioc-milter/ioc-milter.toml",
        "demo",
        "--dir",
        dir_text,
    ]);

    // demo.toml does not exist yet, so the advice starts with the command
    // that writes it.
    assert_eq!(finished.code, Some(2));
    assert_eq!(
        finished.stderr,
        format!("ioc-milter: error: demo takes no --config: it writes its embedded configuration to {dir_text}/demo.toml on every start and runs that. To serve the demo with other settings, run `ioc-milter demo --dir {dir_text} --no-serve`, which writes {dir_text}/demo.toml (and loads the demo indicators), then edit it and run `ioc-milter --config {dir_text}/demo.toml run`. To run /etc/ioc-milter/ioc-milter.toml, run `ioc-milter --config /etc/ioc-milter/ioc-milter.toml run`\n")
    );
    assert!(!dir.exists());

    // Once `demo --no-serve` has written demo.toml, the advice is to edit
    // it, and the short option after the command name is rejected the same
    // way.
    let first = run_binary(&["demo", "--dir", dir_text, "--no-serve"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let config = dir.join("demo.toml");
    let written = fs::read(&config).unwrap();
    let finished = run_binary(&["demo", "--dir", dir_text, "-c", "other.toml"]);
    assert_eq!(finished.code, Some(2));
    assert_eq!(
        finished.stderr,
        format!("ioc-milter: error: demo takes no --config: it writes its embedded configuration to {dir_text}/demo.toml on every start and runs that. To serve the demo with other settings, edit {dir_text}/demo.toml and run `ioc-milter --config {dir_text}/demo.toml run`. To run other.toml, run `ioc-milter --config other.toml run`\n")
    );
    assert_eq!(fs::read(&config).unwrap(), written);
}

#[test]
fn demo_help_hides_config() {
    let demo = run_binary(&["demo", "--help"]);
    assert_eq!(demo.code, Some(0), "{}", demo.stderr);
    let options: Vec<&str> = demo
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.starts_with('-'))
        .collect();
    assert_eq!(
        options,
        ["--dir", "--log-format", "--no-serve", "--log-level", "-h,"]
    );

    // The other commands still list it.
    let run = run_binary(&["run", "--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("  -c, --config <FILE>  "),
        "{}",
        run.stdout
    );
}

/// Returns the content and modification time of each demo file under `dir`.
fn demo_files(dir: &Path) -> Vec<(String, Vec<u8>, SystemTime)> {
    let mut paths = vec![dir.join("demo.toml"), dir.join("indicators/demo-pulse.xml")];
    let mut messages: Vec<_> = fs::read_dir(dir.join("messages"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    messages.sort();
    paths.extend(messages);
    paths
        .into_iter()
        .map(|path| {
            let modified = fs::metadata(&path).unwrap().modified().unwrap();
            (
                path.display().to_string(),
                fs::read(&path).unwrap(),
                modified,
            )
        })
        .collect()
}

#[test]
fn second_demo_leaves_files() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("demo");
    let dir_text = dir.to_str().unwrap();
    let first = run_binary(&["demo", "--dir", dir_text, "--no-serve"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    // Serve the demo directory on free ports, as the README shows.
    let config_path = dir.join("demo.toml");
    let milter_addr = format!("127.0.0.1:{}", free_port());
    let edited = fs::read_to_string(&config_path)
        .unwrap()
        .replace("inet:127.0.0.1:8894", &format!("inet:{milter_addr}"))
        + "\n[http]\nlisten = \"off\"\n";
    fs::write(&config_path, edited).unwrap();
    let _daemon = Daemon::start_at(&config_path, &milter_addr);
    let socket = dir.join("state/control.sock");
    wait_until_accepting(&socket);
    let before = demo_files(&dir);

    let expected = format!("ioc-milter: error: a running ioc-milter uses the demo directory {dir_text}: its control socket {dir_text}/state/control.sock accepts connections; stop it (Ctrl-C in its terminal) before starting the demo again, or give another directory with --dir\n");
    // The variant without serving goes first: should the check fail, it
    // rewrites the files and exits 0 instead of serving on the demo ports.
    for extra in [&["--no-serve"][..], &[][..]] {
        let mut args = vec!["demo", "--dir", dir_text];
        args.extend_from_slice(extra);
        let second = run_binary(&args);
        assert_eq!(second.code, Some(2), "{args:?}");
        assert_eq!(second.stderr, expected, "{args:?}");
    }

    let after = demo_files(&dir);
    assert_eq!(after.len(), 7);
    for ((path, content_before, modified_before), (_, content_after, modified_after)) in
        before.iter().zip(&after)
    {
        assert_eq!(content_before, content_after, "{path}");
        assert_eq!(modified_before, modified_after, "{path}");
    }
}
