//! Security of the installed files: the configuration file permission
//! warning, the status page and metrics listener on loopback unless
//! allowed otherwise, the unix milter socket mode set by the daemon, and
//! the systemd unit's user and hardening options.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Daemon;

const BINARY: &str = env!("CARGO_BIN_EXE_ioc-milter");
const UNIT: &str = include_str!("../config/ioc-milter.service");
const SECRET: &str = "planted-config-Secret-c41d";

/// Returns the configuration sections every test shares, with the milter on
/// the unix socket `milter.sock` in `dir` and no `[http]` section.
fn base_toml(dir: &Path) -> String {
    let listen = format!("unix:{}", dir.join("milter.sock").display());
    common::config_sections(dir, &listen)
}

fn taxii_source(secret_lines: &str) -> String {
    format!(
        r#"
[[source]]
name = "otx"
kind = "taxii11"
hostname = "127.0.0.1"
port = 9
https = false
collection = "user_example"
{secret_lines}
"#
    )
}

/// Writes `text` as the configuration with file mode `mode`.
fn write_config(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("ioc-milter.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Returns the configuration's warnings that contain `needle`.
fn warnings_containing<'a>(
    config: &'a ioc_milter::config::Config,
    needle: &str,
) -> Vec<&'a String> {
    config
        .warnings
        .iter()
        .filter(|warning| warning.contains(needle))
        .collect()
}

fn permission_warnings(config: &ioc_milter::config::Config) -> Vec<&String> {
    warnings_containing(config, "chmod 640")
}

#[test]
fn readable_password_warns() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_toml(dir.path())
        + &taxii_source(&format!("username = \"reader\"\npassword = \"{SECRET}\""));
    let path = write_config(dir.path(), &text, 0o644);

    let config = ioc_milter::config::load(&path).unwrap();
    let warnings = permission_warnings(&config);
    assert_eq!(warnings.len(), 1);
    let warning = warnings[0];
    assert!(warning.contains(&path.display().to_string()), "{warning}");
    assert!(warning.contains("source[otx].password"), "{warning}");
    assert!(warning.contains("mode 0644"), "{warning}");
    assert!(!warning.contains(SECRET), "{warning}");
}

#[test]
fn readable_username_warns() {
    // AlienVault OTX takes the API key as the user name.
    let dir = tempfile::tempdir().unwrap();
    let text = base_toml(dir.path())
        + &taxii_source(&format!(
            "username = \"{SECRET}\"\npassword_env = \"OTX_PASSWORD\""
        ));
    let path = write_config(dir.path(), &text, 0o604);

    let config = ioc_milter::config::load(&path).unwrap();
    let warnings = permission_warnings(&config);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("source[otx].username"));
    assert!(!warnings[0].contains("source[otx].password"));
    assert!(!warnings[0].contains(SECRET));
}

#[test]
fn readable_api_key_warns() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_toml(dir.path())
        + &format!(
            "\n[[source]]\nname = \"otx_api\"\nkind = \"otx\"\nurl = \"http://127.0.0.1:9/otx\"\napi_key = \"{SECRET}\"\n"
        );
    let path = write_config(dir.path(), &text, 0o644);

    let config = ioc_milter::config::load(&path).unwrap();
    let warnings = permission_warnings(&config);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("source[otx_api].api_key"),
        "{}",
        warnings[0]
    );
    assert!(!warnings[0].contains(SECRET));
}

#[test]
fn group_readable_password_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_toml(dir.path())
        + &taxii_source(&format!("username = \"reader\"\npassword = \"{SECRET}\""));
    for mode in [0o600, 0o640, 0o660] {
        let path = write_config(dir.path(), &text, mode);
        let config = ioc_milter::config::load(&path).unwrap();
        assert_eq!(permission_warnings(&config).len(), 0, "mode {mode:o}");
    }
}

#[test]
fn readable_without_secret_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_toml(dir.path()) + &taxii_source("");
    let path = write_config(dir.path(), &text, 0o644);
    let config = ioc_milter::config::load(&path).unwrap();
    assert_eq!(permission_warnings(&config).len(), 0);
}

