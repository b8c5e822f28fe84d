//! The one way poisonscope writes: files through a temporary sibling renamed into place, whole
//! folders built under a hidden temporary sibling (`.NAME.partial-PID`) and renamed into place
//! when complete, leftovers of killed processes removed, and names that come from data (class
//! names) checked to stay one plain path component inside their folder.
//!
//! A reader never sees half an output, a failed or interrupted write leaves nothing behind, and no
//! file lands outside the folder the user named.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ArtifactError {
    pub path: PathBuf,
    pub message: String,
}

impl ArtifactError {
    pub fn new(path: &Path, message: impl ToString) -> Self {
        Self {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// This machine's name as it appears in temporary names (letters, digits, `.`, `-`, `_`; at
/// most 64), so that two machines writing into one shared folder (a sweep's shards) never pick
/// the same temporary name, and a leftover is judged stale only by the machine that made it.
pub fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .or_else(|_| std::env::var("COMPUTERNAME"))
            .unwrap_or_default();
        let clean: String = raw
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(64)
            .collect();
        if clean.is_empty() {
            "localhost".to_owned()
        } else {
            clean
        }
    })
}

/// `.NAME.TAG-PID@HOST`: the hidden sibling name of an unfinished output of this process.
fn tagged(name: &OsStr, tag: &str) -> String {
    format!(
        ".{}.{tag}-{}@{}",
        name.to_string_lossy(),
        std::process::id(),
        host()
    )
}

