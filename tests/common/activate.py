#!/usr/bin/env python3
"""Starts a program as systemd's socket activation does (sd_listen_fds(3)):
the given descriptors become 3, 4, ... and LISTEN_FDS, LISTEN_PID (this
process: exec keeps it) and LISTEN_FDNAMES are set.

    activate.py [--names A:B] [--pid N] FD... -- PROGRAM ARG...

--pid sets another LISTEN_PID (a process the sockets are not for).
The parent passes FD... with subprocess's pass_fds.
"""
import fcntl
import os
import sys


def main(argv):
    names, pid, fds = None, None, []
    i = 0
    while argv[i] != "--":
        if argv[i] == "--names":
            names = argv[i + 1]
            i += 2
        elif argv[i] == "--pid":
            pid = argv[i + 1]
            i += 2
        else:
            fds.append(int(argv[i]))
            i += 1
    prog = argv[i + 1:]
    # Out of the way first (a source may sit on a target's number).
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    for n, h in enumerate(high):
        os.dup2(h, 3 + n)  # inheritable
        os.close(h)
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = pid or str(os.getpid())
    if names is not None:
        os.environ["LISTEN_FDNAMES"] = names
    os.execv(prog[0], prog)


if __name__ == "__main__":
    main(sys.argv[1:])
