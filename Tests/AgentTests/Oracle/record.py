#!/usr/bin/python3
"""Records the terminal output of vim, top and less for the TerminalScreen oracle test.

    /usr/bin/python3 Tests/AgentTests/Oracle/record.py Tests/AgentTests/Fixtures/terminal

Each program runs under `bash --norc` in a PTY of a known size (TERM=xterm-256color), driven by timed keystrokes;
everything the PTY writes is saved as-is to `<name>-<cols>x<rows>.raw` (pure terminal output: no `script`
header or footer to strip). The terminal's queries (vim's DA, t_RV...) go unanswered, as in a dumb terminal.
"""
import fcntl
import os
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time


def record(path, rows, cols, steps, workdir):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {"TERM": "xterm-256color", "HOME": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PS1": "$ ", "LESSHISTFILE": "-", "TZ": "UTC"}

    def controlling_tty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    shell = subprocess.Popen(["/bin/bash", "--norc", "--noprofile", "-i"], stdin=slave, stdout=slave, stderr=slave,
                             cwd=workdir, env=env, start_new_session=True, preexec_fn=controlling_tty)
    os.close(slave)
    output = bytearray()

    def drain(seconds):
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                output.extend(data)

    drain(0.5)
    for delay, keys in steps:
        os.write(master, keys)
        drain(delay)
    shell.wait(timeout=10)
    drain(0.2)
    os.close(master)
    with open(path, "wb") as f:
        f.write(output)
    print(f"{path}: {len(output)} bytes")


def main():
    out = sys.argv[1]
    with tempfile.TemporaryDirectory() as workdir:
        sample = os.path.join(workdir, "sample.py")
        with open("/usr/lib/python3/dist-packages/pyte/streams.py", "rb") as f:
            source = f.read()
        with open(sample, "wb") as f:
            f.write(source)
        text = os.path.join(workdir, "notes.txt")
        with open(text, "w") as f:
            for i in range(1, 121):
                f.write(f"{i:3} plain line of text\n")
                if i % 7 == 0:
                    f.write(f"\x1b[1;32m{i:3} green bold\x1b[0m and \x1b[38;5;208morange\x1b[0m "
                            f"\x1b[48;2;40;60;200mtruecolour\x1b[0m \x1b[4munder\x1b[0m\n")
                if i % 11 == 0:
                    f.write(f"{i:3} wide 中文字符 and combining e\u0301 a\u0308 done\n")
                if i == 60:
                    f.write("needle is here\n")

        record(os.path.join(out, "vim-80x24.raw"), 24, 80, [
            (0.3, b"seq 1 40\r"),
            (0.3, b"printf '\\e[1;31mbold red\\e[0m \\e[7mreverse\\e[0m \\xe4\\xb8\\xad\\xe6\\x96\\x87\\n'\r"),
            (2.0, b"vim -u NONE -i NONE -N -c 'syntax on' -c 'set number' -c 'set mouse=a' "
                  b"-c 'colorscheme desert' sample.py\r"),
            (0.5, b"\x06"), (0.5, b"\x06"), (0.3, b"jjjjj"), (0.5, b"/def \r"), (0.5, b"\x15"),
            (0.5, "otext 中文 e\u0301 \x1b".encode()), (0.5, b":set cursorline\r"), (0.5, b"G"),
            (0.5, b":q!\r"), (0.3, b"echo back\r"), (0.5, b"exit\r"),
        ], workdir)
        record(os.path.join(out, "top-80x24.raw"), 24, 80, [
            (0.3, b"echo starting top\r"),
            (3.5, b"top -d 0.5 -n 6\r"),
            (0.5, b"exit\r"),
        ], workdir)
        record(os.path.join(out, "less-100x30.raw"), 30, 100, [
            (0.3, b"seq 1 50\r"),
            (1.0, b"less -R notes.txt\r"),
            (0.4, b" "), (0.4, b" "), (0.4, b"b"), (0.5, b"/needle\r"), (0.4, b"j"), (0.4, b" "),
            (0.5, b"q"), (0.3, b"echo after less\r"), (0.5, b"exit\r"),
        ], workdir)


if __name__ == "__main__":
    main()
