//! The TOML configuration file, read the way `chat config check FILE` reads it: the file is
//! written to a temporary path and `Config::from_args` loads and checks it. An accepted config
//! prints as TOML (`effective_toml`) that reads back to the same settings.

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
            // A derived server name is printed as a setting with a note; read back, it is one.
            let printed = config::effective_toml(&cfg).replace("   # derived from listen", "");
            std::fs::write(path(), &printed).expect("cannot write the temporary config file");
            let again = Config::from_args(&args).unwrap_or_else(|e| panic!("{e}: the printed config\n{printed}"));
            assert_eq!(config::effective_toml(&again), printed, "the printed config reads back differently");
        }
        // Every refusal names what is wrong (the setting or the file).
        Err(e) => assert!(!e.is_empty()),
    }
});
