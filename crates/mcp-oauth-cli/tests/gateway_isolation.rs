//! `mcp-oauth gateway` isolation options as a user writes them: `per_user_idle` and
//! `per_user_max` (`--per-user-idle`, `--per-user-max`) are read from the file, printed back by
//! `--print-config`, and nonsense is refused by `mcp-oauth gateway check` with its line and
//! what to write.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests panic on failure

use std::path::PathBuf;

use tokio::process::Command;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-oauth-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn gateway(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .arg("gateway")
        .args(args)
        .output()
        .await
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn per_user_idle_and_cap_are_checked_and_printed_back() {
    let dir = temp_dir("isolation-options");
    let upstream = "[[upstream]]\nname = \"notes\"\ncommand = [\"sh\"]\nisolation = \"per-user\"\n";
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!("per_user_idle = 600\nper_user_max = 20\n{upstream}"),
    )
    .unwrap();
    let good = good.to_str().unwrap();
    let (code, stdout, stderr) = gateway(&["check", "--config", good]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, printed, stderr) = gateway(&["--config", good, "--print-config"]).await;
    assert_eq!(code, Some(0), "{stderr}");
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
        assert_eq!(code, Some(2), "{key}: {stdout}{stderr}");
        let (name, value) = key.split_once(" = ").unwrap();
        assert!(
            stderr.contains(&format!("bad.toml:1: {name} = \"{value}\": {says}")),
            "{key}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