/// Runs `ioc-milter check-config` on the configuration at `path`.
fn check_config(path: &Path) -> std::process::Output {
    Command::new(BINARY)
        .arg("--config")
        .arg(path)
        .arg("check-config")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn check_config_prints_permission_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_toml(dir.path())
        + &taxii_source(&format!("username = \"reader\"\npassword = \"{SECRET}\""));
    let path = write_config(dir.path(), &text, 0o644);

    let output = check_config(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("chmod 640"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(!stderr.contains(SECRET), "{stderr}");
}

/// Parses the base configuration with `http_lines` as its `[http]` section.
fn parse_with_http(
    dir: &Path,
    http_lines: &str,
) -> Result<ioc_milter::config::Config, ioc_milter::config::ConfigError> {
    let text = format!("{}\n[http]\n{http_lines}\n", base_toml(dir));
    ioc_milter::config::parse(&text, &dir.join("ioc-milter.toml"), dir)
}

fn remote_warnings(config: &ioc_milter::config::Config) -> Vec<&String> {
    warnings_containing(config, "accepts connections from other hosts")
}

#[test]
fn web_listener_defaults_to_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_toml(dir.path());
    let config =
        ioc_milter::config::parse(&text, &dir.path().join("ioc-milter.toml"), dir.path()).unwrap();
    let listen = config.http.listen.unwrap();
    assert_eq!(listen, "127.0.0.1:8895".parse().unwrap());
    assert!(listen.ip().is_loopback());
    assert_eq!(remote_warnings(&config).len(), 0);
}

#[test]
fn web_loopback_addresses_quiet() {
    let dir = tempfile::tempdir().unwrap();
    for address in ["127.0.0.1:9100", "127.0.0.2:9100", "[::1]:9100"] {
        let config = parse_with_http(dir.path(), &format!("listen = \"{address}\"")).unwrap();
        assert_eq!(config.http.listen, Some(address.parse().unwrap()));
        assert_eq!(remote_warnings(&config).len(), 0, "{address}");
    }
}

#[test]
fn web_remote_address_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for address in ["0.0.0.0:8895", "192.0.2.1:8895", "[::]:8895"] {
        let error = parse_with_http(dir.path(), &format!("listen = \"{address}\"")).unwrap_err();
        assert_eq!(error.key, "http.listen", "{address}");
        assert_eq!(
            error.message,
            format!(
                "\"{address}\" is not a loopback address; the status page can poll sources, so it listens on loopback unless allow_remote = true"
            )
        );
    }
}

#[test]
fn web_allow_remote_warns() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        parse_with_http(dir.path(), "listen = \"0.0.0.0:8895\"\nallow_remote = true").unwrap();
    assert_eq!(config.http.listen, Some("0.0.0.0:8895".parse().unwrap()));
    let warnings = remote_warnings(&config);
    assert_eq!(warnings.len(), 1, "{:?}", config.warnings);
    let expected = format!(
        "{}: http.listen: \"0.0.0.0:8895\" accepts connections from other hosts (allow_remote = true); any host that reaches it can read the matches and press Poll Now, Suspend and Resume, so set http.password_file or restrict it with a firewall",
        dir.path().join("ioc-milter.toml").display()
    );
    assert_eq!(warnings[0], &expected);

    // allow_remote alone changes nothing for a loopback address.
    let config = parse_with_http(
        dir.path(),
        "listen = \"127.0.0.1:8895\"\nallow_remote = true",
    )
    .unwrap();
    assert_eq!(remote_warnings(&config).len(), 0);
}

