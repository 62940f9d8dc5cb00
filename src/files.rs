//! Private files: the data directory and everything in it that holds secrets (the database with
//! the token, TURN and signing secrets, password hashes and sessions; backups; TLS keys) are the
//! server user's alone, whatever the umask: directories 0700, files 0600.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a private directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a private file.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) if missing and makes it 0700. A directory others can read is
/// tightened (with a warning); one that cannot be tightened is refused.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    let mode = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)).map_err(|e| {
            format!(
                "{} is open to other users (mode {:o}) and cannot be made private: {e}; \
                 run `chmod 700 {}` as its owner",
                dir.display(),
                mode & 0o777,
                dir.display()
            )
        })?;
        tracing::warn!(dir = %dir.display(), was = format!("{:o}", mode & 0o777), "made the directory private (700)");
    }
    Ok(())
}

/// Makes `path` 0600, creating it empty first if it does not exist (so a file that is filled
/// afterwards, such as a new database, is never readable by others, even for a moment).
pub fn private_file(path: &Path) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    tighten(path)
}

/// Makes an existing file 0600 if others can read it.
pub fn tighten(path: &Path) -> Result<(), String> {
    let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| format!("cannot make {} private (mode {:o}): {e}", path.display(), mode & 0o777))?;
    }
    Ok(())
}

/// Writes `bytes` to a new or truncated file that only the owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tighten(path)?;
    f.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
