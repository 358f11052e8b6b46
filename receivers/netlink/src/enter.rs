//! Running work inside other network namespaces. A netlink socket belongs to the namespace
//! of the thread that opened it, so a collection runs on a thread of its own that enters
//! each namespace in turn (setns changes only the calling thread) and then ends, so no
//! thread of the async runtime is ever left in a pod's namespace.

use std::fs::File;
use std::os::fd::AsRawFd;

use podnet_netns::Namespace;

#[derive(Debug)]
pub enum EnterError {
    /// The namespace is gone (its process exited): a deleted pod, not an error.
    Vanished,
    Failed(String),
}

/// Moves the calling thread into `ns`.
pub fn enter(ns: &Namespace) -> Result<(), EnterError> {
    let path = ns.proc_dir.join("ns/net");
    let file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EnterError::Vanished,
        _ if e.raw_os_error() == Some(libc::ESRCH) => EnterError::Vanished,
        _ => EnterError::Failed(format!("{}: {e}", path.display())),
    })?;
    // SAFETY: setns on a valid namespace fd; it affects this thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(EnterError::Failed(format!("setns {}: {e} (podnet needs CAP_SYS_ADMIN to enter pod namespaces)", path.display())));
    }
    Ok(())
}

/// Runs `work` for each namespace on a fresh thread, which enters them one after another.
pub fn for_each_namespace<R: Send>(
    namespaces: &[Namespace],
    mut work: impl FnMut(&Namespace) -> R + Send,
) -> Vec<(usize, Result<R, EnterError>)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            namespaces
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    let r = enter(ns).map(|()| work(ns));
                    (i, r)
                })
                .collect()
        })
        .join()
        .unwrap_or_default()
    })
}
