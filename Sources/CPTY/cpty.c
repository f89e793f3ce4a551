// Pseudo-terminal calls Swift cannot reach: posix_openpt and friends need _XOPEN_SOURCE, ioctl is variadic, and
// posix_spawn's POSIX_SPAWN_SETSID needs _GNU_SOURCE.
#define _GNU_SOURCE
#include "cpty.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int meshgate_pty_open(unsigned short rows, unsigned short cols, char *name, size_t name_length) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -errno;
    if (grantpt(fd) != 0 || unlockpt(fd) != 0 || ptsname_r(fd, name, name_length) != 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    int resized = meshgate_pty_resize(fd, rows, cols);
    if (resized != 0) {
        close(fd);
        return resized;
    }
    return fd;
}

int meshgate_pty_resize(int controller, unsigned short rows, unsigned short cols) {
    struct winsize size = {.ws_row = rows, .ws_col = cols};
    return ioctl(controller, TIOCSWINSZ, &size) == 0 ? 0 : -errno;
}

pid_t meshgate_pty_spawn(const char *name, const char *path, char *const argv[], char *const environment[],
                         const char *directory) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);

    // setsid runs before the file actions, so opening the terminal device makes it the controlling terminal.
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);  // the agent ignores SIGPIPE; a shell must not inherit that
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_addopen(&actions, 0, name, O_RDWR, 0);
    posix_spawn_file_actions_adddup2(&actions, 0, 1);
    posix_spawn_file_actions_adddup2(&actions, 0, 2);
    if (directory != NULL && access(directory, X_OK) == 0) posix_spawn_file_actions_addchdir_np(&actions, directory);

    pid_t pid = 0;
    int error = posix_spawn(&pid, path, &actions, &attributes, argv, environment);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return error == 0 ? pid : -error;
}