/// The unfinished outputs of this process (staged folders, temporary files, a sweep's claims):
/// what an interrupt removes before the process exits (see [`crate::interrupt`]).
static UNFINISHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A path registered as unfinished for as long as the guard lives: an interrupt (Ctrl-C,
/// SIGTERM) removes it before the process exits. Dropping the guard only forgets the path.
#[derive(Debug)]
pub struct Unfinished(PathBuf);

impl Unfinished {
    pub fn new(path: &Path) -> Self {
        let path = absolute(path);
        unfinished().push(path.clone());
        Self(path)
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let mut list = unfinished();
        if let Some(i) = list.iter().rposition(|p| *p == self.0) {
            list.swap_remove(i);
        }
    }
}

/// Set once an interrupt began removing the unfinished outputs: the writers refuse to start
/// another file, so what is removed is not written again before the process exits.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True once [`remove_unfinished`] has begun.
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

fn refuse_when_stopping(path: &Path) -> std::io::Result<()> {
    if stopping() {
        return Err(std::io::Error::other(format!(
            "{}: not written, the process is stopping",
            path.display()
        )));
    }
    Ok(())
}

/// Removes every registered unfinished output (folders and files) and returns their paths. Each
/// is first renamed to a `.trash` sibling, so a thread still writing into it can no longer add
/// to it by its old name. A write already under way when the removal began may re-create a
/// folder by its old name (`create_dir_all`); the removal repeats until a pass finds nothing.
/// The registry stays locked afterwards: the process is about to exit.
pub fn remove_unfinished() -> Vec<PathBuf> {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    let list = unfinished();
    let mut removed = Vec::new();
    for pass in 0..20 {
        let mut found = false;
        for path in list.iter() {
            if std::fs::symlink_metadata(path).is_err() {
                continue;
            }
            found = true;
            let name = path.file_name().unwrap_or_else(|| OsStr::new("out"));
            let trash = path.with_file_name(format!("{}.trash", name.to_string_lossy()));
            let target = if std::fs::rename(path, &trash).is_ok() {
                trash
            } else {
                path.clone()
            };
            let _ = if target.is_dir() {
                std::fs::remove_dir_all(&target)
            } else {
                std::fs::remove_file(&target)
            };
            if !removed.contains(path) {
                removed.push(path.clone());
            }
        }
        if !found && pass > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::mem::forget(list);
    removed
}

/// The hidden temporary sibling a file is written to before it is renamed to `path`.
fn temp_file_for(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_else(|| OsStr::new("out"));
    path.with_file_name(tagged(name, "tmp"))
}

/// Writes `path` atomically: `write` fills a hidden temporary file beside it, which is then
/// renamed to `path` (and removed when either step fails).
pub fn write_through(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    refuse_when_stopping(path)?;
    let temp = temp_file_for(path);
    let _unfinished = Unfinished::new(&temp);
    write(&temp)
        .and_then(|()| std::fs::rename(&temp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
}

/// Writes `bytes` to `path` through a hidden temporary file beside it, then renames it.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_through(path, |temp| std::fs::write(temp, bytes))
}

/// [`write_file`], its failure naming the file (`PATH: cannot write: …`).
pub fn write_file_at(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    write_file(path, bytes).map_err(|e| ArtifactError::new(path, format!("cannot write: {e}")))
}

/// Checks that `name` (a class name, a file name made from data) is one plain path component:
/// not empty, no `/` or `\`, not `.` or `..`, no control characters, at most 255 bytes.
pub fn check_component(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name.len() > 255 {
        return Err("is longer than 255 bytes".to_owned());
    }
    if name.contains(['/', '\\']) {
        return Err("contains a path separator".to_owned());
    }
    if name == "." || name == ".." {
        return Err("is `.` or `..`".to_owned());
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character".to_owned());
    }
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err("is not a plain file name".to_owned()),
    }
}

/// `dir/name` when `name` is one plain component (see [`check_component`]).
pub fn child(dir: &Path, name: &str) -> Result<PathBuf, ArtifactError> {
    check_component(name)
        .map(|()| dir.join(name))
        .map_err(|why| ArtifactError::new(&dir.join(name), format!("refusing this name: it {why}")))
}

/// True when process `pid` is still running (Linux `/proc`; elsewhere assume it is).
pub fn alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes `.NAME.partial-PID` / `.NAME.old-PID` / `.NAME.tmp-PID` siblings of `dest` left by
/// processes of this machine that are gone (an interrupted run or export).
pub fn remove_stale(dest: &Path) {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let Some((tag, owner)) = rest.split_once('-') else {
            continue;
        };
        // `PID@HOST` (or a bare `PID` of older versions, taken as this machine's).
        let (pid, made_here) = match owner.split_once('@') {
            Some((pid, made_on)) => (pid, made_on == host()),
            None => (owner, true),
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        // Another machine's leftover (a shared folder) cannot be judged from here.
        if !["partial", "old", "tmp"].contains(&tag)
            || !made_here
            || pid == std::process::id()
            || alive(pid)
        {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// True when `dir` is missing or an empty folder.
pub fn is_new_or_empty(dir: &Path) -> Result<bool, ArtifactError> {
    if !dir.exists() {
        return Ok(true);
    }
    if !dir.is_dir() {
        return Err(ArtifactError::new(dir, "exists and is not a folder"));
    }
    std::fs::read_dir(dir)
        .map(|mut entries| entries.next().is_none())
        .map_err(|e| ArtifactError::new(dir, format!("cannot read the folder: {e}")))
}

/// The absolute form of `path`, resolving what exists of it.
pub fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => absolute(parent).join(name),
        _ => abs,
    }
}

/// Checks that `dest` may receive an output: missing or empty, or (with `replace`) a previous
/// output of the same kind. Nothing is created; [`Staged::new`] checks the same.
pub fn check_dest(
    dest: &Path,
    replace: Option<&dyn Fn(&Path) -> bool>,
) -> Result<(), ArtifactError> {
    if is_new_or_empty(dest)? {
        return check_creatable(dest);
    }
    match replace {
        None => Err(ArtifactError::new(
            dest,
            "folder is not empty; choose a new folder or pass --force to replace a previous output",
        )),
        Some(is_previous) if !is_previous(dest) => Err(ArtifactError::new(
            dest,
            "folder is not empty and is not a previous poisonscope output; refusing to replace it",
        )),
        Some(_) => Ok(()),
    }
}

/// Checks, creating nothing, that the missing folder `dest` can be created: its nearest existing
/// ancestor is a folder this process may write into (a run must not train for an hour and then
/// fail to write, e.g. under `/dev/null/` or a read-only mount).
fn check_creatable(dest: &Path) -> Result<(), ArtifactError> {
    let abs = absolute(dest);
    let Some(ancestor) = abs.ancestors().skip(1).find(|a| a.exists()) else {
        return Ok(());
    };
    if !ancestor.is_dir() {
        return Err(ArtifactError::new(
            dest,
            format!(
                "cannot create this folder: {} is not a folder",
                ancestor.display()
            ),
        ));
    }
    if !writable(ancestor) {
        return Err(ArtifactError::new(
            dest,
            format!(
                "cannot create this folder: {} is not writable",
                ancestor.display()
            ),
        ));
    }
    Ok(())
}

/// Whether this process may create entries in the folder `dir` (Unix `access(W_OK)`; elsewhere
/// the read-only attribute).
#[cfg(unix)]
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: `path` is a valid NUL-terminated string; access(2) only reads it.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| !m.permissions().readonly())
}

/// A folder being built under a hidden temporary sibling of its destination. [`Staged::commit`]
/// renames it into place; dropped uncommitted (an error, a cancel, a panic), it is removed.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    dest: PathBuf,
    committed: bool,
    _unfinished: Unfinished,
}