#[test]
fn web_password_keys() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("status.password");
    std::fs::write(&password_file, "pw\n").unwrap();
    let file_line = format!("password_file = \"{}\"", password_file.display());

    let config = parse_with_http(dir.path(), &file_line).unwrap();
    let auth = config.http.auth.unwrap();
    assert_eq!(auth.username, "admin");
    assert_eq!(auth.password.reveal().unwrap(), "pw");

    let config = parse_with_http(
        dir.path(),
        "username = \"ops\"\npassword_env = \"STATUS_PW\"",
    )
    .unwrap();
    assert_eq!(config.http.auth.unwrap().username, "ops");

    let error = parse_with_http(dir.path(), "username = \"ops\"").unwrap_err();
    assert_eq!(error.key, "http.username");
    assert_eq!(
        error.message,
        "a user name needs a password; set password_file or password_env, or remove username"
    );
    let both = format!("{file_line}\npassword_env = \"STATUS_PW\"");
    let error = parse_with_http(dir.path(), &both).unwrap_err();
    assert_eq!(error.key, "http.password_env");

    // With a password, a remote listener warns about clear text instead.
    let remote = format!("listen = \"0.0.0.0:8895\"\nallow_remote = true\n{file_line}");
    let config = parse_with_http(dir.path(), &remote).unwrap();
    let warnings = remote_warnings(&config);
    assert_eq!(warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        warnings[0].contains("the password crosses the network in clear text"),
        "{}",
        warnings[0]
    );
}

#[test]
fn check_config_prints_remote_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[http]\nlisten = \"[::]:8895\"\nallow_remote = true\n",
        base_toml(dir.path())
    );
    let path = write_config(dir.path(), &text, 0o600);
    let output = check_config(&path);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("http.listen: \"[::]:8895\" accepts connections from other hosts"),
        "{stdout}"
    );
}

/// Runs the daemon until its unix socket exists and returns the socket's
/// permission bits.
fn daemon_socket_mode(socket_mode_line: &str) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let text = base_toml(dir.path()).replace("[state]", &format!("{socket_mode_line}\n\n[state]"))
        + common::STATUS_PAGE_OFF;
    let path = write_config(dir.path(), &text, 0o600);

    let _daemon = Daemon::start_unix(&path, &socket, &[], &[]);
    let metadata = std::fs::metadata(&socket).unwrap();
    metadata.permissions().mode() & 0o777
}

#[test]
fn daemon_socket_default_mode() {
    assert_eq!(daemon_socket_mode(""), 0o660);
}

#[test]
fn daemon_socket_configured_mode() {
    assert_eq!(daemon_socket_mode("socket_mode = \"0600\""), 0o600);
}

/// Values of `key=` lines in the unit's `[Service]` section.
fn unit_values(key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    UNIT.lines()
        .filter_map(|line| line.trim().strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn unit_runs_unprivileged() {
    let user = unit_values("User");
    assert_eq!(user, vec!["ioc-milter".to_string()]);
    let group = unit_values("Group");
    assert_eq!(group, vec!["ioc-milter".to_string()]);
    // An empty bounding set drops every capability.
    assert_eq!(unit_values("CapabilityBoundingSet"), vec![String::new()]);
}

#[test]
fn unit_has_hardening_options() {
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ] {
        assert_eq!(unit_values(key), vec![value.to_string()], "{key}");
    }
}

/// Writes the unit with its program paths pointing at the test build, so
/// `systemd-analyze` finds an executable.
fn unit_for_analysis(dir: &Path) -> PathBuf {
    let path = dir.join("ioc-milter.service");
    std::fs::write(&path, UNIT.replace("/usr/local/sbin/ioc-milter", BINARY)).unwrap();
    path
}

#[test]
fn unit_passes_systemd_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_analysis(dir.path());
    let output = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            println!("skipping unit_passes_systemd_verify: cannot run systemd-analyze: {error}");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn unit_exposure_ok() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_analysis(dir.path());
    // `--offline` reads the unit file without a running systemd (systemd
    // 250 and later).
    let output = match Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
    {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            println!("skipping unit_exposure_ok: systemd-analyze security failed: {stderr}");
            return;
        }
        Err(error) => {
            println!("skipping unit_exposure_ok: cannot run systemd-analyze: {error}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let overall = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_default();
    // systemd rates 0 to 10, lower is safer. It names the levels OK,
    // MEDIUM, EXPOSED and UNSAFE.
    assert!(overall.contains(" OK"), "{overall}");
}
