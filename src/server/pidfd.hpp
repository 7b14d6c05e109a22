// A process's pidfd: a descriptor that becomes readable when the process exits, for an event loop to watch.
#pragma once

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace ferry::server {

/// pidfd_open(2); -1 with errno on failure. (glibc's <sys/pidfd.h> lacks extern "C" in Debian 12; the system
/// call is stable.)
inline int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace ferry::server