impl Staged {
    /// Starts a folder for `dest`. `dest` must be missing or empty, unless `replace` says the
    /// folder holds a previous output of the same kind, which the commit then replaces.
    pub fn new(
        dest: &Path,
        replace: Option<&dyn Fn(&Path) -> bool>,
    ) -> Result<Self, ArtifactError> {
        check_dest(dest, replace)?;
        let abs = absolute(dest);
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Err(ArtifactError::new(dest, "not a valid output folder"));
        };
        std::fs::create_dir_all(parent)
            .map_err(|e| ArtifactError::new(dest, format!("cannot create the folder: {e}")))?;
        remove_stale(&abs);
        let temp = parent.join(tagged(name, "partial"));
        if temp.exists() {
            std::fs::remove_dir_all(&temp)
                .map_err(|e| ArtifactError::new(dest, format!("cannot clear the folder: {e}")))?;
        }
        let unfinished = Unfinished::new(&temp);
        std::fs::create_dir(&temp)
            .map_err(|e| ArtifactError::new(dest, format!("cannot create the folder: {e}")))?;
        Ok(Self {
            temp,
            dest: dest.to_path_buf(),
            committed: false,
            _unfinished: unfinished,
        })
    }

    /// Where to write the folder's contents until the commit.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// The final folder.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the finished folder into place (replacing a previous output if allowed).
    pub fn commit(mut self) -> Result<PathBuf, ArtifactError> {
        let fail = |e: std::io::Error| ArtifactError::new(&self.dest, format!("cannot write: {e}"));
        if self.dest.exists() {
            if is_new_or_empty(&self.dest)? {
                std::fs::remove_dir(&self.dest).map_err(fail)?;
            } else {
                let name = self.dest.file_name().unwrap_or_else(|| OsStr::new("out"));
                let old = self.dest.with_file_name(tagged(name, "old"));
                std::fs::rename(&self.dest, &old).map_err(fail)?;
                std::fs::rename(&self.temp, &self.dest).map_err(fail)?;
                self.committed = true;
                let _ = std::fs::remove_dir_all(&old);
                return Ok(self.dest.clone());
            }
        }
        std::fs::rename(&self.temp, &self.dest).map_err(fail)?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

/// Writes `text` to `path` through a hidden temporary file beside it, then renames it.
pub fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    write_file(path, text.as_bytes())
}

/// Writes `pixels` (`[width, height, channels]`, 1 channel = gray, 3 = RGB, row-major) as the
/// PNG `file` in `dir/<class>/`, the class folder created when missing and its name checked to
/// be one plain path component. Returns the path relative to `dir` (`<class>/<file>`). The
/// folder writers of the poisoned and the cleaned dataset both go through here, inside a
/// [`Staged`] folder.
pub fn write_class_png(
    dir: &Path,
    class: &str,
    file: &str,
    pixels: &[u8],
    [width, height, channels]: [usize; 3],
) -> Result<String, ArtifactError> {
    let folder = child(dir, class)?;
    refuse_when_stopping(&folder).map_err(|e| ArtifactError::new(&folder, e))?;
    std::fs::create_dir_all(&folder)
        .map_err(|e| ArtifactError::new(&folder, format!("cannot create the folder: {e}")))?;
    let path = folder.join(file);
    let color = if channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    image::save_buffer(&path, pixels, width as u32, height as u32, color)
        .map_err(|e| ArtifactError::new(&path, format!("cannot write: {e}")))?;
    Ok(format!("{class}/{file}"))
}

/// Refuses an output folder inside the `source` dataset folder, or one that contains it (never
/// write into the user's dataset).
pub fn check_not_in_source(out: &Path, source: &str) -> Result<(), ArtifactError> {
    let source_path = Path::new(source);
    if !source_path.exists() {
        return Ok(());
    }
    let (out_abs, src_abs) = (absolute(out), absolute(source_path));
    if out_abs.starts_with(&src_abs) || src_abs.starts_with(&out_abs) {
        return Err(ArtifactError::new(
            out,
            format!(
                "refusing to write here: it overlaps the source dataset {}; choose a folder outside it",
                source_path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_their_folder_are_refused() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "/abs", "x\ny", "x\u{7f}", "\0",
        ] {
            assert!(check_component(bad).is_err(), "{bad:?}");
        }
        for good in ["cat", "0", "my class", "été", "a.b", "..x"] {
            assert!(check_component(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_staged_folder_appears_only_when_committed() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("out");
        {
            let staged = Staged::new(&dest, None).unwrap();
            std::fs::write(staged.path().join("a.txt"), "x").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        let staged = Staged::new(&dest, None).unwrap();
        std::fs::write(staged.path().join("a.txt"), "x").unwrap();
        staged.commit().unwrap();
        assert!(dest.join("a.txt").is_file());
        assert!(Staged::new(&dest, None).is_err());
        let staged = Staged::new(&dest, Some(&|d: &Path| d.join("a.txt").exists())).unwrap();
        std::fs::write(staged.path().join("b.txt"), "y").unwrap();
        staged.commit().unwrap();
        assert!(dest.join("b.txt").is_file() && !dest.join("a.txt").exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("out");
        let stale = root.path().join(".out.partial-4194304999");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("x.png"), "x").unwrap();
        let stale_here = root.path().join(format!(".out.tmp-4194304999@{}", host()));
        std::fs::write(&stale_here, "x").unwrap();
        let mine = root
            .path()
            .join(format!(".out.partial-{}@{}", std::process::id(), host()));
        std::fs::create_dir(&mine).unwrap();
        // Another machine's leftover in a shared folder: its process cannot be looked up here.
        let elsewhere = root.path().join(".out.partial-4194304999@other-host");
        std::fs::create_dir(&elsewhere).unwrap();
        remove_stale(&dest);
        assert!(!stale.exists() && !stale_here.exists());
        assert!(mine.exists() && elsewhere.exists());
    }
}
