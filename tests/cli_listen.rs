//! Start checks of `run` and `demo`. A milter or status page address in use,
//! a unix socket included, stops `run` with an error that names it, and so
//! does a state directory that another daemon serves. `demo` rejects `--config`, and
//! a second `demo` fails before it writes a file while a daemon serves the
//! demo directory.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{config_head, config_sections, free_port, Daemon};

/// Exit status and standard error of a finished command.
struct Finished {
    code: Option<i32>,
    stderr: String,
}

/// Runs the binary with `args` and waits at most 30 s for it to exit. A
/// process still running then is killed, and the test fails.
fn run_binary(args: &[&str]) -> Finished {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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

/// Writes a configuration with the milter on `milter_port` and the status
/// page on `http_listen`, and returns its path.
fn write_config(dir: &Path, milter_port: u16, http_listen: &str) -> String {
    let text = config_sections(dir, &format!("inet:127.0.0.1:{milter_port}"))
        + &format!("\n[http]\nlisten = \"{http_listen}\"\n");
    let path = dir.join("ioc-milter.toml");
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn run_status_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = occupied.local_addr().unwrap().to_string();
    let config = write_config(dir.path(), free_port(), &address);

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

#[test]
fn run_milter_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let config = write_config(dir.path(), port, "off");

    let finished = run_binary(&["--config", &config, "run"]);

    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert_eq!(
        finished.stderr.lines().last(),
        Some(format!("ioc-milter: error: cannot listen on inet:127.0.0.1:{port} for the milter (milter.listen): the address is in use by another process; stop that process (`ss -ltnp` shows it), or set milter.listen in {config} to a free port, and smtpd_milters in Postfix's main.cf to the same").as_str())
    );
}

#[test]
fn run_unix_socket_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let occupied = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let text = config_sections(dir.path(), &format!("unix:{}", socket.display()))
        + "\n[http]\nlisten = \"off\"\n";
    let config = dir.path().join("ioc-milter.toml");
    fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();

    let finished = run_binary(&["--config", config, "run"]);

    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert_eq!(
        finished.stderr.lines().last(),
        Some(format!("ioc-milter: error: cannot listen on unix:{} for the milter (milter.listen): the address is in use by another process; stop that process (`ss -lxp` shows it), or set milter.listen in {config} to another socket path, and smtpd_milters in Postfix's main.cf to the same", socket.display()).as_str())
    );
    // The socket of the process that listens stays in place.
    assert!(socket.exists());
    drop(occupied);
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

    assert_eq!(finished.code, Some(2));
    assert_eq!(
        finished.stderr,
        format!("ioc-milter: error: demo runs its embedded configuration, written to {dir_text}/demo.toml, and takes no --config; to serve the demo with an edited {dir_text}/demo.toml, run `ioc-milter --config {dir_text}/demo.toml run`, and to run /etc/ioc-milter/ioc-milter.toml, run `ioc-milter --config /etc/ioc-milter/ioc-milter.toml run`\n")
    );
    assert!(!dir.exists());
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
