//! The `chat` command line: parses arguments, then hands over to the library.

use clap::{Parser, Subcommand};

// mimalloc returns freed memory to the OS promptly. With glibc's allocator, the 19 MiB argon2
// buffers of a few sign-ups raised its mmap threshold and left hundreds of MiB resident (378 MiB
// after 20 registrations, measured); with mimalloc the server stays near its working set.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "chat", version, about = "Self-hosted, federated, real-time chat with video calls")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (web app, live chat) with zero configuration by default.
    Serve(Box<chat::config::ServeArgs>),
    /// Check or print configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a consistent backup of the database to FILE, while the server runs or not.
    Backup {
        /// The backup file to create (must not exist).
        file: std::path::PathBuf,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Manage accounts and rooms, while the server runs (through its admin socket) or not.
    Admin {
        #[command(subcommand)]
        what: AdminCommand,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Restore a backup FILE into an empty data directory (the server must not be running on it).
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration (FILE, plus CHAT_* variables and flags as `serve` would see them)
    /// and print the effective settings. Exit code 2 names the bad setting.
    Check {
        /// The TOML file to check [default: CHAT_CONFIG, or none].
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        args: Box<chat::config::ServeArgs>,
    },
    /// Print a commented example file with every setting at its default.
    Example,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Rooms.
    #[command(subcommand)]
    Room(RoomCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. Without --password-stdin a password is generated and printed once.
    Create {
        /// Username (letters, digits, `.`, `_`, `-`; case-insensitive).
        username: String,
        /// Make the account a server administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set a new password and sign the account out everywhere.
    ResetPassword {
        /// Username.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: it cannot sign in and its sessions end at once.
    Disable {
        /// Username.
        username: String,
        /// Enable the account again instead.
        #[arg(long)]
        enable: bool,
    },
    /// Make an account a server administrator (it can then use /admin).
    MakeAdmin {
        /// Username.
        username: String,
        /// Take administration away instead.
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Subcommand)]
enum RoomCommand {
    /// List rooms, newest activity first.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a room and its members.
    Show {
        /// Room id (`!...`).
        room_id: String,
    },
    /// Delete a room, its messages and memberships, for good.
    Delete {
        /// Room id (`!...`).
        room_id: String,
        /// Really delete (without it, the command only says what would go).
        #[arg(long)]
        yes: bool,
    },
}

/// Where the data directory is, for `backup`, `restore` and `admin`: `--data-dir`, or `data_dir`
/// from `--config` (the packaged service: `--config /etc/chat/chat.toml`).
use chat::config::DataDirArgs;

/// The configuration, or the exit code after saying what is wrong with it.
fn config_or_exit(dir: &DataDirArgs) -> Result<chat::Config, std::process::ExitCode> {
    chat::Config::from_args(&dir.0).map_err(|e| {
        eprintln!("chat: configuration error: {e}");
        std::process::ExitCode::from(2)
    })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The `turn` crate logs every packet it refuses at error level (a client retransmitting an
    // Allocate is enough), so a client could fill the log; it is off unless CHAT_LOG asks.
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CHAT_LOG").unwrap_or_else(|_| "chat=info,turn=off,warn".into());
    // Human-readable by default; CHAT_LOG_FORMAT=json for one JSON object per line (log shippers).
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match std::env::var("CHAT_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            logs.init();
            eprintln!("CHAT_LOG_FORMAT: {other:?} is not \"text\" or \"json\"");
            return std::process::ExitCode::from(2);
        }
    }
    match cli.command {
        Command::Backup { file, dir } => backup(&file, &dir),
        Command::Restore { file, dir } => restore(&file, &dir),
        Command::Admin { what, dir } => admin(what, &dir),
        Command::Config(ConfigCommand::Example) => {
            print!("{}", chat::config::example());
            std::process::ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { file, mut args }) => {
            if file.is_some() {
                args.config = file;
            }
            match chat::Config::from_args(&args) {
                Ok(c) => {
                    print!("{}", chat::config::effective_toml(&c));
                    eprintln!("chat: configuration OK");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("chat: configuration error: {e}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        Command::Serve(args) => {
            let config = match chat::Config::from_args(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("chat: configuration error: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("chat: cannot start runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("chat: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: chat::Config) -> Result<(), String> {
    // Each live tab holds a socket: allow as many as the system lets this process have.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let shutdown = CancellationToken::new();
    let running = chat::start(config.clone(), shutdown.clone()).await?;
    let scheme = if running.https { "https" } else { "http" };
    println!("chat is ready at {scheme}://{}/  (data in {})", running.addr, config.data_dir.display());
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("chat: shutting down");
        signal.cancel();
    });
    running.wait().await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn backup(file: &std::path::Path, dir: &DataDirArgs) -> std::process::ExitCode {
    let data_dir = match config_or_exit(dir) {
        Ok(c) => c.data_dir,
        Err(code) => return code,
    };
    let dest = match std::path::absolute(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chat: {}: {e}", file.display());
            return std::process::ExitCode::from(2);
        }
    };
    // A running server makes the backup itself (it holds the database); otherwise open it here.
    let req = serde_json::to_value(chat::admin::Op::Backup { path: dest.clone() }).unwrap_or_default();
    let out = match chat::admin::request(&data_dir, &req) {
        Ok(Some(answer)) if answer["ok"] == true => {
            serde_json::from_value::<serde_json::Value>(answer["backup"].clone()).map_err(|e| e.to_string())
        }
        Ok(Some(answer)) => Err(answer["error"].as_str().unwrap_or("backup failed").to_string()),
        Ok(None) => {
            chat::store::backup::backup_offline(&data_dir, &dest).map(|s| serde_json::to_value(s).unwrap_or_default())
        }
        Err(e) => Err(e),
    };
    match out {
        Ok(stats) => {
            println!(
                "chat: backup written to {} ({} events, {} bytes, up to position {}, {:.2} s; {} files, {} bytes, in {})",
                dest.display(),
                stats["events"],
                stats["bytes"],
                stats["stream_pos"],
                stats["secs"].as_f64().unwrap_or(0.0),
                stats["files"],
                stats["file_bytes"],
                chat::store::backup::media_dir_of(&dest).display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat: backup failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn restore(file: &std::path::Path, dir: &DataDirArgs) -> std::process::ExitCode {
    let data_dir = match config_or_exit(dir) {
        Ok(c) => c.data_dir,
        Err(code) => return code,
    };
    let ping = serde_json::to_value(chat::admin::Op::Ping).unwrap_or_default();
    if let Ok(Some(_)) = chat::admin::request(&data_dir, &ping) {
        eprintln!("chat: a server is running on {}; stop it first", data_dir.display());
        return std::process::ExitCode::from(2);
    }
    match chat::store::backup::restore(&data_dir, file) {
        Ok((events, pos)) => {
            println!("chat: restored {events} events (up to position {pos}) into {}", data_dir.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat: restore failed: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Reads one line (the password) from standard input.
fn password_from_stdin(wanted: bool) -> Result<Option<String>, String> {
    if !wanted {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err("no password on standard input".into());
    }
    Ok(Some(pw))
}

fn admin(what: AdminCommand, dir: &DataDirArgs) -> std::process::ExitCode {
    use chat::admin::Op;
    let config = match config_or_exit(dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let built = (|| -> Result<(Op, bool, bool), String> {
        Ok(match what {
            AdminCommand::User(UserCommand::Create { username, admin, password_stdin }) => {
                (Op::UserCreate { username, password: password_from_stdin(password_stdin)?, admin }, false, false)
            }
            AdminCommand::User(UserCommand::List { json }) => (Op::UserList, json, false),
            AdminCommand::User(UserCommand::ResetPassword { username, password_stdin }) => {
                (Op::UserResetPassword { username, password: password_from_stdin(password_stdin)? }, false, false)
            }
            AdminCommand::User(UserCommand::Disable { username, enable }) => {
                (Op::UserDisable { username, disabled: !enable }, false, false)
            }
            AdminCommand::User(UserCommand::MakeAdmin { username, revoke }) => {
                (Op::UserMakeAdmin { username, admin: !revoke }, false, false)
            }
            AdminCommand::Room(RoomCommand::List { json }) => (Op::RoomList, json, false),
            AdminCommand::Room(RoomCommand::Show { room_id }) => (Op::RoomShow { room_id }, false, false),
            AdminCommand::Room(RoomCommand::Delete { room_id, yes: true }) => {
                (Op::RoomDelete { room_id }, false, false)
            }
            AdminCommand::Room(RoomCommand::Delete { room_id, yes: false }) => (Op::RoomShow { room_id }, false, true),
        })
    })();
    let (op, json, dry_delete) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("chat: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let request = match serde_json::to_value(&op) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("chat: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let fallback = config.server_name.clone().unwrap_or_else(|| chat::config::derive_server_name(config.listen));
    let answer = match chat::admin::request(&config.data_dir, &request) {
        Ok(Some(a)) if a["ok"] == true => Ok(a),
        Ok(Some(a)) => Err(a["error"].as_str().unwrap_or("the server refused").to_string()),
        Ok(None) => chat::admin::run_offline(&config.data_dir, &fallback, op.clone()),
        Err(e) => Err(e),
    };
    match answer {
        Ok(a) if json => {
            let list = a.get("users").or_else(|| a.get("rooms")).cloned().unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
            std::process::ExitCode::SUCCESS
        }
        Ok(a) => {
            print!("{}", chat::admin::describe(&op, &a, dry_delete));
            if dry_delete { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("chat: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
