//! The seccomp filters every sandboxed instance runs under (installed just before the
//! runtime starts, by the forked child itself or by bubblewrap): system calls no function
//! needs, which widen what a kernel flaw exposes to it, fail with EPERM.
//!
//! Refused: tracing and reading other processes' memory, mounts, kernel keyrings, modules
//! and `kexec`, BPF, perf events, `userfaultfd`, io_uring, new namespaces (`unshare`,
//! `setns`, `clone` with a namespace flag), file handles (`open_by_handle_at`), swap,
//! `reboot`, `acct`, `syslog`. `clone3`, whose flags the filter cannot read (they sit in
//! memory), fails with ENOSYS, so the C library falls back to `clone`, as Docker's default
//! profile does. The filters are built once per process with seccompiler.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The compiled programs, as prctl(2) and bubblewrap take them: raw `struct sock_filter`
/// arrays.
pub(crate) struct Programs {
    /// The refused system calls, with EPERM.
    pub(crate) refused: Vec<u8>,
    /// `clone3`, with ENOSYS.
    pub(crate) clone3: Vec<u8>,
}

/// The system calls refused with EPERM, by name (for the docs and tests) and number.
pub(crate) const REFUSED: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("fsconfig", libc::SYS_fsconfig),
    ("fspick", libc::SYS_fspick),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
];

/// `clone`'s flags that make a namespace: a `clone` with any of them is refused.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

/// The programs for this machine's architecture, built on first use; an error names what
/// kept them from being built (an architecture seccompiler does not know).
pub(crate) fn programs() -> Result<&'static Programs, &'static str> {
    static PROGRAMS: OnceLock<Result<Programs, String>> = OnceLock::new();
    PROGRAMS.get_or_init(build).as_ref().map_err(String::as_str)
}

fn build() -> Result<Programs, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("no seccomp filter for {}: {e}", std::env::consts::ARCH))?;
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = REFUSED
        .iter()
        .map(|&(_, number)| (number, Vec::new()))
        .collect();
    let mut clone_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let condition = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(|e| e.to_string())?;
        clone_rules.push(SeccompRule::new(vec![condition]).map_err(|e| e.to_string())?);
    }
    refused.insert(libc::SYS_clone, clone_rules);
    let errno = |code: i32| SeccompAction::Errno(code.unsigned_abs());
    let refused = compile(refused, errno(libc::EPERM), arch)?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        errno(libc::ENOSYS),
        arch,
    )?;
    Ok(Programs { refused, clone3 })
}

/// A filter that answers `action` to the calls in `rules` and allows every other one.
fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
    arch: TargetArch,
) -> Result<Vec<u8>, String> {
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, action, arch).map_err(|e| e.to_string())?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for instruction in program {
        bytes.extend_from_slice(&instruction.code.to_ne_bytes());
        bytes.push(instruction.jt);
        bytes.push(instruction.jf);
        bytes.extend_from_slice(&instruction.k.to_ne_bytes());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_for_this_machine() {
        let programs = programs().expect("filters for this architecture");
        // Whole `struct sock_filter`s, and well under the kernel's 4,096 instructions.
        for program in [&programs.refused, &programs.clone3] {
            assert_eq!(program.len() % 8, 0);
            assert!(
                program.len() / 8 < 4096,
                "{} instructions",
                program.len() / 8
            );
        }
    }
}
