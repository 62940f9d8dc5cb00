//! The TOML configuration file, read the way `chat config check FILE` reads it: the file is
//! written to a temporary path, `Config::from_args` loads and checks it, and an accepted config
//! must print as TOML (`effective_toml`).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use chat::config::{self, Config, ServeArgs};
use libfuzzer_sys::fuzz_target;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("chat-fuzz-config-{}.toml", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(path(), data).expect("cannot write the temporary config file");
    let args = ServeArgs { config: Some(path().clone()), ..Default::default() };
    match Config::from_args(&args) {
        Ok(cfg) => {
            assert!(cfg.limits.check().is_ok() && cfg.turn.check().is_ok(), "an accepted config fails its checks");
            let printed = config::effective_toml(&cfg);
            assert!(!printed.starts_with("# cannot print"), "accepted config cannot be printed: {printed}");
        }
        // Every refusal names what is wrong (the setting or the file).
        Err(e) => assert!(!e.is_empty()),
    }
});
