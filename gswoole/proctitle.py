"""Process titles and privilege dropping for forked processes."""

import grp
import os
import pwd

try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # the dependency is declared; stay usable without it
    _setproctitle = None


def set_title(prefix, role):
    """Title a process '<prefix>: <role>', as ``ps`` and ``top`` show it."""
    if _setproctitle is not None:
        _setproctitle("%s: %s" % (prefix, role))


def drop_privileges(user, group):
    """Switch a worker to ``user``/``group`` (names or numeric ids)."""
    if group is not None:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        if os.getgid() != gid:
            os.setgroups([gid])
            os.setgid(gid)
    if user is not None:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if os.getuid() != uid:
            os.setuid(uid)
