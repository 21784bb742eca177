//! `mcp-oauth gateway` isolation options as a user writes them: `per_user_idle` and
//! `per_user_max` (`--per-user-idle`, `--per-user-max`) are read from the file, printed back by
//! `--print-config`, and nonsense is refused by `mcp-oauth gateway check` with its line and
//! what to write.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests panic on failure

mod support;

use support::process::{Run, TempDir, run_async};

/// `mcp-oauth gateway ARGS` run to its end: its exit code, stdout and stderr.
async fn gateway(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["gateway"];
    all.extend_from_slice(args);
    let Run {
        code,
        stdout,
        stderr,
    } = run_async(&all, &[], None).await;
    (code, stdout, stderr)
}

#[tokio::test]
async fn per_user_idle_and_cap_are_checked_and_printed_back() {
    let tmp = TempDir::new("gw", "isolation-options");
    let dir = tmp.path();
    let upstream = "[[upstream]]\nname = \"notes\"\ncommand = [\"sh\"]\nisolation = \"per-user\"\n";
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!("per_user_idle = 600\nper_user_max = 20\n{upstream}"),
    )
    .unwrap();
    let good = good.to_str().unwrap();
    let (code, stdout, stderr) = gateway(&["check", "--config", good]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, printed, stderr) = gateway(&["--config", good, "--print-config"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(printed.contains("per_user_idle = 600"), "{printed}");
    assert!(printed.contains("per_user_max = 20"), "{printed}");
    // The command line wins over the file, and prints as the same key.
    let (_, printed, _) =
        gateway(&["--config", good, "--per-user-max", "5", "--print-config"]).await;
    assert!(printed.contains("per_user_max = 5"), "{printed}");

    for (key, says) in [
        (
            "per_user_max = 0",
            "write a whole number of processes, 1 or more",
        ),
        (
            "per_user_idle = 0",
            "write a whole number of seconds from 1 to 31536000",
        ),
        (
            "per_user_idle = 4000000000",
            "write a whole number of seconds from 1 to 31536000",
        ),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, format!("{key}\n{upstream}")).unwrap();
        let (code, stdout, stderr) = gateway(&["check", "--config", bad.to_str().unwrap()]).await;
        assert_eq!(code, 2, "{key}: {stdout}{stderr}");
        let (name, value) = key.split_once(" = ").unwrap();
        assert!(
            stderr.contains(&format!("bad.toml:1: {name} = \"{value}\": {says}")),
            "{key}: {stderr}"
        );
    }
}
