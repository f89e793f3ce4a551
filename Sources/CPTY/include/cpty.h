#ifndef MESHGATE_CPTY_H
#define MESHGATE_CPTY_H

#include <sys/types.h>

/// Opens a new pseudo-terminal pair at rows x cols. Returns the controller (master) side, close-on-exec and
/// non-blocking, and writes the device path of the terminal side to `name`; -errno on failure.
int meshgate_pty_open(unsigned short rows, unsigned short cols, char *name, size_t name_length);

/// Sets the window size the terminal side sees (and so SIGWINCH for its foreground process group).
int meshgate_pty_resize(int controller, unsigned short rows, unsigned short cols);

/// Starts `path` with `argv` and `environment` as the leader of a new session whose controlling terminal is the
/// terminal device `name` (standard input, output and error), in `directory` when it exists, with signals back
/// to their defaults. Returns the pid, or -errno.
pid_t meshgate_pty_spawn(const char *name, const char *path, char *const argv[], char *const environment[],
                         const char *directory);

#endif
