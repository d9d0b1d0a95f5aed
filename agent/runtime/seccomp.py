"""The default seccomp profile put into every bundle (bundle.py calls ``default_profile``).

Design notes: Docker's real default profile is an allow-list of ~350 syscalls.
We take the simpler, equivalent-in-spirit shape its documentation describes:
allow by default and return EPERM for the syscalls Docker lists as blocked
("Significant syscalls blocked by the default profile"). Names a given
architecture lacks (vm86 on x86_64, for example) are skipped by runc/libseccomp,
so one list serves every architecture. ``personality`` is left alone: Docker
only filters non-default personas, and blocking it outright breaks ``setarch``.
"""

from __future__ import annotations

import platform
from typing import Any

EPERM = 1

BLOCKED_SYSCALLS: tuple[str, ...] = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
    "query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl", "umount", "umount2",
    "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
)

# Native architecture first, then the compat ABIs a process on it can switch to.
_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


def architectures(machine: str | None = None) -> list[str]:
    """The seccomp architectures for ``machine`` (default: this host)."""
    return list(_ARCHITECTURES.get(machine or platform.machine(), ()))


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """An OCI ``linux.seccomp`` object: allow all, EPERM for the blocked list."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(machine),
        "syscalls": [
            {
                "names": list(BLOCKED_SYSCALLS),
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
            }
        ],
    }
