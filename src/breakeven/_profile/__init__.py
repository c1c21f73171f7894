"""Profiles: the calibrated thresholds of a host, stored as TOML.

A profile file holds the profiles of one or more hosts, each under the key of
its fingerprint (CPU model, usable CPUs, OpenMP runtime and wait policy, BLAS,
breakeven version), so that one file in a home directory shared by a cluster
serves every kind of node.  For each kernel and dtype a host has two step
tables, ``[[work_min, threads], ...]``: ``hot`` for calls that find the OpenMP
team spinning (back to back) and ``cold`` for calls after the team has gone
to sleep.

Loading never raises: a missing file means the embedded default, silently; a
file that cannot be used (corrupt, ill-typed, another format version, no
entry for this host) gives one warning naming the file and the reason, and
the embedded default.  Saving is atomic (a temporary file in the same
directory, then ``os.replace``) under an exclusive lock, and keeps the other
hosts' entries.
"""

from breakeven._profile.files import atomic_write, default_profile_path, locked
from breakeven._profile.fingerprint import Fingerprint, host_fingerprint
from breakeven._profile.format import (
    EMBEDDED_DEFAULT,
    FORMAT_VERSION,
    KERNEL_NAME,
    ProfileError,
    ProfileWarning,
    parse_hosts,
)
from breakeven._profile.model import Profile, dumps, host_from_entry, now_utc
from breakeven._profile.store import (
    embedded_profile,
    forget_warnings,
    load_profile,
    read_defaults,
)

__all__ = [
    "EMBEDDED_DEFAULT",
    "FORMAT_VERSION",
    "KERNEL_NAME",
    "Fingerprint",
    "Profile",
    "ProfileError",
    "ProfileWarning",
    "atomic_write",
    "default_profile_path",
    "dumps",
    "embedded_profile",
    "forget_warnings",
    "host_fingerprint",
    "host_from_entry",
    "load_profile",
    "locked",
    "now_utc",
    "parse_hosts",
    "read_defaults",
]
